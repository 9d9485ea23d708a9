"""The one line a stage notebook starts with: resolve its config, set up its run folder.

A `Stage` owns the run folder (runs/<preset>[/<backbone>]/<stage>/): it writes the resolved
config, git sha, versions and device on opening, and collects the stage's metrics and figures.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zfutils import atomic, config, paths
from zfutils.provenance import write_run_record


def limit_threads() -> None:
    """Two cores: let torch use them without busy-waiting OpenMP threads beside other processes."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Stage:
    name: str
    cfg: dict
    dir: Path
    backbone: str | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def figures(self) -> Path:
        return self.dir / "figures"

    def save_figure(self, fig, name: str, publish: bool = False) -> Path:
        """Save into the run's figures/; `publish` also copies it to figures/<preset>/ for users."""
        self.figures.mkdir(parents=True, exist_ok=True)
        path = self.figures / f"{name}.png"
        fig.savefig(path, dpi=self.cfg["figures"]["dpi"], bbox_inches="tight")
        if publish:
            target = paths.figures_dir(self.cfg["preset"])
            target.mkdir(parents=True, exist_ok=True)
            prefix = f"{self.backbone}_" if self.backbone else ""
            shutil.copyfile(path, target / f"{prefix}{self.name}_{name}.png")
        return path

    def save_table(self, table, name: str) -> Path:
        """Write a table as CSV and Markdown into the run folder."""
        atomic.write_text(self.dir / f"{name}.csv", table.to_csv())
        atomic.write_text(self.dir / f"{name}.md", table.to_markdown())
        return self.dir / f"{name}.csv"

    def log_metrics(self, **values) -> dict:
        """Add numbers to metrics.json (written whole and renamed into place, so a crash keeps what
        was logged before it)."""
        self.metrics.update(values)
        atomic.write_text(self.dir / "metrics.json", json.dumps(self.metrics, indent=2, default=_jsonable))
        return self.metrics


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def open_stage(name: str, preset: str, backbone: str | None = None, seed: int | None = None,
               overrides: dict | str | None = None, data_source: str = "", data_path: str = "") -> Stage:
    """Resolve the config (defaults < preset < backbone < overrides), create the run folder,
    record provenance, seed and limit threads. `overrides` may be a JSON string (from papermill);
    empty `seed`, `data_source`, `data_path` leave the config's values."""
    if name not in paths.STAGES:
        raise ValueError(f"unknown stage '{name}'; the stages are the notebooks' names: {', '.join(paths.STAGES)}")
    if isinstance(overrides, str):
        overrides = json.loads(overrides) if overrides.strip() else {}
    overrides = dict(overrides or {})
    for key, value in (("seed", seed), ("data.source", data_source), ("data.path", data_path)):
        if value not in (None, ""):
            overrides[key] = value
    cfg = config.resolve(preset, backbone, overrides)
    run_dir = paths.run_stage_dir(cfg, name, backbone)
    run_dir.mkdir(parents=True, exist_ok=True)
    limit_threads()
    seed_everything(config.training_seed(cfg))
    write_run_record(run_dir, cfg, extra={"stage": name, "backbone": backbone})
    logging.basicConfig(filename=run_dir / "stage.log", level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("zfutils").info("stage %s opened for preset %s backbone %s", name, preset, backbone)
    return Stage(name=name, cfg=cfg, dir=run_dir, backbone=backbone)

"""Every path the project uses, resolved from the project root, never from the working directory
(papermill and nbval start kernels in different folders).

`ZF_WORKDIR` moves the writable folders (runs/, data/, figures/ of a run) elsewhere, which the
tests use to keep the repository clean.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = PROJECT_ROOT / "params"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"

# The stages, named after their notebooks (notebooks/<name>.ipynb); code refers to them by these
# names only, and a test checks them against the notebooks.
STAGES = (
    PREPARE_DATASET := "01_prepare_dataset",
    INPAINT_PATTERNS := "02_inpaint_patterns",
    FINETUNE_CLASSIFIER := "03_finetune_classifier",
    ABLATE_REGIONS := "04_ablate_regions",
    CLUSTER_EMBEDDINGS := "05_cluster_embeddings",
    VARY_TRAINING_SIZE := "06_vary_training_size",
    TRANSFER_SPECIES := "07_transfer_species",
    REPORT := "08_report",
)


def workdir() -> Path:
    """Root of everything a run writes: the project root unless ZF_WORKDIR says otherwise."""
    return Path(os.environ.get("ZF_WORKDIR", PROJECT_ROOT)).resolve()


def runs_dir(preset: str) -> Path:
    return workdir() / "runs" / preset


def stage_dir(preset: str, stage: str, backbone: str | None = None, run_seed: int | None = None) -> Path:
    """runs/<preset>/<backbone>/<stage>/ for per-backbone stages, runs/<preset>/<stage>/ otherwise;
    one training seed of several (`run_seed`) gets its own runs/<preset>/seed-<s>/<backbone>/<stage>/."""
    base = runs_dir(preset)
    if backbone and run_seed is not None:
        base = base / f"seed-{int(run_seed)}"
    return base / backbone / stage if backbone else base / stage


def run_stage_dir(cfg: dict, stage: str, backbone: str | None) -> Path:
    """stage_dir for the preset and training seed of a resolved config."""
    return stage_dir(cfg["preset"], stage, backbone, cfg.get("run_seed"))


def data_dir(preset: str, source: str, variant: str | None = None) -> Path:
    """Where a preset's data set in the project's on-disk format lives: data/<preset>/<source>; a
    `variant` of it (the other synthetic pattern family, e.g. `spots`) beside it in <source>-<variant>."""
    return workdir() / "data" / preset / (f"{source}-{variant}" if variant else source)


def figures_dir(preset: str) -> Path:
    """figures/<preset>/: the figures a user looks at after `make run`."""
    return workdir() / "figures" / preset

"""What made a result: resolved config, git sha, library versions, device. Written beside every
run's outputs so a number can always be traced back to the code and settings that produced it."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

import yaml

from zfutils import atomic
from zfutils.paths import PROJECT_ROOT

LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "umap-learn",
             "grad-cam", "papermill", "matplotlib", "seaborn", "pillow", "zfutils")


def git_sha(root: Path = PROJECT_ROOT) -> str:
    """HEAD's sha, with '-dirty' when tracked files differ from it; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_info(requested: str = "auto") -> dict:
    """The device a run will use and what it is; a missing GPU that was asked for is an error."""
    info = {"requested": requested, "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}
    import torch

    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA GPU; set device: auto or cpu")
    info["device"] = "cuda" if (requested in ("auto", "cuda") and cuda) else "cpu"
    info["torch_threads"] = torch.get_num_threads()
    if info["device"] == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_run_record(run_dir: Path, cfg: dict, extra: dict | None = None) -> dict:
    """Write config.yaml and run.json (sha, versions, device, time) into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    record = {"git_sha": git_sha(), "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
              "versions": library_versions(), "device": device_info(cfg.get("device", "auto")),
              **(extra or {})}
    atomic.write_text(run_dir / "run.json", json.dumps(record, indent=2))
    return record

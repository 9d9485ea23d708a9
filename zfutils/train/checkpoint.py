"""Resumable training state on disk: `last.pt` after every epoch (and every K iterations),
`best.pt` at the best validation loss. Files are written to a temporary name and renamed, so an
interruption never leaves a half-written checkpoint behind."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_atomic(obj: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path) -> dict:
    """A checkpoint this project wrote (plain containers of tensors and numbers)."""
    return torch.load(path, map_location="cpu", weights_only=False)

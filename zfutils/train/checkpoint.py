"""Resumable training state on disk: `last.pt` after every epoch (and every K iterations),
`best.pt` at the best validation loss. Files are written to a temporary name and renamed, so an
interruption never leaves a half-written checkpoint behind, and a full disk leaves the previous
one in place (zfutils/atomic.py). Under torchrun only rank 0 writes (every rank holds the same
weights) and batches are sharded over the ranks (see distributed.py)."""
from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from zfutils import atomic
from zfutils.train import distributed


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite."""


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that is truncated or corrupt."""


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_atomic(obj: dict, path: Path) -> Path:
    """Write `obj` to `path` (rank 0 alone under torchrun; the others return at once)."""
    path = Path(path)
    if not distributed.is_main():
        return path
    with atomic.replacing(path) as fh:
        torch.save(obj, fh)
    return path


def load_checkpoint(path: Path) -> dict:
    """A checkpoint this project wrote (plain containers of tensors and numbers); a truncated or
    corrupt file is one error naming it and what to do."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise UnreadableCheckpoint(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {_first_sentence(err)}); "
            f"delete it and rerun: a training run then starts afresh; a best.pt that a later stage reads needs the "
            f"stage that wrote it rerun") from None


def _first_sentence(err: BaseException) -> str:
    """torch's reader appends paragraphs of advice to the one fact it has."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text.split(". ")[0].rstrip(".")[:200]


class Resumable:
    """What the trainers share: a run folder with `last.pt` (resume) and `best.pt` (later stages),
    batches shuffled by (seed, epoch), and resuming only a checkpoint of the same configuration.
    Expects `run_dir`, `seed`, `stamp`, `batch_size`, `state` and `log` on the object."""

    @property
    def last_path(self) -> Path:
        return Path(self.run_dir) / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return Path(self.run_dir) / "checkpoints" / "best.pt"

    def epoch_loader(self, data, epoch: int, salt: int = 0, drop_last: bool = True, shard: bool = True):
        """The epoch's batches in an order fixed by (seed, epoch), so a resumed run sees what an
        uninterrupted one would. Under torchrun each rank takes its share of every batch
        (batch_size // world size; together the ranks' k-th batches are the k-th batch here),
        unless `shard` is false: then every rank sees the whole batches (statistics that must
        agree across ranks and with one process)."""
        from torch.utils.data import DataLoader, RandomSampler

        seed = self.seed * 100_003 + epoch + 7919 * salt
        drop = drop_last and len(data) > self.batch_size
        compute = getattr(self, "compute", None)  # worker processes and pinned memory (zfutils.train.compute)
        options = compute.loader_options() if compute is not None else {}
        if shard and distributed.active():
            return DataLoader(data, batch_size=distributed.per_rank_batch(self.batch_size),
                              sampler=distributed.shard_sampler(data, seed, drop_last=drop), drop_last=drop, **options)
        order = torch.Generator().manual_seed(seed)
        return DataLoader(data, batch_size=self.batch_size, sampler=RandomSampler(data, generator=order),
                          drop_last=drop, **options)

    def resumable_checkpoint(self) -> dict | None:
        """last.pt if it belongs to this configuration, with the random state restored and log
        lines written after it dropped; None otherwise (and a fresh log)."""
        if self.last_path.is_file():
            ckpt = load_checkpoint(self.last_path)
            if ckpt.get("stamp") == self.stamp:
                self.state = dict(ckpt["state"])
                set_rng_state(ckpt["rng"])
                self.log.truncate_after(self.state["iteration"])
                return ckpt
        self.log.clear()
        return None

    def non_finite(self, values, batch: int | None, n_batches: int | None, hint: str) -> NonFiniteLoss:
        """The error for a NaN or infinite loss: which epoch and batch, and which checkpoint is kept."""
        epoch = self.state["epoch"] + 1
        where = f"epoch {epoch}, batch {batch} of {n_batches}" if batch is not None else f"epoch {epoch}"
        if self.state["epoch"] > 0 and self.last_path.exists():
            kept = f"The last good checkpoint is kept ({self.last_path}, end of epoch {self.state['epoch']})"
        else:
            kept = "No checkpoint of this run was written yet (its first epoch had not ended)"
        return NonFiniteLoss(f"loss became non-finite at iteration {self.state['iteration'] + 1} ({where}): "
                             f"{values}; training stopped. {kept}. {hint}")

"""Synthetic pattern families as separate data sets: the configured one (stage 01's) and the
others (stripes: zebrafish; spots: a leopard-like second "species", with other intra-individual
variance), for the training-set-size study (stage 06) and cross-species transfer (stage 07).

The configured family lives where stage 01 put it (data/<preset>/synth); another family is
built on first use with the same settings but its own `family`, into data/<preset>/synth-<family>,
and reused while its build key (zfutils.data.build) is unchanged. Real data has one "family":
its source, and no other.
"""
from __future__ import annotations

import copy
import fcntl
from contextlib import contextmanager
from pathlib import Path

from zfutils import paths
from zfutils.data.build import load_prepared, prepare_dataset
from zfutils.data.format import StoredDataset


def is_synthetic(cfg: dict) -> bool:
    return cfg["data"]["source"] == "synth"


def configured(cfg: dict) -> str:
    """The configured data's family: the synthetic pattern family, or the source of real data."""
    return cfg["data"]["synth"]["family"] if is_synthetic(cfg) else cfg["data"]["source"]


def others(cfg: dict) -> list[str]:
    """The synthetic families other than the configured one (none for real data)."""
    if not is_synthetic(cfg):
        return []
    from zfutils.data.synth.pattern import FAMILIES

    return [f for f in sorted(FAMILIES) if f != configured(cfg)]


def every(cfg: dict) -> list[str]:
    """The configured family first, then the others."""
    return [configured(cfg), *others(cfg)]


def family_config(cfg: dict, family: str) -> dict:
    """`cfg` with the synthetic family replaced (the same settings otherwise)."""
    if family == configured(cfg):
        return cfg
    if family not in others(cfg):
        raise ValueError(f"unknown pattern family '{family}' for data.source '{cfg['data']['source']}'; "
                         f"known: {', '.join(every(cfg))}")
    out = copy.deepcopy(cfg)
    out["data"]["synth"]["family"] = family
    return out


def root(cfg: dict, family: str) -> Path:
    """data/<preset>/<source> for the configured family, data/<preset>/<source>-<family> for another."""
    source = cfg["data"]["source"]
    return paths.data_dir(cfg["preset"], source, None if family == configured(cfg) else family)


def load(cfg: dict, family: str) -> StoredDataset:
    """The data set of `family` with its splits: stage 01's for the configured family; another is
    built here on first use (and its splits rewritten under the run's split settings), under a
    lock, so parallel jobs of one stage never build it twice."""
    if family == configured(cfg):
        return load_prepared(cfg)
    where = root(cfg, family)
    with _locked(where):
        return prepare_dataset(family_config(cfg, family), root=where)


@contextmanager
def _locked(where: Path):
    where.parent.mkdir(parents=True, exist_ok=True)
    with open(where.parent / f".{where.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

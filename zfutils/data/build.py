"""Stage 01's work: build (or reuse) a preset's data set from its source, then add the splits.

Sources are a registry keyed by `data.source`; each writes the one on-disk format
(zfutils.data.format). A data set is rebuilt only when what defines it changed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from zfutils import atomic, paths
from zfutils.data.format import StoredDataset, read_dataset
from zfutils.data.splits import assign_splits


def _synth(cfg: dict, out: Path) -> Path:
    from zfutils.data.synth import SynthSpec, write_synthetic

    spec = SynthSpec(**cfg["data"]["synth"], image_size=cfg["data"]["image_size"], seed=cfg["seed"])
    return write_synthetic(spec, out)


def _aau(cfg: dict, out: Path) -> Path:
    from zfutils.data.aau import write_aau

    opts = {k: v for k, v in cfg["data"]["aau"].items() if k != "gap_frames"}  # gaps: the splitter's
    return write_aau(_need_path(cfg), out, size=cfg["data"]["image_size"], masks=_masks(cfg, "estimate"), **opts)


def _csv(cfg: dict, out: Path) -> Path:
    from zfutils.data.generic import write_csv

    masks = cfg["data"]["masks"]
    return write_csv(_need_path(cfg), out, size=cfg["data"]["image_size"], masks=None if masks == "auto" else masks)


def _folder(cfg: dict, out: Path) -> Path:
    from zfutils.data.generic import write_folder

    return write_folder(_need_path(cfg), out, size=cfg["data"]["image_size"], masks=_masks(cfg, "estimate"))


SOURCES: dict[str, Callable[[dict, Path], Path]] = {"synth": _synth, "aau": _aau, "csv": _csv, "folder": _folder}


def _masks(cfg: dict, default: str) -> str:
    return default if cfg["data"]["masks"] == "auto" else cfg["data"]["masks"]


def _need_path(cfg: dict) -> Path:
    path = cfg["data"]["path"]
    if not path:
        raise ValueError(f"data.source '{cfg['data']['source']}' reads a local copy of real data: set data.path "
                         "(pipeline: --data-path DIR; notebook: the `path` parameter)")
    return Path(path).expanduser()


def build_key(cfg: dict) -> dict:
    """What defines the images on disk: source, path, size, masks, alignment, source options and seed."""
    data = cfg["data"]
    key = {k: data[k] for k in ("source", "path", "image_size", "masks", "align")}
    key["options"] = data.get(data["source"], {})
    if data["align"]:
        key["align_fill"] = data["align_fill"]
    if data["source"] == "synth":
        key["seed"] = cfg["seed"]
    return json.loads(json.dumps(key, default=str))


def prepare_dataset(cfg: dict, root: Path | None = None, force: bool = False) -> StoredDataset:
    """Build the preset's data set unless an identical one exists, then (re)write its splits."""
    source = cfg["data"]["source"]
    if source not in SOURCES:
        raise ValueError(f"unknown data.source '{source}'; known sources: {', '.join(SOURCES)}")
    root = Path(root) if root else paths.data_dir(cfg["preset"], source)
    key = build_key(cfg)
    existing = _read_if_matching(root, key)
    if existing is None or force:
        if cfg["data"]["align"]:  # the frames go to a sibling first: a failed alignment leaves `root` as it was
            from zfutils.data.align import align_dataset  # OpenCV: only where a data set is built, not in every stage

            frames = root.parent / f".{root.name}.frames"
            try:
                align_dataset(read_dataset(SOURCES[source](cfg, frames)), root, fill=cfg["data"]["align_fill"])
            finally:
                shutil.rmtree(frames, ignore_errors=True)
        else:
            SOURCES[source](cfg, root)
        info_path = root / "dataset.json"
        info = json.loads(info_path.read_text())
        info["build_key"] = key
        atomic.write_text(info_path, json.dumps(info, indent=2, default=str))
    data = read_dataset(root)
    base = data.meta[[c for c in data.meta.columns if c != "task" and not c.startswith("split")]]
    meta, notes = assign_splits(base, cfg["split"], cfg["seed"], has_pattern_masks=data.has_masks,
                                gap_frames=cfg["data"]["aau"]["gap_frames"] if source == "aau" else 0)
    data.write_metadata(meta)
    atomic.write_text(root / "splits.json",
                      json.dumps({"config": cfg["split"], "seed": cfg["seed"], "notes": notes}, indent=2))
    return data


def _read_if_matching(root: Path, key: dict) -> StoredDataset | None:
    try:
        data = read_dataset(root)
    except (FileNotFoundError, ValueError):
        return None
    return data if data.info.get("build_key") == key else None


def summarize(data: StoredDataset) -> dict:
    """The data stage's numbers for metrics.json: size, sources, masks and split counts."""
    meta = data.meta
    split_cols = [c for c in meta.columns if c.startswith("split")]
    return {
        "source": data.info.get("source"),
        "root": str(data.root),
        "n_images": int(len(meta)),
        "n_identities": int(meta["identity"].nunique()),
        "n_sessions": int(meta["session"].nunique()),
        "image_size": data.info.get("image_size"),
        "masks": data.info.get("masks"),
        "aligned": data.info.get("aligned"),  # data.align: fill, images aligned, frames kept (empty fish mask)
        "tasks": meta["task"].value_counts().to_dict(),
        "splits": {c: meta.loc[meta[c] != "", c].value_counts().to_dict() for c in split_cols},
    }


def load_prepared(cfg: dict) -> StoredDataset:
    """The data set stage 01 prepared for this preset and source, with its splits."""
    root = paths.data_dir(cfg["preset"], cfg["data"]["source"])
    try:
        data = read_dataset(root)
    except FileNotFoundError:
        raise FileNotFoundError(f"no prepared data set at {root}; run stage 01 first: python -m zfutils.pipeline "
                                f"--preset {cfg['preset']} --stages 01") from None
    if "split" not in data.meta.columns:
        raise ValueError(f"{root} has no split columns; run stage 01 again")
    if data.info.get("build_key") != build_key(cfg):
        raise ValueError(f"the data set at {root} was built with other data settings than this run's; "
                         f"run stage 01 again for preset {cfg['preset']}")
    return data

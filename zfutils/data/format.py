"""The one on-disk data set format that every source (synthetic, AAU, CSV, folders) is written in.

Layout under a data set root::

    images/<image_id>.png          RGB, square, the preset's size
    masks/fish/<image_id>.png      8-bit, 255 inside the fish silhouette (absent if no masks)
    masks/pattern/<image_id>.png   8-bit, 255 on the patterned trunk (absent if no masks)
    metadata.csv                   one row per image (columns below, plus split columns)
    dataset.json                   source, image size, mask kind, counts, generator settings

A data set is written into a temporary sibling folder and moved into place only when complete,
so a failure (a full disk included, see zfutils/atomic.py) never destroys a data set that was
already there.
"""
from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from zfutils import atomic

#: Columns every metadata.csv has, in this order; sources may add more (flags, boxes, ...).
BASE_COLUMNS = ["image_id", "identity", "session", "frame", "source"]
#: How masks came about: drawn by the renderer, given as files, estimated, or missing.
MASK_KINDS = ("exact", "given", "estimate", "none")


class DataFormatError(ValueError):
    """A data set on disk or an input sample does not have the documented format."""


def _check_mask(mask: np.ndarray | None, image: np.ndarray, name: str, image_id: str) -> None:
    if mask is None:
        return
    if mask.shape[:2] != image.shape[:2]:
        raise DataFormatError(
            f"{name} mask of image '{image_id}' is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]}; masks must have their image's size"
        )


@dataclass
class DatasetWriter:
    """Writes samples into a staging folder; `commit()` moves it to `root` atomically."""

    root: Path
    with_masks: bool = True
    rows: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.root.parent / f".{self.root.name}.partial-{uuid.uuid4().hex[:8]}"
        (self.staging / "images").mkdir(parents=True)
        if self.with_masks:
            (self.staging / "masks" / "fish").mkdir(parents=True)
            (self.staging / "masks" / "pattern").mkdir(parents=True)

    def add(self, image_id: str, image: np.ndarray, fish_mask: np.ndarray | None = None,
            pattern_mask: np.ndarray | None = None, **meta) -> None:
        """Add one sample: an HxWx3 uint8 image, boolean masks of the same size, and metadata."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataFormatError(f"image '{image_id}' must be HxWx3 uint8, got {image.shape} {image.dtype}")
        if self.with_masks and (fish_mask is None or pattern_mask is None):
            raise DataFormatError(f"image '{image_id}' has no fish or pattern mask but the data set has masks")
        _check_mask(fish_mask, image, "fish", image_id)
        _check_mask(pattern_mask, image, "pattern", image_id)
        with self._naming_disk_full():
            Image.fromarray(image).save(self.staging / "images" / f"{image_id}.png")
            if self.with_masks:
                for kind, mask in (("fish", fish_mask), ("pattern", pattern_mask)):
                    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(
                        self.staging / "masks" / kind / f"{image_id}.png")
        row = {"image_id": image_id, **meta}
        missing = [c for c in BASE_COLUMNS if c not in row]
        if missing:
            raise DataFormatError(f"sample '{image_id}' lacks metadata {missing}")
        self.rows.append(row)

    def commit(self, info: dict, metadata: pd.DataFrame | None = None) -> Path:
        """Write metadata.csv and dataset.json, then replace `root` with the finished data set."""
        meta = metadata if metadata is not None else pd.DataFrame(self.rows)
        if meta.empty:
            self.abort()
            raise DataFormatError(f"no images were written for {self.root}; check the source's filters")
        cols = BASE_COLUMNS + [c for c in meta.columns if c not in BASE_COLUMNS]
        info = {**info, "n_images": int(len(meta)), "n_identities": int(meta["identity"].nunique()),
                "masks": info.get("masks", "exact" if self.with_masks else "none")}
        if info["masks"] not in MASK_KINDS:
            raise DataFormatError(f"mask kind {info['masks']!r} is not one of {MASK_KINDS}")
        with self._naming_disk_full():
            with open(self.staging / "metadata.csv", "w", newline="") as fh:
                meta[cols].to_csv(fh, index=False)
            with open(self.staging / "dataset.json", "w") as fh:
                fh.write(json.dumps(info, indent=2, default=str))
        old = None
        if self.root.exists():
            old = self.root.parent / f".{self.root.name}.old-{uuid.uuid4().hex[:8]}"
            self.root.rename(old)
        self.staging.rename(self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.root

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def _naming_disk_full(self):
        kept = (f"the data set at {self.root} is kept as it was" if self.root.exists()
                else f"no data set was written at {self.root}") + " (the partial copy is removed)"
        return atomic.naming_disk_full(self.staging, kept)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


@dataclass
class StoredDataset:
    """A data set in the project's format, opened for reading."""

    root: Path
    meta: pd.DataFrame
    info: dict

    @property
    def has_masks(self) -> bool:
        return self.info.get("masks", "none") != "none"

    @property
    def identities(self) -> list[str]:
        return sorted(self.meta["identity"].astype(str).unique())

    def image(self, image_id: str) -> np.ndarray:
        return _read_png(self.root / "images" / f"{image_id}.png", mode="RGB")

    def mask(self, image_id: str, kind: str) -> np.ndarray:
        """Boolean `fish` or `pattern` mask; an error that says so when the data set has none."""
        if not self.has_masks:
            raise DataFormatError(
                f"the data set at {self.root} has no masks (masks: none) but a {kind} mask was asked for; "
                "rebuild it with data.masks: estimate, or give mask files in the CSV")
        return _read_png(self.root / "masks" / kind / f"{image_id}.png", mode="L") > 127

    def write_metadata(self, meta: pd.DataFrame) -> None:
        """Replace metadata.csv atomically (used to add the split columns)."""
        with atomic.replacing(self.root / "metadata.csv", "w") as fh:
            meta.to_csv(fh, index=False)
        self.meta = meta


def _read_png(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing from the data set; rebuild it (stage 01 or "
                                "`python -m zfutils.data ...`)") from None
    except OSError as err:
        raise DataFormatError(f"cannot read {path}: {err}; rebuild the data set") from None


def read_dataset(root) -> StoredDataset:
    """Open a data set written by DatasetWriter, checking that its index files are there."""
    root = Path(root)
    for name in ("metadata.csv", "dataset.json"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} does not exist: {root} is not a data set in the project's "
                                    "format; build one with stage 01 or `python -m zfutils.data`")
    meta = pd.read_csv(root / "metadata.csv", dtype={"image_id": str, "identity": str, "session": str},
                       keep_default_na=False)
    missing = [c for c in BASE_COLUMNS if c not in meta.columns]
    if missing:
        raise DataFormatError(f"{root / 'metadata.csv'} lacks the columns {missing}; rebuild the data set")
    info = json.loads((root / "dataset.json").read_text())
    return StoredDataset(root=root, meta=meta, info=info)

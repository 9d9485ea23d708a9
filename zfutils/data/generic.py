"""Readers for anyone's own fish images: a CSV file list, or one folder per individual.

Both write the project's data set format, so every later stage works on them unchanged.
Images are padded to square with their edge colour (content stays whole and centred) and
resized to the preset's size; given masks are padded with background and resized with nearest
neighbour so they stay binary.

Without a `session` column every image gets session "unknown": a split that keeps sessions
apart is then impossible, and only splits by image or identity are meaningful. Without a
`frame` column, frame is -1 (unknown).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zfutils.data.format import DataFormatError, DatasetWriter
from zfutils.data.imageio import (IMAGE_SUFFIXES, pad_to_square, read_image, read_mask,
                                  resize_image, resize_mask)
from zfutils.data.mask_estimate import estimate_masks

UNKNOWN_SESSION = "unknown"
MASK_COLUMNS = ("fish_mask", "pattern_mask")
_RESERVED = {"path", "identity", "session", "frame", *MASK_COLUMNS, "image_id", "source", "file"}


@dataclass
class _Sample:
    image: Path
    identity: str
    session: str = UNKNOWN_SESSION
    frame: int = -1
    masks: tuple[Path, Path] | None = None
    extra: dict = field(default_factory=dict)


def _image_id(identity: str, path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{identity}_{path.stem}").strip("_") or "image"
    image_id, n = base, 1
    while image_id in taken:
        n += 1
        image_id = f"{base}_{n}"
    taken.add(image_id)
    return image_id


def _load(sample: _Sample, size: int, masks: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    image = read_image(sample.image)
    fish = pattern = None
    if masks == "given":
        fish, pattern = (read_mask(p) for p in sample.masks)
        for mask, path in zip((fish, pattern), sample.masks):
            if mask.shape != image.shape[:2]:
                raise DataFormatError(
                    f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image {sample.image} is "
                    f"{image.shape[1]}x{image.shape[0]}; masks must have their image's size")
        fish = resize_mask(pad_to_square(fish, mode="constant", fill=False), size)
        pattern = resize_mask(pad_to_square(pattern, mode="constant", fill=False), size)
    image = resize_image(pad_to_square(image, mode="edge"), size)
    if masks == "estimate":
        fish, pattern = estimate_masks(image)
    return image, fish, pattern


def _write(samples: list[_Sample], out: Path, *, size: int, masks: str, source: str, info: dict,
           progress: bool) -> Path:
    if int(size) < 8:
        raise ValueError(f"size={size} is too small; use at least 8 pixels")
    taken: set[str] = set()
    with DatasetWriter(Path(out), with_masks=masks != "none") as writer:
        for s in tqdm(samples, desc=f"{source} images", disable=not progress):
            image, fish, pattern = _load(s, size, masks)
            writer.add(_image_id(s.identity, s.image, taken), image, fish, pattern,
                       identity=s.identity, session=s.session, frame=s.frame, source=source,
                       file=str(s.image), **s.extra)
        return writer.commit({"source": source, "image_size": int(size), "masks": masks, **info})


def _csv_samples(csv_path: Path, table: pd.DataFrame, masks: str) -> list[_Sample]:
    base = csv_path.parent
    extras = [c for c in table.columns if c not in _RESERVED]
    samples = []
    for i, row in table.iterrows():
        line = int(i) + 2  # header is line 1
        if not row["path"] or not row["identity"]:
            raise DataFormatError(f"{csv_path}, line {line}: 'path' and 'identity' must not be empty")
        frame = str(row.get("frame", "") or "").strip()
        try:
            frame_no = int(float(frame)) if frame else -1
        except ValueError as exc:
            raise DataFormatError(f"{csv_path}, line {line}: frame {frame!r} is not a number") from exc
        mask_paths = None
        if masks == "given":
            if not row["fish_mask"] or not row["pattern_mask"]:
                raise DataFormatError(f"{csv_path}, line {line}: empty mask path; give both masks for "
                                      f"every image or pass masks='estimate' or 'none'")
            mask_paths = (base / row["fish_mask"], base / row["pattern_mask"])
        samples.append(_Sample(
            image=base / row["path"], identity=str(row["identity"]).strip(),
            session=str(row.get("session", "") or "").strip() or UNKNOWN_SESSION,
            frame=frame_no, masks=mask_paths, extra={c: row[c] for c in extras}))
    return samples


def write_csv(csv_path: str | Path, out: str | Path, *, size: int = 128, masks: str | None = None,
              progress: bool = True) -> Path:
    """Write the images listed in a CSV (`path`, `identity`, optional `fish_mask`, `pattern_mask`,
    `session`, `frame`; relative paths are relative to the CSV's folder) and return `out`.

    `masks`: "given" (mask columns), "estimate" or "none"; by default "given" when the CSV has
    both mask columns, else "none".
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"image list {csv_path} does not exist; give a CSV with columns path, identity")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot parse {csv_path} as CSV ({exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("path", "identity") if c not in table.columns]
    if missing:
        raise DataFormatError(f"{csv_path} lacks the columns {missing} (has {list(table.columns)}); "
                              f"it needs 'path' and 'identity'")
    has_masks = [c for c in MASK_COLUMNS if c in table.columns]
    if masks is None:
        if len(has_masks) == 1:
            raise DataFormatError(f"{csv_path} has only the mask column {has_masks}; give both "
                                  f"{list(MASK_COLUMNS)} or pass masks='estimate' or 'none'")
        masks = "given" if has_masks else "none"
    if masks not in ("given", "estimate", "none"):
        raise ValueError(f"masks={masks!r} is not one of 'given', 'estimate', 'none'")
    if masks == "given" and len(has_masks) < 2:
        raise DataFormatError(f"masks='given' but {csv_path} lacks the columns "
                              f"{[c for c in MASK_COLUMNS if c not in has_masks]}")
    if table.empty:
        raise DataFormatError(f"{csv_path} lists no images")
    samples = _csv_samples(csv_path, table, masks)
    return _write(samples, Path(out), size=size, masks=masks, source="csv",
                  info={"csv": str(csv_path)}, progress=progress)


def write_folder(root: str | Path, out: str | Path, *, size: int = 128, masks: str = "estimate",
                 progress: bool = True) -> Path:
    """Write `root/<identity>/*.{png,jpg,jpeg,bmp,tif}` (folder name = identity) and return `out`.

    `masks`: "estimate" (automatic fish/pattern estimate) or "none".
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; give a folder with one "
                                f"sub-folder of images per individual")
    if masks not in ("estimate", "none"):
        raise ValueError(f"masks={masks!r}: a folder has no mask files, use 'estimate' or 'none'")
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                samples.append(_Sample(image=path, identity=folder.name))
    if not samples:
        raise DataFormatError(f"{root} has no images in sub-folders; put each individual's images "
                              f"({', '.join(IMAGE_SUFFIXES)}) in root/<identity>/")
    return _write(samples, Path(out), size=size, masks=masks, source="folder",
                  info={"root": str(root)}, progress=progress)

"""Reader for the AAU Zebrafish Re-Identification data set (Haurum et al. 2020).

As distributed, `<root>/annotations.csv` (`;`-separated) lists one box per fish and frame, and
`<root>/data/Vid1_0001.png` ... hold the 2704x1520 frames (fish 1-3 only in Vid1, fish 4-6 only
in Vid2). Each box becomes one square crop centred on the fish in the project's data set format.
Frames close in time are near duplicates, so `session` is a contiguous block of frames within a
video (`Vid1-b03`); the session splitter (zfutils.data.splits) keeps blocks apart and drops
`gap_frames` frames after each change of split, so nearly identical frames never straddle a split.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zfutils.data.format import DataFormatError, DatasetWriter
from zfutils.data.imageio import read_image, resize_image, square_crop
from zfutils.data.mask_estimate import estimate_masks

FLAG_COLUMN = "Right,Turning,Occlusion,Glitch"
FLAG_NAMES = ("right", "turning", "occlusion", "glitch")
BOX_COLUMNS = {"Upper left corner X": "box_x0", "Upper left corner Y": "box_y0",
               "Lower right corner X": "box_x1", "Lower right corner Y": "box_y1"}
REQUIRED_COLUMNS = ["Filename", "Object ID", "Annotation tag", *BOX_COLUMNS, FLAG_COLUMN]
DOWNLOAD_HINT = ("download the AAU Zebrafish Re-Identification data set from Kaggle "
                 "(aalborguniversity/aau-zebrafish-reid) and pass its folder as --root")
_FRAME_NAME = re.compile(r"^(?P<video>.+)_(?P<frame>\d+)$")


def _annotations_path(root: Path) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"AAU data set folder {root} does not exist; {DOWNLOAD_HINT}")
    path = root / "annotations.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; the AAU folder must hold annotations.csv and data/; {DOWNLOAD_HINT}")
    return path


def _parse_flags(values: pd.Series, path: Path) -> pd.DataFrame:
    parts = values.astype(str).str.replace(" ", "", regex=False).str.split(",")
    bad = ~parts.map(lambda p: len(p) == 4 and all(v in ("0", "1") for v in p))
    if bad.any():
        line = int(bad.idxmax()) + 2  # header is line 1
        raise DataFormatError(
            f"{path}, line {line}: column '{FLAG_COLUMN}' is {values[bad.idxmax()]!r}; "
            f"it must be four comma-joined 0/1 flags such as '1,0,0,0'")
    flags = pd.DataFrame(parts.tolist(), index=values.index, columns=list(FLAG_NAMES))
    return flags == "1"


def read_annotations(root: str | Path) -> pd.DataFrame:
    """Parse annotations.csv into one row per box with bool flags, video, frame and identity."""
    root = Path(root)
    path = _annotations_path(root)
    try:
        raw = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot parse {path} as a ';'-separated CSV ({exc}); {DOWNLOAD_HINT}") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing and len(raw.columns) == 1:
        header = raw.columns[0]
        found = next((repr(d) for d in (",", "\t", "|", " ") if d in header), "another character")
        raise DataFormatError(
            f"{path} is not ';'-separated: its header line has no ';' (it looks separated by {found}: "
            f"{header[:80]!r}); the AAU annotations.csv separates its columns with ';' (the flags column itself "
            f"holds commas, '1,0,0,0'). Use the file shipped with the data set, or save it again with ';'")
    if missing:
        raise DataFormatError(
            f"{path} lacks the columns {missing} (has {list(raw.columns)}); "
            f"use the annotations.csv shipped with the data set; {DOWNLOAD_HINT}")
    if raw.empty:
        raise DataFormatError(f"{path} has no annotation rows; {DOWNLOAD_HINT}")

    out = pd.DataFrame(index=raw.index)
    names = raw["Filename"].str.strip().str.replace("\\", "/", regex=False)
    names = names.str.replace(r"^(\./)?data/", "", regex=True)
    out["file"] = "data/" + names
    stems = names.map(lambda n: Path(n).stem)
    parsed = stems.str.extract(_FRAME_NAME)
    if parsed["video"].isna().any():
        bad = stems[parsed["video"].isna()].iloc[0]
        raise DataFormatError(f"{path}: file name '{bad}' is not of the form Vid1_0001.png")
    out["video"] = parsed["video"]
    out["frame"] = parsed["frame"].astype(int)
    try:
        out["object_id"] = raw["Object ID"].str.strip().astype(int)
        for src, dst in BOX_COLUMNS.items():
            out[dst] = raw[src].str.strip().astype(float)
    except ValueError as exc:
        raise DataFormatError(f"{path}: 'Object ID' and the box corners must be numbers ({exc})") from exc
    out["identity"] = "fish_" + out["object_id"].astype(str)
    out["tag"] = raw["Annotation tag"].str.strip()
    # Corners may come in either order; keep x0 <= x1 and y0 <= y1.
    for a, b in (("box_x0", "box_x1"), ("box_y0", "box_y1")):
        lo, hi = out[[a, b]].min(axis=1), out[[a, b]].max(axis=1)
        out[a], out[b] = lo, hi
    out = pd.concat([out, _parse_flags(raw[FLAG_COLUMN], path)], axis=1)
    return out.sort_values(["video", "frame", "object_id"]).reset_index(drop=True)


def _select(ann: pd.DataFrame, *, keep_occluded: bool, keep_turning: bool, keep_glitch: bool,
            time_block_frames: int) -> pd.DataFrame:
    keep = pd.Series(True, index=ann.index)
    if not keep_occluded:
        keep &= ~ann["occlusion"]
    if not keep_turning:
        keep &= ~ann["turning"]
    if not keep_glitch:
        keep &= ~ann["glitch"]
    block = ann["frame"] // time_block_frames
    sel = ann[keep].copy()
    sel["session"] = sel["video"] + "-b" + block[keep].map(lambda b: f"{b:02d}")
    return sel


def _check_options(size: int, masks: str, crop_scale: float, time_block_frames: int) -> None:
    if masks not in ("estimate", "none"):
        raise ValueError(f"masks={masks!r}: AAU has no drawn masks, use 'estimate' or 'none'")
    if int(size) < 8:
        raise ValueError(f"size={size} is too small; use at least 8 pixels")
    if crop_scale <= 0:
        raise ValueError(f"crop_scale={crop_scale} must be positive")
    if time_block_frames < 1:
        raise ValueError(f"time_block_frames={time_block_frames} must be at least 1")


def _crop(frame: np.ndarray, row, crop_scale: float, size: int, pad_mode: str, path: Path) -> np.ndarray:
    w, h = row.box_x1 - row.box_x0, row.box_y1 - row.box_y0
    side = max(1, int(round(max(w, h) * crop_scale)))
    cx, cy = (row.box_x0 + row.box_x1) / 2.0, (row.box_y0 + row.box_y1) / 2.0
    try:
        crop = square_crop(frame, cx, cy, side, mode=pad_mode)
    except ValueError as exc:
        box = f"x {row.box_x0:g}..{row.box_x1:g}, y {row.box_y0:g}..{row.box_y1:g}"
        raise DataFormatError(f"the box of {row.identity} in {path} ({box}) lies outside the "
                              f"{frame.shape[1]}x{frame.shape[0]} frame ({exc}); fix or drop that row of "
                              f"annotations.csv (a box that only reaches past the edge is padded)") from exc
    return resize_image(crop, size)


def write_aau(root: str | Path, out: str | Path, *, size: int = 128, keep_occluded: bool = False,
              keep_turning: bool = False, keep_glitch: bool = True, crop_scale: float = 1.0,
              masks: str = "estimate", time_block_frames: int = 250,
              pad_mode: str = "edge", progress: bool = True) -> Path:
    """Write the AAU fish crops to `out` in the project's data set format and return `out`."""
    _check_options(size, masks, crop_scale, time_block_frames)
    root = Path(root)
    ann = read_annotations(root)
    sel = _select(ann, keep_occluded=keep_occluded, keep_turning=keep_turning, keep_glitch=keep_glitch,
                  time_block_frames=time_block_frames)
    sel["image_id"] = sel["file"].map(lambda f: Path(f).stem) + "_" + sel["identity"]
    dup = sel["image_id"][sel["image_id"].duplicated()]
    if not dup.empty:
        raise DataFormatError(f"{root / 'annotations.csv'} has two boxes for '{dup.iloc[0]}'; "
                              f"each fish may appear once per frame")
    missing = [f for f in sel["file"].unique() if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} frame file(s) named in annotations.csv are missing, e.g. {root / missing[0]}; "
            f"the data/ folder is incomplete: {DOWNLOAD_HINT}")

    options = dict(keep_occluded=keep_occluded, keep_turning=keep_turning, keep_glitch=keep_glitch,
                   crop_scale=crop_scale, time_block_frames=time_block_frames,
                   pad_mode=pad_mode)
    with DatasetWriter(Path(out), with_masks=masks == "estimate") as writer:
        groups = sel.groupby("file", sort=True)
        for file, rows in tqdm(groups, total=groups.ngroups, desc="AAU frames", disable=not progress):
            path = root / file
            try:
                frame = read_image(path)
            except DataFormatError as exc:
                raise DataFormatError(f"{exc}; or {DOWNLOAD_HINT}") from exc
            for row in rows.itertuples(index=False):
                image = _crop(frame, row, crop_scale, size, pad_mode, path)
                fish = pattern = None
                if masks == "estimate":
                    fish, pattern = estimate_masks(image)
                writer.add(
                    row.image_id, image, fish, pattern, identity=row.identity, session=row.session,
                    frame=int(row.frame), source="aau", video=row.video,
                    orientation="right" if row.right else "left",
                    **{f: bool(getattr(row, f)) for f in FLAG_NAMES},
                    **{c: float(getattr(row, c)) for c in BOX_COLUMNS.values()}, file=file)
        info = {"source": "aau", "image_size": int(size), "masks": masks, "root": str(root), **options}
        return writer.commit(info)

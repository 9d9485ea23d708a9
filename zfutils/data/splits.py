"""Train/val/test splits, stratified by identity, written as columns of metadata.csv.

Columns added:
- `task`: `inpaint` (images with pattern masks used for inpainting, labels dropped) or `classify`.
- `split_inpaint`: train/val/test for inpainting images (80:16:4). Split by source image, so the
  four flips of one image never straddle a split (the study split after flipping).
- `split_random`, `split_session`, `split_open`: the three classification splits (80:10:10):
  `random` as the study; `session` keeps recording sessions apart (for videos: contiguous time
  blocks, with `gap` frames dropped after each change of split); `open` holds out individuals.
- `split`: the one the config selects (`split.classify`).

Empty strings mark rows a column does not apply to; `gap` marks rows no split uses.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
CLASSIFY_SPLITS = ("random", "session", "open")


class SplitError(ValueError):
    """A split that cannot be made from this data (too few sessions or individuals)."""


def _cut(n: int, ratios) -> list[int]:
    """Sizes for `n` items by `ratios` (largest remainder), at least one per part when n allows."""
    ratios = np.asarray(ratios, dtype=float) / np.sum(ratios)
    raw = ratios * n
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes))[: n - sizes.sum()]:
        sizes[i] += 1
    for i in range(len(sizes)):  # give an empty part one item from the largest
        if sizes[i] == 0 and ratios[i] > 0 and n >= len(sizes):
            sizes[np.argmax(sizes)] -= 1
            sizes[i] = 1
    return sizes.tolist()


def stratified_labels(identities: pd.Series, ratios, rng: np.random.Generator,
                      names=SPLITS) -> pd.Series:
    """Per identity, shuffle its rows and cut them by `ratios`: exact stratification."""
    out = pd.Series("", index=identities.index, dtype=object)
    for _, idx in identities.groupby(identities, sort=True).groups.items():
        idx = np.array(sorted(idx))
        rng.shuffle(idx)
        start = 0
        for name, size in zip(names, _cut(len(idx), ratios)):
            out.loc[idx[start:start + size]] = name
            start += size
    return out


def session_labels(meta: pd.DataFrame, ratios, rng: np.random.Generator, gap_frames: int = 0) -> pd.Series:
    """Whole sessions go to one split, cut by the ratios over the number of sessions. Sessions
    are cut per video where there is a `video` column (one AAU video shows fish 1-3 only), so
    that every individual lands in train, val and test."""
    if (meta["session"].astype(str) == "unknown").any():
        raise SplitError("the session split needs a `session` for every image; this data set has "
                         "images with session 'unknown' (give a session column, or use split.classify: random)")
    groups = meta["video"] if "video" in meta.columns else pd.Series("all", index=meta.index)
    out = pd.Series("", index=meta.index, dtype=object)
    for group, rows in meta.groupby(groups, sort=True):
        names = sorted(rows["session"].unique())
        if len(names) < len(SPLITS):
            where = "" if group == "all" else f" in {group}"
            raise SplitError(
                f"the session split needs at least {len(SPLITS)} sessions{where}, found {len(names)} ({names}); "
                "record more sessions, lower data.aau.time_block_frames, or use split.classify: random")
        rng.shuffle(names)
        start = 0
        for split, size in zip(SPLITS, _cut(len(names), ratios)):
            out[rows.index[rows["session"].isin(names[start:start + size])]] = split
            start += size
    for split in SPLITS:
        missing = sorted(set(meta["identity"]) - set(meta.loc[out == split, "identity"]))
        if missing:
            raise SplitError(f"the session split left {missing} without {split} images: their images sit in too "
                             "few sessions; record more sessions per individual or use split.classify: random")
    if gap_frames and {"video", "frame"} <= set(meta.columns):
        out = _drop_gaps(meta, out, gap_frames)
    return out


def _drop_gaps(meta: pd.DataFrame, labels: pd.Series, gap_frames: int) -> pd.Series:
    """After each change of split along a video's time line, mark `gap_frames` frames as `gap`,
    so that neighbouring frames of two blocks never sit on both sides of a split."""
    out = labels.copy()
    for _, rows in meta.groupby("video"):
        previous, boundary = None, None
        for idx, frame in rows["frame"].astype(int).sort_values(kind="stable").items():
            if previous is not None and labels[idx] != previous:
                boundary = frame
            previous = labels[idx]
            if boundary is not None and frame < boundary + gap_frames:
                out[idx] = "gap"
    return out


def open_labels(meta: pd.DataFrame, ratios, holdout: int, rng: np.random.Generator) -> pd.Series:
    """Held-out individuals are `test`; the others split into train and val by the ratios' first two."""
    identities = sorted(meta["identity"].unique())
    if holdout < 1 or len(identities) - holdout < 2:
        raise SplitError(f"the open split holds out {holdout} of {len(identities)} individuals; it needs "
                         "at least 1 held out and 2 kept (change split.open_holdout)")
    held = set(rng.choice(identities, size=holdout, replace=False).tolist())
    out = pd.Series("test", index=meta.index, dtype=object)
    known = ~meta["identity"].isin(held)
    out[known] = stratified_labels(meta.loc[known, "identity"], ratios[:2], rng, names=SPLITS[:2])
    return out


def inpaint_labels(meta: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.Series:
    """`inpaint` for a `fraction` of the images of every (identity, session) cell, the rest
    `classify`: every individual keeps classification images in every session. Counts are
    rounded at random, so the overall share matches `fraction` even for small cells."""
    out = pd.Series("classify", index=meta.index, dtype=object)
    cells = meta.groupby([meta["identity"].astype(str), meta["session"].astype(str)], sort=True).groups
    for _, idx in cells.items():
        idx = np.array(sorted(idx))
        exact = fraction * len(idx)
        take = min(int(exact) + int(rng.random() < exact - int(exact)), len(idx) - 1)
        out[rng.choice(idx, size=max(take, 0), replace=False)] = "inpaint"
    return out


def assign_splits(meta: pd.DataFrame, split_cfg: dict, seed: int, has_pattern_masks: bool,
                  gap_frames: int = 0) -> tuple[pd.DataFrame, dict]:
    """Add the task and split columns; returns the table and notes on splits that were impossible
    (the selected one being impossible is an error)."""
    meta = meta.copy()
    identities = sorted(meta["identity"].astype(str).unique())
    if len(identities) < 2:
        raise SplitError(f"the data set has {len(identities)} individual ({', '.join(identities) or 'none'}); telling "
                         "individuals apart needs at least 2: add images of other individuals (another sub-folder "
                         "for the folder source, rows with another identity in the CSV)")
    rng = np.random.default_rng(seed)
    notes: dict[str, str] = {}
    meta["task"] = "classify"
    if has_pattern_masks and split_cfg["inpaint_fraction"] > 0:
        meta["task"] = inpaint_labels(meta, split_cfg["inpaint_fraction"], rng)
    else:
        notes["inpaint"] = "no pattern masks: no inpainting set"
    meta["split_inpaint"] = ""
    inpaint = meta["task"] == "inpaint"
    if inpaint.any():
        meta.loc[inpaint, "split_inpaint"] = stratified_labels(meta.loc[inpaint, "identity"],
                                                               split_cfg["inpaint_ratios"], rng)
    cls = meta.loc[~inpaint]
    ratios = split_cfg["classify_ratios"]
    makers = {
        "random": lambda: stratified_labels(cls["identity"], ratios, rng),
        "session": lambda: session_labels(cls, ratios, rng, gap_frames),
        "open": lambda: open_labels(cls, ratios, split_cfg["open_holdout"], rng),
    }
    for name, make in makers.items():
        meta[f"split_{name}"] = ""
        try:
            meta.loc[~inpaint, f"split_{name}"] = make()
        except SplitError as err:
            notes[name] = str(err)
    chosen = split_cfg["classify"]
    if chosen not in CLASSIFY_SPLITS:
        raise SplitError(f"unknown split.classify '{chosen}'; known: {', '.join(CLASSIFY_SPLITS)}")
    if chosen in notes:
        raise SplitError(notes[chosen])
    _check_parts(meta.loc[~inpaint], chosen)
    meta["split"] = meta[f"split_{chosen}"]
    return meta, notes


def _check_parts(cls: pd.DataFrame, chosen: str) -> None:
    """The selected split must give train, val and test images, and train at least 2 individuals."""
    labels = cls[f"split_{chosen}"]
    empty = [s for s in SPLITS if not (labels == s).any()]
    trained = cls.loc[labels == "train", "identity"].nunique()
    if empty or trained < 2:
        per = cls.groupby("identity").size()
        what = f"no {' or '.join(empty)} images" if empty else f"{trained} individual in train"
        raise SplitError(
            f"split.classify '{chosen}' leaves {what}: {len(per)} individuals with {per.min()} to {per.max()} "
            f"classification images each; every individual needs at least {len(SPLITS)} (one each for train, val "
            f"and test). Add images, or drop the individuals with fewer")


def split_table(meta: pd.DataFrame) -> pd.DataFrame:
    """Image counts per split column and value: the split table the data stage shows."""
    cols = [c for c in meta.columns if c.startswith("split_")]
    rows = {c.removeprefix("split_"): meta[c].replace("", np.nan).value_counts() for c in cols}
    table = pd.DataFrame(rows).T.fillna(0).astype(int)
    return table[[c for c in (*SPLITS, "gap") if c in table.columns]]

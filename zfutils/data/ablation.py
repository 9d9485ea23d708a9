"""The region ablation (the study's Tables 1-2): classifiers trained on images with a region removed.

Every image splits into three disjoint regions by its masks:

- P, the pattern: the patterned trunk (`pattern`; a pattern pixel outside the fish mask is P);
- F, the fish body outside the pattern (`fish & ~pattern`);
- B, the background (`~fish & ~pattern`).

The study's seven conditions, "background only, fish only, pattern only, no background, no fish,
no pattern, all", are read as the non-empty subsets of {B, F, P} that are kept: `background_only`
(B), `fish_only` (F), `pattern_only` (P), `no_background` (F+P), `no_fish` (B+P), `no_pattern`
(B+F), `all` (B+F+P). Removed pixels get the backbone's "missing pixel" colour, so every model
sees "nothing there" the way it was trained to.

The study drew 300 images per individual from the classification test set and split them anew;
`select_ablation_rows` does that and `ablation_sets` makes the three data sets stage 03 trains on.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from zfutils.data.format import StoredDataset
from zfutils.data.splits import SPLITS, SplitError, session_labels, stratified_labels
from zfutils.data.torchsets import ClassificationSet

REGIONS: dict[str, tuple[str, ...]] = {
    "background_only": ("B",),
    "fish_only": ("F",),
    "pattern_only": ("P",),
    "no_background": ("F", "P"),
    "no_fish": ("B", "P"),
    "no_pattern": ("B", "F"),
    "all": ("B", "F", "P"),
}
CONDITIONS = tuple(REGIONS)
SOURCES = ("test", "classify")
RULES = ("random", "session")
COLUMN = "split_ablation"


def _regions(condition: str) -> tuple[str, ...]:
    if condition not in REGIONS:
        raise ValueError(f"unknown ablation condition '{condition}'; known: {', '.join(CONDITIONS)}")
    return REGIONS[condition]


def kept_region(condition: str, fish: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Boolean tensor, True where `condition` keeps the pixel; masks are [H,W], [1,H,W] or [B,1,H,W]
    (nonzero = inside)."""
    fish, pattern = fish.bool(), pattern.bool()
    parts = {"P": lambda: pattern, "F": lambda: fish & ~pattern, "B": lambda: ~fish & ~pattern}
    kept = torch.zeros(torch.broadcast_shapes(fish.shape, pattern.shape), dtype=torch.bool, device=fish.device)
    for region in _regions(condition):
        kept = kept | parts[region]()
    return kept


def _check_fill(fill) -> tuple[float, float, float]:
    values = tuple(float(v) for v in fill)
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"fill must be 3 values in [0, 1] (an RGB colour in image space), got {fill!r}; "
                         "pass the backbone's missing_fill")
    return values


def apply_condition(image: torch.Tensor, fish: torch.Tensor, pattern: torch.Tensor, condition: str,
                    fill) -> torch.Tensor:
    """`image` ([3,H,W] or [B,3,H,W], float in [0, 1]) with the pixels `condition` removes set to
    `fill`; kept pixels are left bit-identical."""
    if image.ndim not in (3, 4) or image.shape[-3] != 3 or not image.is_floating_point():
        raise ValueError(f"image must be a float [3,H,W] or [B,3,H,W] tensor in [0, 1], got "
                         f"{tuple(image.shape)} {image.dtype}")
    kept = kept_region(condition, fish, pattern)
    if kept.ndim == 2:
        kept = kept[None]
    colour = torch.tensor(_check_fill(fill), dtype=image.dtype, device=image.device).view(3, 1, 1)
    return torch.where(kept, image, colour)


class AblationSet(Dataset):
    """A ClassificationSet-like data set whose images have a region removed; everything else in
    an item (all-zero mask, masks, label, index) is unchanged, so stage 03 trains on it as is."""

    def __init__(self, dataset, *, condition: str, fill):
        _regions(condition)
        self.dataset = dataset
        self.condition = condition
        self.fill = _check_fill(fill)
        self.rows = dataset.rows
        self.classes = dataset.classes
        self.class_index = dataset.class_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["image"] = apply_condition(item["image"], item["fish"], item["pattern"], self.condition, self.fill)
        return item


def select_ablation_rows(meta: pd.DataFrame, *, per_individual: int, seed: int, ratios, rule: str,
                         source: str = "test", column: str = "split", gap_frames: int = 0) -> pd.DataFrame:
    """At most `per_individual` classification images per individual (from the `test` split of
    `column`, or from every classification image with source `classify`), drawn with `seed` and
    split anew by `rule` into the column `split_ablation`. Returns a copy of those rows; the
    counts taken and available per individual are in `.attrs["ablation"]`."""
    if source not in SOURCES:
        raise ValueError(f"unknown ablation source '{source}'; known: {', '.join(SOURCES)}")
    if rule not in RULES:
        raise ValueError(f"unknown ablation split rule '{rule}'; known: {', '.join(RULES)}")
    if int(per_individual) < 1:
        raise ValueError(f"ablation per_individual must be at least 1, got {per_individual}")
    if column not in meta.columns:
        raise ValueError(f"the metadata has no column '{column}'; run stage 01 to write the splits")
    pool = meta[meta["task"] == "classify"]
    if source == "test":
        pool = pool[pool[column] == "test"]
    if pool.empty:
        raise ValueError(f"no classification images with source '{source}' (column '{column}'); "
                         "check the splits of stage 01 or use ablation.source: classify")
    rng = np.random.default_rng(seed)
    taken, available, chosen = {}, {}, []
    for identity, rows in pool.groupby(pool["identity"].astype(str), sort=True):
        rows = rows.sort_values("image_id", kind="stable")
        n = min(int(per_individual), len(rows))
        picked = np.sort(rng.choice(len(rows), size=n, replace=False))
        chosen.append(rows.iloc[picked])
        taken[identity], available[identity] = n, len(rows)
    selected = pd.concat(chosen).copy()
    selected[COLUMN] = _resplit(selected, ratios, rule, rng, source, gap_frames)
    selected.attrs["ablation"] = {"source": source, "rule": rule, "per_individual": int(per_individual),
                                  "taken": taken, "available": available}
    return selected


def _resplit(rows: pd.DataFrame, ratios, rule: str, rng: np.random.Generator, source: str,
             gap_frames: int) -> pd.Series:
    hint = ("use ablation.source: classify (all classification images) or ablation.rule: random"
            if source == "test" else "use ablation.rule: random or raise ablation.per_individual")
    if rule == "session":
        try:
            return session_labels(rows, ratios, rng, gap_frames)
        except SplitError as err:
            raise SplitError(f"the ablation images ({len(rows)}, source '{source}') cannot be split by "
                             f"session: {err}. For the ablation, {hint}") from err
    labels = stratified_labels(rows["identity"], ratios, rng)
    for split, ratio in zip(SPLITS, ratios):
        missing = sorted(set(rows["identity"]) - set(rows.loc[labels == split, "identity"]))
        if ratio > 0 and missing:
            raise SplitError(f"the ablation took too few images of {missing} to give them {split} images; {hint}")
    return labels


def ablation_sets(data: StoredDataset, rows: pd.DataFrame, condition: str, fill) -> dict[str, AblationSet]:
    """train/val/test AblationSets over the rows of `select_ablation_rows`; `data` and its
    metadata.csv are left untouched (the split column lives in a copy of the metadata)."""
    if not data.has_masks:
        raise ValueError(f"the data set at {data.root} has no fish or pattern masks, so no region can be "
                         "removed; rebuild it with data.masks: estimate or give masks")
    if COLUMN not in rows.columns:
        raise ValueError(f"rows lack the column '{COLUMN}'; make them with select_ablation_rows")
    if rows["image_id"].duplicated().any():
        raise ValueError("rows hold an image_id twice; make them with select_ablation_rows")
    unknown = sorted(set(rows["image_id"]) - set(data.meta["image_id"]))
    if unknown:
        raise ValueError(f"{len(unknown)} ablation rows are not in the data set at {data.root} "
                         f"(e.g. {unknown[:3]}); select them from this data set's metadata")
    meta = data.meta.copy()
    meta[COLUMN] = meta["image_id"].map(rows.set_index("image_id")[COLUMN]).fillna("")
    view = dataclasses.replace(data, meta=meta)
    return {split: AblationSet(ClassificationSet(view, split, column=COLUMN), condition=condition, fill=fill)
            for split in SPLITS}

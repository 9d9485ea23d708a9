"""torch Datasets over a stored data set: image, mask and label tensors.

Images come as float tensors in [0, 1] (3xHxW); how a model wants them (value range, how the
mask enters) is the backbone's business, not the data set's. Decoded images are kept in memory
(uint8), since every stage reads each image many times and decoding PNGs dominates otherwise.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from zfutils.data.format import StoredDataset

FLIPS = {"none": (), "horizontal": (2,), "vertical": (1,), "both": (1, 2)}


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)  # PIL arrays are read-only


class _StoredImages(Dataset):
    def __init__(self, data: StoredDataset, rows, with_masks: bool):
        self.data = data
        self.rows = rows.reset_index(drop=True)
        self.with_masks = with_masks and data.has_masks
        self._cache: dict[int, tuple] = {}

    def _load(self, i: int) -> tuple:
        if i not in self._cache:
            image_id = self.rows.loc[i, "image_id"]
            image = _to_tensor(self.data.image(image_id))
            if self.with_masks:
                fish = torch.from_numpy(self.data.mask(image_id, "fish"))[None]
                pattern = torch.from_numpy(self.data.mask(image_id, "pattern"))[None]
            else:
                fish = pattern = torch.zeros((1, *image.shape[1:]), dtype=torch.bool)
            self._cache[i] = (image, fish, pattern)
        return self._cache[i]


class InpaintingSet(_StoredImages):
    """Inpainting images of one split, each in every flip of `flips`; the hole is the pattern mask.
    Labels are dropped, as in the study."""

    def __init__(self, data: StoredDataset, split: str, flips=("none", "horizontal", "vertical", "both")):
        unknown = [f for f in flips if f not in FLIPS]
        if unknown:
            raise ValueError(f"unknown flips {unknown}; known: {', '.join(FLIPS)}")
        if not data.has_masks:
            raise ValueError(f"the data set at {data.root} has no pattern masks, so it has no inpainting set; "
                             "rebuild it with data.masks: estimate or give masks")
        rows = data.meta[(data.meta["task"] == "inpaint") & (data.meta["split_inpaint"] == split)]
        super().__init__(data, rows, with_masks=True)
        self.flips = list(flips)

    def __len__(self) -> int:
        return len(self.rows) * len(self.flips)

    def __getitem__(self, index: int) -> dict:
        i, f = divmod(index, len(self.flips))
        image, fish, pattern = self._load(i)
        dims = FLIPS[self.flips[f]]
        if dims:
            image, fish, pattern = (t.flip(dims) for t in (image, fish, pattern))
        return {"image": image.float() / 255, "mask": pattern.float(), "fish": fish, "pattern": pattern,
                "index": index}


class ClassificationSet(_StoredImages):
    """Classification images of one split (or several: a tuple) with an all-zero mask (as the study)
    and integer labels. `column` picks the split rule (`split`, the configured one, or e.g. `split_session`)."""

    def __init__(self, data: StoredDataset, split: str | tuple[str, ...], column: str = "split", with_masks: bool = True):
        if column not in data.meta.columns:
            raise ValueError(f"metadata.csv of {data.root} has no column '{column}'; run stage 01 to write the splits")
        wanted = (split,) if isinstance(split, str) else tuple(split)
        rows = data.meta[(data.meta["task"] == "classify") & data.meta[column].isin(wanted)]
        super().__init__(data, rows, with_masks=with_masks)
        labelled = data.meta[(data.meta["task"] == "classify") & data.meta[column].isin(["train", "val", "test"])]
        self.classes = sorted(labelled["identity"].astype(str).unique())
        self.class_index = {name: k for k, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        image, fish, pattern = self._load(index)
        label = self.class_index[str(self.rows.loc[index, "identity"])]
        return {"image": image.float() / 255, "mask": torch.zeros_like(fish, dtype=torch.float32),
                "fish": fish, "pattern": pattern, "label": torch.tensor(label), "index": index}

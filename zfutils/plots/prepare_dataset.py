"""Figures of the data stage: samples with their masks, class balance."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from zfutils.data.format import StoredDataset

FISH_COLOUR = (0.1, 0.9, 1.0)
PATTERN_COLOUR = (1.0, 0.2, 0.6)


def pick_samples(meta: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """`n` rows spread over identities (round robin), reproducible by seed."""
    rng = np.random.default_rng(seed)
    per_id = {k: rng.permutation(v.index.to_numpy()) for k, v in meta.groupby("identity", sort=True)}
    picked, depth = [], 0
    while len(picked) < min(n, len(meta)):
        for rows in per_id.values():
            if depth < len(rows) and len(picked) < n:
                picked.append(rows[depth])
        depth += 1
    return meta.loc[picked]


def overlay_masks(image: np.ndarray, fish: np.ndarray, pattern: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with the pattern mask tinted and the fish silhouette's border drawn."""
    out = image.astype(float) / 255
    out[pattern] = (1 - alpha) * out[pattern] + alpha * np.array(PATTERN_COLOUR)
    inner = fish.copy()
    inner[1:-1, 1:-1] = fish[1:-1, 1:-1] & fish[:-2, 1:-1] & fish[2:, 1:-1] & fish[1:-1, :-2] & fish[1:-1, 2:]
    out[fish & ~inner] = FISH_COLOUR
    return out


def sample_grid(data: StoredDataset, n: int = 12, seed: int = 0, with_masks: bool = True):
    """Rows of images; with masks, a second row per row shows the fish outline and pattern mask."""
    rows = pick_samples(data.meta, n, seed)
    cols = min(6, len(rows))
    n_rows = int(np.ceil(len(rows) / cols))
    show_masks = with_masks and data.has_masks
    fig, axes = plt.subplots(n_rows * (2 if show_masks else 1), cols, squeeze=False,
                             figsize=(1.9 * cols, 2.0 * n_rows * (2 if show_masks else 1)))
    for ax in axes.flat:
        ax.axis("off")
    for k, (_, row) in enumerate(rows.iterrows()):
        r, c = divmod(k, cols)
        image = data.image(row["image_id"])
        top = axes[r * (2 if show_masks else 1), c]
        top.imshow(image)
        top.set_title(f"{row['identity']} · {row['session']}", fontsize=7)
        if show_masks:
            overlay = overlay_masks(image, data.mask(row["image_id"], "fish"), data.mask(row["image_id"], "pattern"))
            axes[2 * r + 1, c].imshow(overlay)
            axes[2 * r + 1, c].set_title("fish outline · pattern", fontsize=7)
    fig.suptitle(f"{data.info.get('source', '?')} data, masks: {data.info.get('masks', '?')}", fontsize=9)
    fig.tight_layout()
    return fig


def class_balance(meta: pd.DataFrame, column: str = "split", rule: str | None = None):
    """Images per individual, stacked by task/split: shows imbalance and what each split holds.
    `rule` names the classification split rule in the title (default: the column's name)."""
    table = (meta.assign(part=np.where(meta["task"] == "inpaint", "inpaint:" + meta["split_inpaint"].astype(str),
                                       "classify:" + meta[column].astype(str)))
             .groupby(["identity", "part"]).size().unstack(fill_value=0))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    table.plot.bar(stacked=True, ax=ax, width=0.8, colormap="tab20")
    ax.set_xlabel("individual")
    ax.set_ylabel("images")
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title(f"images per individual (classification split: {rule or column.removeprefix('split_')})", fontsize=9)
    fig.tight_layout()
    return fig

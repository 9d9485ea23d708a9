"""Figures of the region-ablation stage: what each condition leaves, and test accuracy by condition."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def condition_grid(examples: dict, title: str = ""):
    """Columns: conditions; rows: images (Bx3xHxW tensors in [0, 1])."""
    conditions = list(examples)
    n = len(next(iter(examples.values())))
    fig, axes = plt.subplots(n, len(conditions), figsize=(1.5 * len(conditions), 1.6 * n), squeeze=False)
    for j, condition in enumerate(conditions):
        for i in range(n):
            axes[i, j].imshow(examples[condition][i].permute(1, 2, 0).clamp(0, 1).numpy())
            axes[i, j].axis("off")
        axes[0, j].set_title(condition.replace("_", " "), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def ablation_bars(records: pd.DataFrame, chance: float, title: str = ""):
    """Test accuracy per condition, one bar per mode, with chance level."""
    table = records.pivot(index="condition", columns="mode", values="accuracy").reindex(records["condition"].unique())
    fig, ax = plt.subplots(figsize=(7, 3.2))
    table.plot.bar(ax=ax, width=0.75)
    ax.axhline(chance, color="grey", ls=":", label=f"chance ({chance:.2f})")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy")
    ax.set_xticklabels([c.replace("_", " ") for c in table.index], rotation=30, ha="right")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig

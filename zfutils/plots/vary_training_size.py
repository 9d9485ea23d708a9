"""Figures of the training-set-size study: test accuracy against training images per individual."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter


def size_curves(panels: dict[str, dict[str, dict[int, list[float]]]], chance: dict[str, float] | None = None,
                title: str = ""):
    """One panel per key of `panels` (a backbone, or a pattern family), in it one curve per key
    (a family, or a backbone): mean test accuracy over seeds against images per individual (log
    x), error bars one std; a dotted line at chance (`chance[panel]`)."""
    names = list(panels) or ["no results"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        sizes = set()
        for label, points in panels.get(name, {}).items():
            x = sorted(int(n) for n in points)
            values = [np.asarray(points[n], dtype=float) for n in x]
            mean = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values]
            std = [np.nanstd(v) if np.isfinite(v).any() else np.nan for v in values]
            ax.errorbar(x, mean, yerr=std, marker="o", ms=4, capsize=3, label=label)
            sizes.update(x)
        level = (chance or {}).get(name)
        if level:
            ax.axhline(level, color="grey", ls=":", label=f"chance ({level:.2f})")
        if sizes:
            ax.set_xscale("log")
            ax.set_xticks(sorted(sizes))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "nothing ran", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("training images per individual")
        ax.set_title(name, fontsize=9)
    axes[0, 0].set_ylabel("test accuracy")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig

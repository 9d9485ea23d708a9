"""Figures of the cross-species transfer stage: zero-shot scores on another pattern family and on
held-out individuals, and few-shot accuracy on the new family."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib import transforms
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

ZERO_SHOT = ("top1", "mAP", "ari", "nmi")


def transfer_summary(zero_shot: pd.DataFrame, few_shot: dict[str, dict[int, list[float]]],
                     chance: float | None = None, title: str = ""):
    """Left: zero-shot top-1, mAP, ARI and NMI per evaluation set (rows of `zero_shot`, indexed by
    encoder and evaluation set), one bar per encoder. Right: few-shot test accuracy of a probe
    against images per individual of the new family, one curve per encoder, error bars over seeds."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    if len(zero_shot):
        metrics = [m for m in ZERO_SHOT if m in zero_shot.columns and zero_shot[m].astype(float).notna().any()]
        encoders = list(dict.fromkeys(zero_shot.index.get_level_values(0)))
        places = list(dict.fromkeys(zero_shot.index.get_level_values(1)))
        width = 0.8 / len(encoders)
        for k, encoder in enumerate(encoders):
            for g, where in enumerate(places):
                row = zero_shot.loc[(encoder, where)] if (encoder, where) in zero_shot.index else None
                heights = [np.nan if row is None else float(row[m]) for m in metrics]
                x = g * (len(metrics) + 1) + np.arange(len(metrics)) + (k - (len(encoders) - 1) / 2) * width
                left.bar(x, heights, width, color=f"C{k}", label=encoder if g == 0 else None)
        ticks = [g * (len(metrics) + 1) + j for g in range(len(places)) for j in range(len(metrics))]
        left.set_xticks(ticks)
        left.set_xticklabels(metrics * len(places), fontsize=7)
        below = transforms.blended_transform_factory(left.transData, left.transAxes)
        for g, where in enumerate(places):
            left.text(g * (len(metrics) + 1) + (len(metrics) - 1) / 2, -0.14, where, transform=below, ha="center",
                      va="top", fontsize=8)
        lowest = np.nanmin(zero_shot[metrics].to_numpy(dtype=float), initial=0)
        left.set_ylim(min(0.0, float(lowest) - 0.05), 1.02)
        left.axhline(0, color="black", lw=0.6)
        left.legend(fontsize=7)
    else:
        left.text(0.5, 0.5, "not applicable", ha="center", va="center", transform=left.transAxes)
    left.set_title("zero-shot", fontsize=9)
    sizes = set()
    for label, points in few_shot.items():
        x = sorted(int(n) for n in points)
        values = [np.asarray(points[n], dtype=float) for n in x]
        right.errorbar(x, [np.nanmean(v) for v in values], yerr=[np.nanstd(v) for v in values], marker="o", ms=4,
                       capsize=3, label=label)
        sizes.update(x)
    if sizes:
        right.set_xscale("log")
        right.set_xticks(sorted(sizes))
        right.xaxis.set_major_formatter(ScalarFormatter())
        right.xaxis.set_minor_formatter(NullFormatter())
        if chance:
            right.axhline(chance, color="grey", ls=":", label=f"chance ({chance:.2f})")
        right.legend(fontsize=7)
    else:
        right.text(0.5, 0.5, "not applicable", ha="center", va="center", transform=right.transAxes)
    right.set_ylim(0, 1.02)
    right.set_xlabel("images per individual of the new family")
    right.set_ylabel("test accuracy")
    right.set_title("few-shot", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig

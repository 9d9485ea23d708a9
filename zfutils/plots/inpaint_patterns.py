"""Figures of the inpainting stage: loss curves, ground truth / masked input / output."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def loss_curves(records: list[dict], title: str = ""):
    """Training generator/discriminator loss per iteration and validation generator loss (stage 02)."""
    train = pd.DataFrame([r for r in records if r.get("kind") == "train"])
    val = pd.DataFrame([r for r in records if r.get("kind") == "val"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    if not train.empty:
        axes[0].plot(train["iteration"], train["g_loss"], label="generator", lw=1)
        axes[0].plot(train["iteration"], train["d_loss"], label="discriminator", lw=1)
    if not val.empty:
        axes[1].plot(val["iteration"], val["val_g_loss"], "o-", color="C2", label="validation generator loss")
        best = val.loc[val["val_g_loss"].idxmin()]
        axes[1].axvline(best["iteration"], color="grey", ls=":", label=f"best (iteration {int(best['iteration'])})")
    for ax, name in zip(axes, ("training", "validation")):
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.set_title(f"{title} {name}".strip(), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def inpainting_examples(images, masks, outputs, title: str = ""):
    """The study's Fig. 4-5: ground truth, masked input and inpainted output, one row per image.
    Tensors are Bx3xHxW / Bx1xHxW in [0, 1]."""
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        image = images[i].permute(1, 2, 0).numpy()
        mask = masks[i, 0].numpy() > 0.5
        masked = image.copy()
        masked[mask] = 1.0
        for ax, shown, name in zip(axes[i], (image, masked, outputs[i].permute(1, 2, 0).numpy().clip(0, 1)),
                                   ("ground truth", "masked input", "output")):
            ax.imshow(shown)
            ax.axis("off")
            if i == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig

"""Figures of the classification stage: shallow vs deep training curves (the study's Fig. 7),
confusion matrix, Grad-CAM across epochs (Fig. 8-9) and the pattern-focus curve."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


MODE_STYLE = {"shallow": "--", "deep": "-"}


def training_curves(histories: dict[str, list[dict]], chance: float, title: str = ""):
    """Training loss and validation accuracy per epoch, one line per mode."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for mode, records in histories.items():
        h = pd.DataFrame(records)
        if h.empty:
            continue
        axes[0].plot(h["epoch"], h["train_loss"], MODE_STYLE.get(mode, "-"), marker="o", label=mode)
        axes[1].plot(h["epoch"], h["val_accuracy"], MODE_STYLE.get(mode, "-"), marker="o", label=mode)
    axes[1].axhline(chance, color="grey", ls=":", label=f"chance ({chance:.2f})")
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("validation accuracy")
    axes[1].set_ylim(0, 1.02)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_matrix(matrix, classes: list[str], title: str = ""):
    fig, ax = plt.subplots(figsize=(0.55 * len(classes) + 2, 0.5 * len(classes) + 1.5))
    sns.heatmap(np.asarray(matrix), annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                xticklabels=classes, yticklabels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def cam_grid(images, cams_by_epoch: dict[int, np.ndarray], title: str = "", max_epochs: int = 6):
    """Rows: the watched images; columns: the image, then its Grad-CAM overlay at chosen epochs."""
    from zfutils.cam import overlay  # pytorch-grad-cam takes seconds to import: only when drawn
    epochs = sorted(cams_by_epoch)
    if len(epochs) > max_epochs:
        epochs = [epochs[i] for i in np.linspace(0, len(epochs) - 1, max_epochs).round().astype(int)]
    n = len(images)
    fig, axes = plt.subplots(n, len(epochs) + 1, figsize=(1.6 * (len(epochs) + 1), 1.6 * n), squeeze=False)
    for i in range(n):
        image = images[i].permute(1, 2, 0).numpy()
        axes[i, 0].imshow(image)
        for j, epoch in enumerate(epochs, start=1):
            axes[i, j].imshow(overlay(image, cams_by_epoch[epoch][i].astype(np.float32)))
            if i == 0:
                axes[i, j].set_title(f"epoch {epoch}", fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def pattern_focus(histories: dict[str, list[dict]], title: str = ""):
    """Share of class-activation (CAM) mass on the pattern, the rest of the fish and the background, per epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    colours = {"cam_pattern": "C3", "cam_fish_outside_pattern": "C1", "cam_background": "C0"}
    for mode, records in histories.items():
        h = pd.DataFrame(records)
        for key, colour in colours.items():
            if key in h:
                ax.plot(h["epoch"], h[key], MODE_STYLE.get(mode, "-"), color=colour, marker="o",
                        label=f"{key.removeprefix('cam_').replace('_', ' ')} ({mode})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of class-activation mass")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig

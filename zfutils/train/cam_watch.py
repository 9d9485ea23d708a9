"""Grad-CAM watched during training: a fixed set of validation images, their class activation maps
(zfutils.cam: HiResCAM or the study's Grad-CAM) after every epoch, saved and drawn, and the share of
each map's mass on the pattern, the rest of the fish and the background (the study's Fig. 8-9)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zfutils.cam import cam_mass_shares, grad_cams
from zfutils.data.torchsets import ClassificationSet
from zfutils.models.classifier import Classifier


def cam_watch_set(data: ClassificationSet, n: int) -> dict[str, torch.Tensor]:
    """`n` fixed validation images spread over identities, with their labels and masks."""
    order = data.rows.reset_index().groupby("identity", sort=True).cumcount().sort_values(kind="stable").index[:n]
    items = [data[int(i)] for i in order]
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "label", "fish", "pattern")}


class CamWatcher:
    """CAMs (`method`, zfutils.cam.CAM_METHODS) of the fixed images after every epoch, with the
    pattern-focus shares."""

    def __init__(self, watch: dict, out: Path, method: str = "hirescam"):
        self.watch, self.out, self.method = watch, Path(out), method
        self.cams: dict[int, np.ndarray] = {}

    def area_shares(self) -> dict[str, float]:
        """The shares a uniform map would give: the mean area of pattern, rest of the fish and
        background in the watched images, the level against which a CAM's focus reads."""
        fish, pattern = self.watch["fish"][:, 0].numpy(), self.watch["pattern"][:, 0].numpy()
        shares = cam_mass_shares(np.ones(fish.shape), fish, pattern)
        return {k.removeprefix("mean_"): float(v) for k, v in shares.items() if k.startswith("mean_")}

    def restore(self, epochs: int) -> None:
        """Epochs up to `epochs` this process did not train (a resumed run, or training done by
        zfutils.train.launch) from cams.npz, so the Grad-CAM figures show every epoch."""
        path = self.out / "cams.npz"
        if not path.is_file() or all(e in self.cams for e in range(1, epochs + 1)):
            return
        with np.load(path) as saved:
            for epoch in range(1, epochs + 1):
                if epoch not in self.cams and f"epoch_{epoch:03d}" in saved:
                    self.cams[epoch] = saved[f"epoch_{epoch:03d}"].astype(np.float32)

    def __call__(self, epoch: int, model: Classifier) -> dict:
        import matplotlib.pyplot as plt

        from zfutils.plots import cam_grid

        cams = grad_cams(model, model.cam_layer, self.watch["image"], self.watch["label"].tolist(),
                         method=self.method)
        self.cams[epoch] = cams
        np.savez_compressed(self.out / "cams.npz", **{f"epoch_{e:03d}": c.astype(np.float16) for e, c in self.cams.items()})
        (self.out / "cams").mkdir(exist_ok=True)
        fig = cam_grid(self.watch["image"], {epoch: cams}, title=f"epoch {epoch}")
        fig.savefig(self.out / "cams" / f"epoch_{epoch:03d}.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        shares = cam_mass_shares(cams, self.watch["fish"][:, 0].numpy(), self.watch["pattern"][:, 0].numpy())
        return {f"cam_{k.removeprefix('mean_')}": float(v) for k, v in shares.items() if np.ndim(v) == 0}

"""Training-time jitter of classification images, and the learning-rate schedule of a run.

Jitter: a small random turn, scale and shift (reflected borders, so no black edges appear that a
network could count) and a random brightness, contrast and saturation per image. It stands in
for what changes between recording sessions (light, exact pose, distance), so a network trained
on a few sessions does not take those for identity. There are no flips: a mirrored fish is a fish
facing the other way (and for real fish the other flank), which the aligned view has removed.
Each image's jitter is drawn from (seed, epoch, image index), so a resumed run, and every rank of
a distributed one, draws what one uninterrupted process would.

Schedule: a linear warm-up over the first `warmup_epochs` and a cosine decay to zero, as a
factor on each parameter group's learning rate, computed from the iteration alone (nothing to
save for resuming).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Jitter:
    rotate: float = 5.0       # degrees, either way
    scale: float = 0.1        # relative, either way
    shift: float = 0.05       # share of the side, either way, in x and y
    brightness: float = 0.2   # relative, either way
    contrast: float = 0.2
    saturation: float = 0.2

    @classmethod
    def from_cfg(cls, augment: dict) -> "Jitter | None":
        """`classify.augment` of the config; None when it is off."""
        if not augment.get("enabled", False):
            return None
        return cls(**{k: float(v) for k, v in augment.items() if k != "enabled"})

    def draws(self, keys: torch.Tensor) -> torch.Tensor:
        """Uniform numbers in [-1, 1], seven per image (turn, scale, shift x and y, brightness,
        contrast, saturation), from each image's key."""
        rows = [torch.rand(7, generator=torch.Generator().manual_seed(int(k))) for k in keys.tolist()]
        return torch.stack(rows) * 2 - 1 if rows else torch.zeros(0, 7)

    def __call__(self, images: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """`images` (Bx3xHxW in [0, 1]) jittered, one draw per key."""
        u = self.draws(keys).to(images.device, images.dtype)
        angle = torch.deg2rad(u[:, 0] * self.rotate)
        zoom = 1 + u[:, 1] * self.scale
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        shift = u[:, 2:4] * self.shift * 2  # in [-1, 1] coordinates the side is 2 long
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out = out * (1 + u[:, 4, None, None, None] * self.brightness)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = mean + (out - mean) * (1 + u[:, 5, None, None, None] * self.contrast)
        grey = out.mean(dim=1, keepdim=True)
        out = grey + (out - grey) * (1 + u[:, 6, None, None, None] * self.saturation)
        return out.clamp(0, 1)


def recipe(classify: dict) -> dict:
    """ClassifierTrainer's jitter and schedule options from `cfg['classify']` (stage 03, the
    region ablation and the deep runs of the size and transfer studies train alike)."""
    lr_factor(classify["schedule"], 0, 1, 0)  # an unknown schedule is named before anything trains
    return {"jitter": Jitter.from_cfg(classify["augment"]), "schedule": classify["schedule"],
            "warmup_epochs": float(classify["warmup_epochs"])}


def image_keys(seed: int, epoch: int, index: torch.Tensor) -> torch.Tensor:
    """Each image's jitter key in an epoch: equal wherever the image sits in a batch or a rank."""
    return (int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + index.long()


def lr_factor(schedule: str, iteration: int, total: int, warmup: int) -> float:
    """The learning-rate factor for optimiser step `iteration` (0-based) of `total`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown classify.schedule '{schedule}'; known: {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return 1.0
    if iteration < warmup:
        return (iteration + 1) / warmup
    progress = (iteration - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

"""Pretrained networks that losses and baselines need (VGG19 ImageNet features, ...).

Nothing is downloaded at run time: a file comes from an explicit local path or from the torch
hub cache (where torchvision would have put it), and a missing file is one error that says
where to put it and how to run without it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
VGG19_LAYERS = {"relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13,
                "relu3_3": 15, "relu3_4": 17, "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
                "relu5_1": 29, "relu5_2": 31}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(explicit: str | Path | None, filename: str, *, what: str, param: str, without: str,
                 source: str = "torchvision downloads it under this name") -> Path:
    """`explicit` if given (it must exist), else `filename` in the torch hub cache. `source` says
    where the file officially comes from, for the error message."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{what} weights {path} (from {param}) do not exist; {without}")
        return path
    cached = cache_dir() / filename
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"{what} weights are needed but {filename} is neither in the torch cache ({cached}) nor given as "
        f"{param}. Copy the file there from a machine that has it ({source}), "
        f"or set {param}: /path/to/{filename}; {without}")


class VGG19Features(nn.Module):
    """Frozen VGG19 conv layers up to `last`, returning the named ReLU outputs of an image in [0, 1]."""

    def __init__(self, weights: Path, layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1",
                                              "relu2_2", "relu3_4", "relu4_4", "relu5_2")):
        super().__init__()
        unknown = [l for l in layers if l not in VGG19_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown}; known: {', '.join(VGG19_LAYERS)}")
        last = max(VGG19_LAYERS[l] for l in layers)
        from torchvision.models import vgg19  # here: importing torchvision costs about 1.4 s per process

        features = vgg19(weights=None).features[: last + 1]
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        wanted = features.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ValueError(f"{weights} is not a torchvision VGG19 state_dict: it lacks features.{missing[0]} "
                             f"(and {len(missing) - 1} more)")
        features.load_state_dict({k: state[k] for k in wanted})
        self.features = features.eval().requires_grad_(False)
        self.layers = list(layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # always frozen, also inside a module set to train()
        return super().train(False)

    def forward(self, image: torch.Tensor, normalize: bool = True) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std if normalize else image
        wanted = {VGG19_LAYERS[l]: l for l in self.layers}
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

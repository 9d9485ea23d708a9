"""What the torchvision classification baselines (efficientnet, inceptionv3) share: one official
size, ImageNet input normalisation, and reading torchvision's ImageNet files from a local path or
the torch hub cache (nothing is downloaded at run time)."""
from __future__ import annotations

import torch

from zfutils.models.checkpoints import read_checkpoint, take
from zfutils.pretrained import IMAGENET_MEAN, IMAGENET_STD, find_weights

PARAM = "model.pretrained"
CACHE_WORDS = ("", "imagenet")  # model.pretrained values that mean "torchvision's file in the torch hub cache"


def official_size_only(name: str, width: float, blocks) -> None:
    """Baselines come in one official size; the inpainting models' scale knobs do not apply."""
    if width != 1 or blocks is not None:
        raise ValueError(
            f"backbone '{name}' is a torchvision classification baseline with one official size, but got "
            f"width={width}, blocks={blocks}; set model.width: 1.0 and model.blocks: null for it")


def imagenet_normalise(image: torch.Tensor) -> torch.Tensor:
    """An image in [0, 1] as torchvision's ImageNet weights expect it: (x - mean) / std per channel."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def checkpoint_hint(filename: str, url: str, builder: str) -> str:
    return (f"torchvision's ImageNet weights {filename} ({url}; torchvision.models.{builder}(weights='IMAGENET1K_V1') "
            f"downloads it on a machine with internet): put it in the torch hub cache "
            f"($TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints) and leave {PARAM} null "
            f"(or 'imagenet'), or set {PARAM}: /path/to/{filename}")


def read_imagenet_state(path, filename: str, url: str, *, what: str, hint: str, trust_pickle: bool = False) -> dict:
    """The state_dict in torchvision's file: at `path`, or `filename` in the torch hub cache when
    `path` is None, "" or "imagenet". BatchNorm counters missing from files saved by old PyTorch
    versions are added as 0 (they only matter with momentum=None), so the file loads strictly."""
    explicit = None if path is None or str(path).strip().lower() in CACHE_WORDS else path
    found = find_weights(explicit, filename, what=what, param=PARAM,
                         without=f"the file is {url}; or start from random weights (classify.init: random)")
    state = dict(take(read_checkpoint(found, how_to_get=hint, trust_pickle=trust_pickle), None, found))
    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return state

"""What the torchvision networks (the baselines efficientnet and inceptionv3, the embedding model
efficientnetv2) share: one official size, ImageNet input normalisation, reading torchvision's
ImageNet files from a local path or the torch hub cache (nothing is downloaded at run time), and
their registration as backbones without inpainting."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from zfutils.models.checkpoints import read_checkpoint, take
from zfutils.models.registry import Backbone, register
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


class ImagenetFile:
    """torchvision's ImageNet weight file of one network: its name, where it comes from, how to
    put it where the project finds it, and reading it as the generator's starting state."""

    def __init__(self, filename: str, builder: str, what: str, drop_prefix: str | None = None):
        self.filename, self.what, self.drop_prefix = filename, what, drop_prefix
        self.url = f"https://download.pytorch.org/models/{filename}"
        self.hint = checkpoint_hint(filename, self.url, builder)

    def load(self, path, *, trust_pickle: bool = False) -> dict:
        """{"generator": the file's state_dict (without keys under `drop_prefix`), "discriminator":
        None}; `path` None, "" or "imagenet" means the file in the torch hub cache."""
        state = read_imagenet_state(path, self.filename, self.url, what=self.what, hint=self.hint,
                                    trust_pickle=trust_pickle)
        if self.drop_prefix:
            state = {k: v for k, v in state.items() if not k.startswith(self.drop_prefix)}
        return {"generator": state, "discriminator": None}


def imagenet_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The ImageNet-normalised image; the mask is not an input of a network that does not inpaint."""
    return imagenet_normalise(image)


def features_encoder(generator: nn.Module) -> nn.Module:
    """torchvision EfficientNets: `features` (stem, MBConv stages, 1x1 conv to the last width)."""
    return generator.features


def features_cam_layer(generator: nn.Module) -> nn.Module:
    """torchvision EfficientNets: the last conv block (1x1 conv + BN + SiLU)."""
    return generator.features[-1]


def _fixed_width(channels: int, width: float = 1.0) -> int:
    """Encoder channels of a network with one official size (the `width` knob does not apply)."""
    return channels


def register_torchvision(*, name: str, family: str, build_generator, weights: ImagenetFile, embed_dim: int,
                         encoder_input=imagenet_input, encoder=features_encoder, cam_layer=features_cam_layer,
                         missing_fill=IMAGENET_MEAN) -> Backbone:
    """Register a torchvision ImageNet network as a backbone that neither inpaints nor
    discriminates (stage 02 skips it); `missing_fill` is its neutral input colour."""
    return register(Backbone(
        name=name, family=family, build_generator=build_generator, build_discriminator=None,
        load_pretrained=weights.load, inpaint=None, discriminate=None, encoder_input=encoder_input,
        encoder=encoder, cam_layer=cam_layer, embed_dim=partial(_fixed_width, embed_dim),
        checkpoint_hint=weights.hint, missing_fill=missing_fill))

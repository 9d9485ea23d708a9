"""EfficientNet-B0 (Tan & Le 2019; torchvision.models.efficientnet_b0) as a classification
baseline of the study.

The "generator" is torchvision's whole network (its parameter names, so torchvision's ImageNet
file loads strictly); it neither inpaints nor has a discriminator. The encoder is `features`
(stem, seven MBConv stages, 1x1 conv to 1280 ch): 1280 channels at H/32 x W/32 (padded convs, so
any side works; 2x2 at 64 px, 4x4 at 128 px). The study's head (global average pooling + one
linear layer) replaces torchvision's avgpool/dropout/classifier.

Input: the image in [0, 1], ImageNet-normalised; the mask is ignored (the study's baselines see
the plain image, which is what its all-zero mask means). No resizing: ImageNet training used
224 px crops, but the network is fully convolutional and the study feeds its own crop size.

Parameter counts (measured): network 5,288,548 (torchvision's meta agrees), encoder 4,007,548.
In train() the MBConv blocks apply stochastic depth (up to p=0.2) and BatchNorm updates its
statistics; the trainer's eval() of a frozen ("shallow") encoder turns both off.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import EfficientNet, efficientnet_b0

from zfutils.models.baseline_common import checkpoint_hint, imagenet_normalise, official_size_only, read_imagenet_state
from zfutils.models.registry import Backbone, register
from zfutils.pretrained import IMAGENET_MEAN

NAME = "efficientnet"
FILE = "efficientnet_b0_rwightman-7f5810bc.pth"   # torchvision EfficientNet_B0_Weights.IMAGENET1K_V1
URL = f"https://download.pytorch.org/models/{FILE}"
EMBED_DIM = 1280
CHECKPOINT_HINT = checkpoint_hint(FILE, URL, "efficientnet_b0")


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> EfficientNet:
    """torchvision's efficientnet_b0 (random init, 1000-class head kept so ImageNet files load)."""
    official_size_only(NAME, width, blocks)
    return efficientnet_b0(weights=None)


def encoder_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The ImageNet-normalised image; the mask is not an input of a classification baseline."""
    return imagenet_normalise(image)


def encoder(generator: EfficientNet) -> nn.Module:
    return generator.features


def cam_layer(generator: EfficientNet) -> nn.Module:
    """The last conv block (1x1 conv + BN + SiLU to 1280 ch)."""
    return generator.features[-1]


def embed_dim(width: float = 1.0) -> int:
    return EMBED_DIM


def load_pretrained(path, *, trust_pickle: bool = False) -> dict:
    """{"generator": torchvision's ImageNet state_dict, "discriminator": None}; `path` None, ""
    or "imagenet" means FILE in the torch hub cache."""
    state = read_imagenet_state(path, FILE, URL, what="EfficientNet-B0 ImageNet", hint=CHECKPOINT_HINT,
                                trust_pickle=trust_pickle)
    return {"generator": state, "discriminator": None}


BACKBONE = register(Backbone(
    name=NAME,
    family="baseline",
    build_generator=build_generator,
    build_discriminator=None,
    load_pretrained=load_pretrained,
    inpaint=None,
    discriminate=None,
    encoder_input=encoder_input,
    encoder=encoder,
    cam_layer=cam_layer,
    embed_dim=embed_dim,
    checkpoint_hint=CHECKPOINT_HINT,
    missing_fill=IMAGENET_MEAN,  # normalises to 0: the network's neutral input
))

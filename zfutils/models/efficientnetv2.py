"""EfficientNetV2-S (Tan & Le 2021; torchvision.models.efficientnet_v2_s) as the backbone of a
MiewID-style multi-species embedding model: this encoder + GeM pooling + sub-center ArcFace with
dynamic, frequency-based margins (params/backbones/efficientnetv2.yaml picks that head; the
pooling and the head live in zfutils.models.classifier and zfutils.models.arcface). MiewID itself
uses timm's efficientnetv2_rw_m; torchvision's V2-S is the nearest network that loads official
ImageNet weights from the torch hub cache without a new dependency.

The "generator" is torchvision's whole network (its parameter names, so torchvision's ImageNet
file loads strictly); it neither inpaints nor has a discriminator, so stage 02 skips it (family
`embedding`, not `inpainting`). The encoder is `features` (stem, three Fused-MBConv and three
MBConv stages, 1x1 conv to 1280 ch): 1280 channels at H/32 x W/32 (padded convs, so any side
works; 1x1 at 32 px, 2x2 at 64 px, 4x4 at 128 px). torchvision's avgpool/dropout/classifier are
replaced by the study's pooling and head.

Input: the image in [0, 1], ImageNet-normalised (torchvision's V2-S transforms use the ImageNet
mean and std); the mask is ignored, as for the baselines. No resizing: ImageNet training used
384 px crops, but the network is fully convolutional and the study feeds its own crop size.

Parameter counts (measured): network 21,458,488 (torchvision's meta agrees), encoder 20,177,488.
In train() the blocks apply stochastic depth (up to p=0.2) and BatchNorm (eps 0.001) updates its
statistics; the trainer's eval() of a frozen ("shallow") encoder turns both off.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import EfficientNet, efficientnet_v2_s

from zfutils.models.baseline_common import checkpoint_hint, imagenet_normalise, official_size_only, read_imagenet_state
from zfutils.models.registry import Backbone, register
from zfutils.pretrained import IMAGENET_MEAN

NAME = "efficientnetv2"
FAMILY = "embedding"
FILE = "efficientnet_v2_s-dd5fe13b.pth"   # torchvision EfficientNet_V2_S_Weights.IMAGENET1K_V1
URL = f"https://download.pytorch.org/models/{FILE}"
EMBED_DIM = 1280
CHECKPOINT_HINT = checkpoint_hint(FILE, URL, "efficientnet_v2_s")


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> EfficientNet:
    """torchvision's efficientnet_v2_s (random init, 1000-class head kept so ImageNet files load)."""
    official_size_only(NAME, width, blocks)
    return efficientnet_v2_s(weights=None)


def encoder_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The ImageNet-normalised image; the mask is not an input of an embedding model."""
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
    state = read_imagenet_state(path, FILE, URL, what="EfficientNetV2-S ImageNet", hint=CHECKPOINT_HINT,
                                trust_pickle=trust_pickle)
    return {"generator": state, "discriminator": None}


BACKBONE = register(Backbone(
    name=NAME,
    family=FAMILY,
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

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

from typing import TYPE_CHECKING

from zfutils.models.baseline_common import (ImagenetFile, features_cam_layer, features_encoder, imagenet_input,
                                            official_size_only, register_torchvision)

if TYPE_CHECKING:
    from torchvision.models import EfficientNet

NAME = "efficientnet"
FILE = "efficientnet_b0_rwightman-7f5810bc.pth"   # torchvision EfficientNet_B0_Weights.IMAGENET1K_V1
EMBED_DIM = 1280
WEIGHTS = ImagenetFile(FILE, "efficientnet_b0", "EfficientNet-B0 ImageNet")
URL, CHECKPOINT_HINT = WEIGHTS.url, WEIGHTS.hint
encoder_input, encoder, cam_layer, load_pretrained = imagenet_input, features_encoder, features_cam_layer, WEIGHTS.load


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> EfficientNet:
    """torchvision's efficientnet_b0 (random init, 1000-class head kept so ImageNet files load)."""
    from torchvision.models import efficientnet_b0  # here: importing torchvision costs about 1.4 s per process

    official_size_only(NAME, width, blocks)
    return efficientnet_b0(weights=None)


BACKBONE = register_torchvision(name=NAME, family="baseline", build_generator=build_generator, weights=WEIGHTS,
                                embed_dim=EMBED_DIM)  # missing fill: the ImageNet mean, which normalises to 0

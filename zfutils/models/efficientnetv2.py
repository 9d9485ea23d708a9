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

from typing import TYPE_CHECKING

from zfutils.models.baseline_common import (ImagenetFile, features_cam_layer, features_encoder, imagenet_input,
                                            official_size_only, register_torchvision)

if TYPE_CHECKING:
    from torchvision.models import EfficientNet

NAME = "efficientnetv2"
FAMILY = "embedding"
FILE = "efficientnet_v2_s-dd5fe13b.pth"   # torchvision EfficientNet_V2_S_Weights.IMAGENET1K_V1
EMBED_DIM = 1280
WEIGHTS = ImagenetFile(FILE, "efficientnet_v2_s", "EfficientNetV2-S ImageNet")
URL, CHECKPOINT_HINT = WEIGHTS.url, WEIGHTS.hint
encoder_input, encoder, cam_layer, load_pretrained = imagenet_input, features_encoder, features_cam_layer, WEIGHTS.load


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> EfficientNet:
    """torchvision's efficientnet_v2_s (random init, 1000-class head kept so ImageNet files load)."""
    from torchvision.models import efficientnet_v2_s  # here: importing torchvision costs about 1.4 s per process

    official_size_only(NAME, width, blocks)
    return efficientnet_v2_s(weights=None)


BACKBONE = register_torchvision(name=NAME, family=FAMILY, build_generator=build_generator, weights=WEIGHTS,
                                embed_dim=EMBED_DIM)  # missing fill: the ImageNet mean, which normalises to 0

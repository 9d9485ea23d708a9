"""InceptionV3 (Szegedy et al. 2016; torchvision.models.inception_v3, aux logits off) as a
classification baseline of the study.

The "generator" is torchvision's Inception3 built with aux_logits=False (its parameter names, so
torchvision's ImageNet file loads strictly once its AuxLogits.* keys are dropped; see
`load_pretrained`); it neither inpaints nor has a discriminator. The encoder is every layer from
Conv2d_1a_3x3 to Mixed_7c, in torchvision's order and under torchvision's names: 2048 channels
at about H/32 x W/32; avgpool, dropout and fc are left to the study's head (global average
pooling + one linear layer).

Input convention. Google's ImageNet weights were trained on images scaled to [-1, 1]. torchvision
feeds them ImageNet-normalised tensors and, with weights, sets transform_input=True, which maps
those back to exactly 2 * image - 1 inside `forward`. The encoder bypasses `forward`, so the
generator is built with transform_input=False and `encoder_input` produces 2 * image - 1 itself:
the same numbers the first conv sees in torchvision's pretrained model (a test checks this). The
mask is ignored (the study's baselines see the plain image; its all-zero mask means that).

Size. The valid (unpadded) convs need sides of at least 75 px; the last map is 1x1 up to 106 px,
2x2 from 107, 3x3 from 139, 8x8 at 299. `encoder_input` therefore upsamples (bilinear, aspect
ratio kept) so the shorter side is at least MIN_SIDE = 107, the smallest side with a 2x2 last
map: the quick preset's 96 px crops become 107 px and the 64 px smoke crops too, so Grad-CAM has
something spatial to show, at the least cost (the cost grows with the area). Measured on one CPU thread, batch 8, forward+backward through the
encoder: 0.05 s/image at 96 px, 0.13 at 128, 0.91 at 299 (ImageNet's size, not worth 7x here).

Parameter counts (measured): network 23,834,568 (27,161,264 with AuxLogits, as torchvision's
meta), encoder 21,785,568. In train() BatchNorm (eps 0.001) updates its statistics; the
trainer's eval() of a frozen ("shallow") encoder turns that off.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from zfutils.models.baseline_common import ImagenetFile, official_size_only, register_torchvision

if TYPE_CHECKING:
    from torchvision.models import Inception3

NAME = "inceptionv3"
FILE = "inception_v3_google-0cc3c7bd.pth"   # torchvision Inception_V3_Weights.IMAGENET1K_V1
EMBED_DIM = 2048
MIN_SIDE = 107
ENCODER_LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                  "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                  "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
AUX_PREFIX = "AuxLogits."
# the study runs with aux logits off, so the file's auxiliary classifier weights are dropped
WEIGHTS = ImagenetFile(FILE, "inception_v3", "InceptionV3 ImageNet", drop_prefix=AUX_PREFIX)
URL, CHECKPOINT_HINT, load_pretrained = WEIGHTS.url, WEIGHTS.hint, WEIGHTS.load


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> Inception3:
    """torchvision's inception_v3: random init (torchvision's truncated-normal scheme), no aux
    head, transform_input=False (see the module docstring), 1000-class fc kept so ImageNet files load."""
    from torchvision.models import inception_v3  # here: importing torchvision costs about 1.4 s per process

    official_size_only(NAME, width, blocks)
    return inception_v3(weights=None, aux_logits=False, transform_input=False, init_weights=True)


def encoder_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image in [-1, 1], upsampled so its shorter side is at least MIN_SIDE; mask ignored."""
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        scale = MIN_SIDE / min(h, w)
        size = (max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale)))
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    return 2 * image - 1


def encoder(generator: Inception3) -> nn.Module:
    """Conv2d_1a_3x3 ... Mixed_7c of `generator` (shared modules, torchvision's names)."""
    return nn.Sequential(OrderedDict((name, getattr(generator, name)) for name in ENCODER_LAYERS))


def cam_layer(generator: Inception3) -> nn.Module:
    """The last inception block (Mixed_7c, 2048 ch)."""
    return generator.Mixed_7c


BACKBONE = register_torchvision(name=NAME, family="baseline", build_generator=build_generator, weights=WEIGHTS,
                                embed_dim=EMBED_DIM, encoder_input=encoder_input, encoder=encoder, cam_layer=cam_layer,
                                missing_fill=(0.5, 0.5, 0.5))  # 0 in its [-1, 1] input: the network's neutral value

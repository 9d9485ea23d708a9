"""LaMa's ResNet perceptual loss ("ResNetPL", weight 30 in big-lama): distances between features of
a frozen ADE20k scene-segmentation encoder, which rewards plausible structure in large holes.

The network is the MIT CSAIL semantic-segmentation "resnet50dilated" encoder that LaMa loads
(lama models/ade20k/resnet.py ResNet + base.py ResnetDilated): ResNet50 bottleneck stages of
3-4-6-3 blocks after a deep stem of three 3x3 convs (64, 64, 128 channels) and a max-pool, with
layer3 and layer4 dilated (2 and 4) instead of strided, so they stay at 1/8 of the input size.
The state_dict keys are those of the released encoder_epoch_20.pth, so that file loads as is.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zfutils.pretrained import IMAGENET_MEAN, IMAGENET_STD, find_weights

RESNET_PL_FILE = "encoder_epoch_20.pth"
RESNET_PL_SOURCE = ("LaMa's ade20k/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth (README: "
                    "http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet50dilated-ppm_deepsup/"
                    "encoder_epoch_20.pth)")
BLOCKS = (3, 4, 6, 3)  # ResNet50
# Dilation of each stage's first block and of the others: base.py ResnetDilated(dilate_scale=8)
# turns the stride-2 3x3 conv of layer3/layer4 into stride 1 with dilation 1/2, the rest 2/4.
DILATION = ((1, 1), (1, 1), (1, 2), (2, 4))
STRIDE = (1, 2, 1, 1)
EXPANSION = 4  # torchvision's Bottleneck.expansion: output channels per `planes`


def _stage(inplanes: int, planes: int, blocks: int, stride: int, dilation: tuple[int, int]) -> nn.Sequential:
    """torchvision's Bottleneck has the same keys and the stride on the 3x3 conv, as CSAIL's."""
    from torchvision.models.resnet import Bottleneck  # here: importing torchvision costs about 1.4 s per process

    out = planes * EXPANSION
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    first, rest = dilation
    layers = [Bottleneck(inplanes, planes, stride, downsample, dilation=first)]
    layers += [Bottleneck(out, planes, dilation=rest) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def find_resnet_pl_weights(explicit: str | Path | None) -> Path:
    """inpaint.resnet_pl_weights if set, else encoder_epoch_20.pth in the torch hub cache."""
    return find_weights(explicit, RESNET_PL_FILE, what="LaMa's ResNet perceptual loss (ADE20k ResNet50-dilated)",
                        param="inpaint.resnet_pl_weights", source=f"the official file is {RESNET_PL_SOURCE}",
                        without="or run without this term "
                                "(inpaint.missing_weights: drop, or inpaint.resnet_perceptual: 0)")


def read_encoder_state(path: Path, wanted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors from `path`: a `module.` prefix (DataParallel) is removed, other keys
    (a decoder's) are ignored; BatchNorm's num_batches_tracked may be absent (unused in eval)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict; expected {RESNET_PL_SOURCE}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path} is not the ADE20k resnet50dilated encoder: it lacks {missing[0]} (and "
                         f"{len(missing) - 1} more; it has e.g. {list(state)[:3]}); expected {RESNET_PL_SOURCE}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in wanted.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path} does not match the resnet50dilated encoder: {wrong[0]} (and {len(wrong) - 1} "
                         f"more); expected {RESNET_PL_SOURCE}")
    return {k: state.get(k, v) for k, v in wanted.items()}


class ResNetPLFeatures(nn.Module):
    """Frozen resnet50dilated encoder: an image in [0, 1] -> the outputs of layer1..layer4
    (256, 512, 1024, 2048 channels at 1/4, 1/8, 1/8, 1/8), as LaMa's ResNetPL compares them.
    `weights=None` leaves the random init (for tests of the layout only)."""

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu3 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 128
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), BLOCKS)):
            setattr(self, f"layer{i + 1}", _stage(inplanes, planes, blocks, STRIDE[i], DILATION[i]))
            inplanes = planes * EXPANSION
        if weights is not None:
            self.load_state_dict(read_encoder_state(Path(weights), self.state_dict()))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # always frozen, also inside a module set to train()
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean) / self.std
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.maxpool(self.relu3(self.bn3(self.conv3(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


def resnet_pl_loss(features_out: list[torch.Tensor], features_target: list[torch.Tensor]) -> torch.Tensor:
    """Sum over the four stages of the mean squared error (LaMa's ResNetPL before its weight)."""
    if len(features_out) != len(features_target):
        raise ValueError(f"{len(features_out)} output feature maps but {len(features_target)} target ones")
    return torch.stack([F.mse_loss(o, t.detach()) for o, t in zip(features_out, features_target)]).sum()

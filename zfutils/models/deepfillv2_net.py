"""DeepFillV2's generator as in nipponjo/deepfillv2-pytorch model/networks.py (the registry's
`deepfillv2`, release file states_pt_places2.pth): a coarse network (`stage1`) and a two-branch
refinement network with contextual attention (`stage2`); module names follow the official keys.

`cnum` is the base width (official 48, a multiple of 4); `dilated` is how many dilated
convolutions each bottleneck keeps (official 4: rates 2, 4, 8, 16). Fewer drop the last ones
(stage1.conv_bn5, conv_bn4, ...), so the remaining names are a subset of the official ones.
"""
from __future__ import annotations

import torch
from torch import nn

from zfutils.models.deepfillv2_attention import ContextualAttention
from zfutils.models.deepfillv2_layers import GatedConv, GatedUpConv

Tensor = torch.Tensor


class DownBlock(nn.Module):
    """Stride-2 gated conv to `hidden` channels, then a 3x3 gated conv to `cout`."""

    def __init__(self, cin: int, cout: int, *, hidden: int | None = None):
        super().__init__()
        hidden = cout if hidden is None else hidden
        self.conv1_downsample = GatedConv(cin, hidden, kernel=3, stride=2)
        self.conv2 = GatedConv(hidden, cout, kernel=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1_downsample(x))


class UpBlock(nn.Module):
    """x2 upsampling gated conv to `hidden` channels, then a 3x3 gated conv to `cout`."""

    def __init__(self, cin: int, cout: int, *, hidden: int | None = None):
        super().__init__()
        hidden = cout if hidden is None else hidden
        self.conv1_upsample = GatedUpConv(cin, hidden)
        self.conv2 = GatedConv(hidden, cout, kernel=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1_upsample(x))


def add_bottleneck(module: nn.Module, prefix: str, channels: int, *, first: int, dilated: int) -> list[str]:
    """`<prefix>{first}` (3x3) then `dilated` dilated 3x3 convs (rates 2, 4, ...); returns the names."""
    names = [f"{prefix}{first + i}" for i in range(dilated + 1)]
    for i, name in enumerate(names):
        module.add_module(name, GatedConv(channels, channels, kernel=3, dilation=2 ** i))
    return names


def run(module: nn.Module, names: list[str], x: Tensor) -> Tensor:
    for name in names:
        x = getattr(module, name)(x)
    return x


class CoarseNet(nn.Module):
    """Stage 1: 5-channel input -> 3-channel image before tanh."""

    def __init__(self, *, cnum: int, dilated: int, cin: int = 5, cout: int = 3):
        super().__init__()
        c = cnum
        self.conv1 = GatedConv(cin, c // 2, kernel=5)
        self.down_block1 = DownBlock(c // 2, c)
        self.down_block2 = DownBlock(c, 2 * c)
        self.middle = add_bottleneck(self, "conv_bn", 2 * c, first=1, dilated=dilated)
        self.conv_bn6 = GatedConv(2 * c, 2 * c, kernel=3)
        self.conv_bn7 = GatedConv(2 * c, 2 * c, kernel=3)
        self.up_block1 = UpBlock(2 * c, c)
        self.up_block2 = UpBlock(c, c // 4, hidden=c // 2)
        self.conv_to_rgb = GatedConv(c // 4, cout, kernel=3, gated=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.down_block2(self.down_block1(self.conv1(x)))
        x = self.conv_bn7(self.conv_bn6(run(self, self.middle, x)))
        return self.conv_to_rgb(self.up_block2(self.up_block1(x)))


class FineNet(nn.Module):
    """Stage 2: a dilated-conv branch and a contextual-attention branch, merged and decoded."""

    def __init__(self, *, cnum: int, dilated: int, cin: int = 3, cout: int = 3):
        super().__init__()
        c = cnum
        self.conv_conv1 = GatedConv(cin, c // 2, kernel=5)
        self.conv_down_block1 = DownBlock(c // 2, c, hidden=c // 2)
        self.conv_down_block2 = DownBlock(c, 2 * c, hidden=c)
        self.conv_middle = add_bottleneck(self, "conv_conv_bn", 2 * c, first=1, dilated=dilated)
        self.ca_conv1 = GatedConv(cin, c // 2, kernel=5)
        self.ca_down_block1 = DownBlock(c // 2, c, hidden=c // 2)
        self.ca_down_block2 = DownBlock(c, 2 * c)
        self.ca_conv_bn1 = GatedConv(2 * c, 2 * c, kernel=3, activation="relu")
        self.contextual_attention = ContextualAttention(fuse=True, tf_resize=False)
        self.ca_conv_bn4 = GatedConv(2 * c, 2 * c, kernel=3)
        self.ca_conv_bn5 = GatedConv(2 * c, 2 * c, kernel=3)
        self.conv_bn6 = GatedConv(4 * c, 2 * c, kernel=3)
        self.conv_bn7 = GatedConv(2 * c, 2 * c, kernel=3)
        self.up_block1 = UpBlock(2 * c, c)
        self.up_block2 = UpBlock(c, c // 4, hidden=c // 2)
        self.conv_to_rgb = GatedConv(c // 4, cout, kernel=3, gated=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        hallu = self.conv_down_block2(self.conv_down_block1(self.conv_conv1(x)))
        hallu = run(self, self.conv_middle, hallu)
        att = self.ca_conv_bn1(self.ca_down_block2(self.ca_down_block1(self.ca_conv1(x))))
        att = self.ca_conv_bn5(self.ca_conv_bn4(self.contextual_attention(att, mask)))
        y = self.conv_bn7(self.conv_bn6(torch.cat([hallu, att], dim=1)))
        return self.conv_to_rgb(self.up_block2(self.up_block1(y)))


class DeepFillGenerator(nn.Module):
    """`forward(x, mask) -> (x_stage1, x_stage2)`, both tanh in [-1, 1]; x = cat([image*(1-mask)
    in [-1, 1], ones, ones*mask]), mask 1 = hole, H and W multiples of 8. Stage 2 refines
    x_stage1*mask + x[:, :3]*(1-mask)."""

    variant = "pt"

    def __init__(self, *, cnum: int = 48, dilated: int = 4):
        super().__init__()
        self.stage1 = CoarseNet(cnum=cnum, dilated=dilated)
        self.stage2 = FineNet(cnum=cnum, dilated=dilated)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x_stage1 = torch.tanh(self.stage1(x))
        x_stage2 = torch.tanh(self.stage2(x_stage1 * mask + x[:, :3] * (1.0 - mask), mask))
        return x_stage1, x_stage2

    def encoder_layers(self) -> list[nn.Module]:
        """The study's encoder: the first five gated convs of stage 1."""
        s = self.stage1
        return [s.conv1, s.down_block1.conv1_downsample, s.down_block1.conv2,
                s.down_block2.conv1_downsample, s.down_block2.conv2]

    def output_convs(self) -> list[nn.Module]:
        """The convs whose outputs are the stages before tanh (for tests and inspection)."""
        return [self.stage1.conv_to_rgb, self.stage2.conv_to_rgb]

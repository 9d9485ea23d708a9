"""DeepFillV2's generator as in nipponjo/deepfillv2-pytorch model/networks_tf.py: the layout of
the converted TensorFlow release (states_tf_places2.pth). Same computation as deepfillv2_net
except TF 'SAME' padding, TF nearest downsampling in the attention, no fuse step, and flat
module names (conv1..conv17, xconv*, pmconv*, allconv*).

`cnum` and `dilated` as in deepfillv2_net: fewer dilated convs drop conv10_atrous, conv9_atrous,
... (and the xconv ones), keeping the remaining names official.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from zfutils.models.deepfillv2_attention import ContextualAttention
from zfutils.models.deepfillv2_layers import GatedConv, GatedUpConv

Tensor = torch.Tensor

RATE_NAMES = ("7_atrous", "8_atrous", "9_atrous", "10_atrous")


class DeepFillTFGenerator(nn.Module):
    """`forward(x, mask) -> (x_stage1, x_stage2)`; inputs and outputs as DeepFillGenerator."""

    variant = "tf"

    def __init__(self, *, cnum: int = 48, dilated: int = 4):
        super().__init__()
        c = cnum
        conv = partial(GatedConv, kernel=3, tf_same=True)
        up = partial(GatedUpConv, tf_same=True)
        # stage 1
        self.conv1 = conv(5, c // 2, kernel=5)
        self.conv2_downsample = conv(c // 2, c, stride=2)
        self.conv3 = conv(c, c)
        self.conv4_downsample = conv(c, 2 * c, stride=2)
        self.conv5 = conv(2 * c, 2 * c)
        self.conv6 = conv(2 * c, 2 * c)
        self.middle = self.add_dilated("conv", 2 * c, dilated)
        self.conv11 = conv(2 * c, 2 * c)
        self.conv12 = conv(2 * c, 2 * c)
        self.conv13_upsample = up(2 * c, c)
        self.conv14 = conv(c, c)
        self.conv15_upsample = up(c, c // 2)
        self.conv16 = conv(c // 2, c // 4)
        self.conv17 = conv(c // 4, 3, gated=False)
        # stage 2, dilated-conv branch
        self.xconv1 = conv(3, c // 2, kernel=5)
        self.xconv2_downsample = conv(c // 2, c // 2, stride=2)
        self.xconv3 = conv(c // 2, c)
        self.xconv4_downsample = conv(c, c, stride=2)
        self.xconv5 = conv(c, 2 * c)
        self.xconv6 = conv(2 * c, 2 * c)
        self.xmiddle = self.add_dilated("xconv", 2 * c, dilated)
        # stage 2, attention branch
        self.pmconv1 = conv(3, c // 2, kernel=5)
        self.pmconv2_downsample = conv(c // 2, c // 2, stride=2)
        self.pmconv3 = conv(c // 2, c)
        self.pmconv4_downsample = conv(c, 2 * c, stride=2)
        self.pmconv5 = conv(2 * c, 2 * c)
        self.pmconv6 = conv(2 * c, 2 * c, activation="relu")
        self.contextual_attention = ContextualAttention(fuse=False, tf_resize=True)
        self.pmconv9 = conv(2 * c, 2 * c)
        self.pmconv10 = conv(2 * c, 2 * c)
        # stage 2, merged decoder
        self.allconv11 = conv(4 * c, 2 * c)
        self.allconv12 = conv(2 * c, 2 * c)
        self.allconv13_upsample = up(2 * c, c)
        self.allconv14 = conv(c, c)
        self.allconv15_upsample = up(c, c // 2)
        self.allconv16 = conv(c // 2, c // 4)
        self.allconv17 = conv(c // 4, 3, gated=False)

    def add_dilated(self, prefix: str, channels: int, count: int) -> list[nn.Module]:
        names = [prefix + suffix for suffix in RATE_NAMES[:count]]
        for i, name in enumerate(names):
            self.add_module(name, GatedConv(channels, channels, kernel=3, dilation=2 ** (i + 1), tf_same=True))
        return names

    def layers(self, names) -> list[nn.Module]:
        return [getattr(self, name) for name in names]

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        y = x
        for layer in self.encoder_layers() + self.layers(["conv6", *self.middle, "conv11", "conv12",
                                                            "conv13_upsample", "conv14", "conv15_upsample",
                                                            "conv16", "conv17"]):
            y = layer(y)
        x_stage1 = torch.tanh(y)
        xnow = x_stage1 * mask + x[:, :3] * (1.0 - mask)
        hallu = xnow
        for layer in self.layers(["xconv1", "xconv2_downsample", "xconv3", "xconv4_downsample", "xconv5",
                                  "xconv6", *self.xmiddle]):
            hallu = layer(hallu)
        att = xnow
        for layer in self.layers(["pmconv1", "pmconv2_downsample", "pmconv3", "pmconv4_downsample", "pmconv5",
                                  "pmconv6"]):
            att = layer(att)
        att = self.pmconv10(self.pmconv9(self.contextual_attention(att, mask)))
        y = torch.cat([hallu, att], dim=1)
        for layer in self.layers(["allconv11", "allconv12", "allconv13_upsample", "allconv14",
                                  "allconv15_upsample", "allconv16", "allconv17"]):
            y = layer(y)
        return x_stage1, torch.tanh(y)

    def encoder_layers(self) -> list[nn.Module]:
        """The study's encoder: conv1 -> conv2_downsample -> conv3 -> conv4_downsample -> conv5."""
        return self.layers(["conv1", "conv2_downsample", "conv3", "conv4_downsample", "conv5"])

    def output_convs(self) -> list[nn.Module]:
        return [self.conv17, self.allconv17]

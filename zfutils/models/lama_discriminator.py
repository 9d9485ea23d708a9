"""LaMa's discriminator: the pix2pixHD PatchGAN (`NLayerDiscriminator`, kind pix2pixhd_nlayer,
n_layers 4, ndf 64) of advimman/lama saicinpainting/training/modules/pix2pixhd.py, with its
state_dict layout (`model0` ... `model5`, each an nn.Sequential).

It sees the RGB image alone, in [0, 1], with no mask channel. Every block's output is returned
for the feature-matching loss.
"""
from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


class NLayerDiscriminator(nn.Module):
    """4x4 convs: one stride-2 conv + LeakyReLU, `n_layers - 1` stride-2 conv+BN+LeakyReLU, one
    stride-1 conv+BN+LeakyReLU, and a stride-1 conv to one logit map. Channels double from `ndf`
    and stop at `max_features` (512 officially, i.e. 8 * ndf)."""

    def __init__(self, *, input_nc: int = 3, ndf: int = 64, n_layers: int = 4, max_features: int = 512):
        super().__init__()
        self.n_layers = n_layers

        def conv(cin, cout, stride):
            return nn.Conv2d(cin, cout, kernel_size=4, stride=stride, padding=2)

        def leaky():
            return nn.LeakyReLU(0.2, inplace=True)

        blocks = [nn.Sequential(conv(input_nc, ndf, 2), leaky())]
        channels = ndf
        for _ in range(1, n_layers):
            prev, channels = channels, min(2 * channels, max_features)
            blocks.append(nn.Sequential(conv(prev, channels, 2), nn.BatchNorm2d(channels), leaky()))
        prev, channels = channels, min(2 * channels, max_features)
        blocks.append(nn.Sequential(conv(prev, channels, 1), nn.BatchNorm2d(channels), leaky()))
        blocks.append(nn.Sequential(conv(channels, 1, 1)))
        for i, block in enumerate(blocks):
            self.add_module(f"model{i}", block)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(logits, the output of every block before the last), as the original returns them."""
        features = []
        for i in range(self.n_layers + 2):
            x = getattr(self, f"model{i}")(x)
            features.append(x)
        return features[-1], features[:-1]

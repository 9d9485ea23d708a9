"""AOT-GAN's networks (researchmm/AOT-GAN-for-Inpainting @ 2cd1afd, src/model/aotgan.py), written
so that their state_dict keys are the official ones at every scale.

The backbone glue (input convention, checkpoint loading, training facts) is in aotgan.py; this
module holds only the layers. ReLUs are not in-place (the official ones are): the results are the
same, and Grad-CAM hooks on the last encoder conv would otherwise see its output overwritten.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

RATES = (1, 2, 4, 8)     # src/utils/option.py --rates 1+2+4+8
BLOCKS = 8               # src/utils/option.py --block_num 8


def scaled(channels: int, width: float, *, multiple: int = 4) -> int:
    """`channels * width` rounded to a positive multiple of `multiple` (an AOT block splits its
    width into one branch per dilation rate, so 4 keeps every branch whole)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(multiple, int(round(channels * width / multiple)) * multiple)


def gate_norm(feat: torch.Tensor) -> torch.Tensor:
    """The official `my_layer_norm`: per-map standardisation with the unbiased std (+1e-9, not
    under the square root), then 5 * (2 z - 1), which centres the sigmoid gate below 0.5."""
    mean = feat.mean((2, 3), keepdim=True)
    std = feat.std((2, 3), keepdim=True) + 1e-9
    return 5 * (2 * (feat - mean) / std - 1)


class AOTBlock(nn.Module):
    """Aggregated contextual transformations: one dilated 3x3 branch per rate (reflection padded,
    dim/len(rates) channels each), concatenated and fused, then mixed with the input by a
    gate computed from the input itself."""

    def __init__(self, *, dim: int, rates=RATES):
        super().__init__()
        if dim % len(rates):
            raise ValueError(f"AOTBlock width {dim} is not divisible by its {len(rates)} rates")
        self.rates = tuple(rates)
        for i, rate in enumerate(self.rates):
            self.add_module(f"block{i:02d}", nn.Sequential(
                nn.ReflectionPad2d(rate), nn.Conv2d(dim, dim // len(rates), 3, dilation=rate), nn.ReLU()))
        self.fuse = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3))
        self.gate = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = torch.cat([getattr(self, f"block{i:02d}")(x) for i in range(len(self.rates))], 1)
        out = self.fuse(branches)
        gate = torch.sigmoid(gate_norm(self.gate(x)))
        return x * (1 - gate) + out * gate


class UpConv(nn.Module):
    """x2 bilinear upsampling (align_corners=True) followed by a 3x3 conv."""

    def __init__(self, *, inc: int, outc: int):
        super().__init__()
        self.conv = nn.Conv2d(inc, outc, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class InpaintGenerator(nn.Module):
    """Encoder (H/4, 256 ch) -> `blocks` AOT blocks -> decoder -> tanh, in [-1, 1].

    `forward(x, mask)`: x = masked image in [-1, 1] with holes set to +1, mask 1 = hole; the
    4-channel concatenation happens here, as in the official forward."""

    def __init__(self, *, width: float = 1.0, blocks: int = BLOCKS, rates=RATES):
        super().__init__()
        c1, c2, c3 = (scaled(n, width) for n in (64, 128, 256))
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(4, c1, 7), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c3, 4, stride=2, padding=1), nn.ReLU())
        self.middle = nn.Sequential(*(AOTBlock(dim=c3, rates=rates) for _ in range(blocks)))
        self.decoder = nn.Sequential(
            UpConv(inc=c3, outc=c2), nn.ReLU(), UpConv(inc=c2, outc=c1), nn.ReLU(),
            nn.Conv2d(c1, 3, 3, padding=1))
        # reflection padding by the largest rate needs a feature map wider than that rate at H/4
        self.min_side = 4 * (max(rates) + 1) if blocks else 4
        init_official(self)

    def pre_activation(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The decoder's output before tanh (the golden files' `preact`)."""
        return self.decoder(self.middle(self.encoder(torch.cat([x, mask], 1))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre_activation(x, mask))


class Discriminator(nn.Module):
    """Spectral-normed PatchGAN on the 3-channel image in [-1, 1] (no mask input): four 4x4
    convs (stride 2, 2, 2, 1; no bias; LeakyReLU 0.2) and a 4x4 conv to one logit map of
    size H/8 - 2. Uses torch's hook-based spectral_norm, hence weight_orig/_u/_v keys."""

    def __init__(self, *, width: float = 1.0):
        super().__init__()
        chans = [3] + [scaled(n, width) for n in (64, 128, 256, 512)]
        layers = []
        for i, stride in enumerate((2, 2, 2, 1)):
            layers += [spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 4, stride=stride, padding=1, bias=False)),
                       nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, stride=1, padding=1))
        self.conv = nn.Sequential(*layers)
        init_official(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@torch.no_grad()
def init_official(module: nn.Module) -> nn.Module:
    """The official BaseNetwork.init_weights default: conv weights N(0, 0.02), biases 0 (for a
    spectral-normed conv this lands on weight_orig, whose storage the official call writes)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            weight = layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module

"""Fast Fourier convolution (FFC) blocks of LaMa's generator, in the layout of advimman/lama
(saicinpainting/training/modules/ffc.py at 786f593) so that state_dict keys match best.ckpt.

An FFC keeps two streams: a local one (ordinary 3x3 convolutions) and a global one whose
global-to-global path is a convolution in the 2-D Fourier domain, so one layer sees the whole
image. Streams travel as a `(local, global)` tuple; `global` is None where a layer has no global
channels. Only what big-lama uses is built: stride-1 spectral transforms, no local Fourier unit
(enable_lfu false), no gating, no squeeze-excitation.
"""
from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


def split_channels(channels: int, ratio_global: float) -> tuple[int, int]:
    """(local, global) channel counts; the official code truncates the global share."""
    n_global = int(channels * ratio_global)
    return channels - n_global, n_global


class FourierUnit(nn.Module):
    """1x1 convolution + BN + ReLU on the real and imaginary parts of the ortho-normalised rFFT.
    The spectrum enters the conv channel-major: (c0 real, c0 imag, c1 real, ...)."""

    def __init__(self, *, channels: int):
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * channels, 2 * channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        # FFTs have no bf16 kernels and lose too much in fp16: under mixed precision this unit
        # runs in fp32, as LaMa's own code does
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            b, c, h, w = x.shape
            spec = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")
            spec = torch.stack((spec.real, spec.imag), dim=2).reshape(b, 2 * c, h, spec.shape[-1])
            spec = self.relu(self.bn(self.conv_layer(spec)))
            spec = spec.reshape(b, c, 2, h, spec.shape[-1])
            spec = torch.complex(spec[:, :, 0], spec[:, :, 1])
            return torch.fft.irfftn(spec, s=(h, w), dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    """The global-to-global path: halve channels (1x1+BN+ReLU), add the Fourier unit's output
    to its own input, restore channels with a 1x1 conv."""

    def __init__(self, *, in_channels: int, out_channels: int):
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.fu = FourierUnit(channels=hidden)
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


class FFC(nn.Module):
    """Four paths between the local and global streams; an absent path is None (no keys)."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float,
                 ratio_gout: float, stride: int = 1, padding: int = 0):
        super().__init__()
        in_l, in_g = split_channels(in_channels, ratio_gin)
        out_l, out_g = split_channels(out_channels, ratio_gout)
        if in_l == 0 or out_l == 0:
            raise ValueError(f"FFC {in_channels}->{out_channels}: ratios {ratio_gin}/{ratio_gout} leave no "
                             "local channels; big-lama always keeps some")

        def conv(cin, cout):
            return nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False, padding_mode="reflect")

        self.convl2l = conv(in_l, out_l)
        self.convl2g = conv(in_l, out_g) if out_g else None
        self.convg2l = conv(in_g, out_l) if in_g else None
        if in_g and out_g:
            if stride != 1:
                raise ValueError("a strided global-to-global path is not used by big-lama and not built here")
            self.convg2g = SpectralTransform(in_channels=in_g, out_channels=out_g)
        else:
            self.convg2g = None

    def forward(self, x: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
        x_l, x_g = x
        out_l = self.convl2l(x_l)
        if self.convg2l is not None:
            out_l = out_l + self.convg2l(x_g)
        out_g = None
        if self.convl2g is not None:
            out_g = self.convl2g(x_l)
            if self.convg2g is not None:
                out_g = out_g + self.convg2g(x_g)
        return out_l, out_g


class FFCBNAct(nn.Module):
    """FFC, then BatchNorm + ReLU on each stream that exists (official `FFC_BN_ACT`)."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float,
                 ratio_gout: float, stride: int = 1, padding: int = 0):
        super().__init__()
        self.ffc = FFC(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                       ratio_gin=ratio_gin, ratio_gout=ratio_gout, stride=stride, padding=padding)
        out_l, out_g = split_channels(out_channels, ratio_gout)
        self.bn_l = nn.BatchNorm2d(out_l)
        self.bn_g = nn.BatchNorm2d(out_g) if out_g else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x) -> tuple[Tensor, Tensor | None]:
        if torch.is_tensor(x):
            x = (x, None)
        x_l, x_g = self.ffc(x)
        x_l = self.act(self.bn_l(x_l))
        if x_g is not None:
            x_g = self.act(self.bn_g(x_g))
        return x_l, x_g


class FFCResnetBlock(nn.Module):
    """Two 3x3 FFC+BN+ReLU layers with a residual connection on each stream."""

    def __init__(self, *, channels: int, ratio: float):
        super().__init__()
        kwargs = dict(in_channels=channels, out_channels=channels, kernel_size=3, ratio_gin=ratio,
                      ratio_gout=ratio, padding=1)
        self.conv1 = FFCBNAct(**kwargs)
        self.conv2 = FFCBNAct(**kwargs)

    def forward(self, x: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x_l, x_g = self.conv2(self.conv1(x))
        return x[0] + x_l, x[1] + x_g


class ConcatStreams(nn.Module):
    """(local, global) -> one tensor, local channels first."""

    def forward(self, x: tuple[Tensor, Tensor | None]) -> Tensor:
        x_l, x_g = x
        return x_l if x_g is None else torch.cat((x_l, x_g), dim=1)

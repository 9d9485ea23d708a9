"""DeepFillV2's building blocks (nipponjo/deepfillv2-pytorch, model/networks.py and networks_tf.py):
gated convolutions, nearest-upsampling gated convolutions, and the SN-PatchGAN discriminator.

Both official variants are built from the same classes; `tf_same=True` switches to the padding
of the converted TensorFlow weights (TF 'SAME', computed per call, asymmetric for stride 2), which
the networks_tf.py release needs, while networks.py pads symmetrically with dilation*(k-1)//2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor

ACTIVATIONS = {"elu": F.elu, "relu": F.relu}


def same_pad(x: Tensor, *, kernel: int, stride: int = 1, dilation: int = 1) -> Tensor:
    """Zero-pad `x` as TensorFlow's 'SAME' does: output = ceil(input / stride), the odd pixel of
    padding goes to the bottom / right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension first
        span = (kernel - 1) * dilation + 1
        total = max((-(size // -stride) - 1) * stride + span - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class GatedConv(nn.Module):
    """Conv2d with 2*out channels split into features and gates: act(features) * sigmoid(gates).

    `gated=False` is the plain output convolution (no activation). The single child is named
    `conv`, as in the official state_dict (`<name>.conv.weight`)."""

    def __init__(self, cin: int, cout: int, *, kernel: int, stride: int = 1, dilation: int = 1,
                 activation: str = "elu", gated: bool = True, tf_same: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; known: {', '.join(ACTIVATIONS)}")
        self.cout, self.gated, self.tf_same = cout, gated, tf_same
        self.kernel, self.stride, self.dilation = kernel, stride, dilation
        self.activation = ACTIVATIONS[activation]
        padding = 0 if tf_same else dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(cin, 2 * cout if gated else cout, kernel, stride=stride, padding=padding,
                              dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        if self.tf_same:
            x = same_pad(x, kernel=self.kernel, stride=self.stride, dilation=self.dilation)
        x = self.conv(x)
        if not self.gated:
            return x
        features, gates = torch.split(x, self.cout, dim=1)
        return self.activation(features) * torch.sigmoid(gates)


class GatedUpConv(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 gated convolution (official `GDeConv`)."""

    def __init__(self, cin: int, cout: int, *, tf_same: bool = False):
        super().__init__()
        self.conv = GatedConv(cin, cout, kernel=3, tf_same=tf_same)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class SNConv2d(nn.Conv2d):
    """The official `Conv2DSpectralNorm`: before every call (train and eval alike) one power
    iteration updates the buffer `weight_u`, and `weight` itself is divided in place by the
    estimated spectral norm (no gradient through sigma).

    The convolution reads a copy of the renormalised weight, so several calls before one
    backward (real and fake separately) are fine; train.py makes one call on both at once."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int, padding: int, eps: float = 1e-12):
        super().__init__(cin, cout, kernel, stride=stride, padding=padding)
        self.eps = eps
        self.register_buffer("weight_u", nn.init.trunc_normal_(torch.empty(cout, 1)))

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            w = self.weight.flatten(1)
            v = F.normalize(w.t() @ self.weight_u, dim=0, eps=self.eps)
            u = F.normalize(w @ v, dim=0, eps=self.eps)
            self.weight_u.copy_(u)
            self.weight.div_(u.t() @ w @ v)
        return self._conv_forward(x, self.weight.clone(), self.bias)


class SNBlock(nn.Module):
    """5x5 stride-2 spectral-norm convolution and LeakyReLU(0.2) (official `DConv`)."""

    def __init__(self, cin: int, cout: int, *, tf_same: bool = False):
        super().__init__()
        self.tf_same = tf_same
        self.conv_sn = SNConv2d(cin, cout, 5, stride=2, padding=0 if tf_same else 2)

    def forward(self, x: Tensor) -> Tensor:
        if self.tf_same:
            x = same_pad(x, kernel=5, stride=2)
        return F.leaky_relu(self.conv_sn(x), 0.2)


class Discriminator(nn.Module):
    """SN-PatchGAN: six SNBlocks (cnum, 2, 4, 4, 4, 4 x cnum), flattened logits.
    Input: cat([image in [-1, 1], mask]) (4 channels)."""

    def __init__(self, *, cnum: int = 64, cin: int = 4, tf_same: bool = False):
        super().__init__()
        widths = [cin, cnum, 2 * cnum, 4 * cnum, 4 * cnum, 4 * cnum, 4 * cnum]
        for i in range(6):
            self.add_module(f"conv{i + 1}", SNBlock(widths[i], widths[i + 1], tf_same=tf_same))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.children():
            x = block(x)
        return x.flatten(1)

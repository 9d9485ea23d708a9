"""Pooling a feature map to one vector per image: generalized-mean (GeM) pooling, as MiewID and
Radenovic et al. (2018, "Fine-tuning CNN image retrieval with no human annotation") use it.

GeM(x) = (mean over H, W of max(x, eps)^p)^(1/p) per channel, with a learnable p (init 3): p = 1
is average pooling, p -> inf max pooling, so training can move between the two. Values below eps
are clamped, as in MiewID: an EfficientNet's last SiLU gives small negative values, which GeM
ignores.

Where p lives. The classifier's embedding (what retrieval and clustering use) is the pooled
vector, and shallow mode stores each image's pooled vector once and trains only the head on it.
So p belongs to the encoder side: `PooledEncoder` owns it, which makes it an encoder parameter
that trains with the encoder in deep mode (at the encoder's learning rate) and is frozen with it
in shallow mode (stays at its initial value, so the stored vectors stay valid).
"""
from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("avg", "gem")


class GeM(nn.Module):
    """Generalized-mean pooling, NCHW -> NC, with one learnable exponent p for all channels."""

    def __init__(self, *, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(min=self.eps)
        # (mean(x^p))^(1/p) = top * (mean((x/top)^p))^(1/p) for any top > 0: dividing by each map's
        # maximum keeps x^p from overflowing for large p; the identity holds for every top, so
        # treating it as a constant (detached) leaves the gradient exact.
        top = x.detach().amax(dim=(2, 3), keepdim=True)
        return top.flatten(1) * (x / top).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4g}, eps={self.eps}"


class PooledEncoder(nn.Module):
    """A backbone's encoder together with a pooling that has parameters (GeM's p), so that they
    are encoder parameters (see the module docstring). `forward` still gives the feature map, as
    every encoder does (Grad-CAM and batch-norm recalibration see the same network); `pool` maps
    it to the embedding."""

    def __init__(self, features: nn.Module, pool: nn.Module):
        super().__init__()
        self.features, self.pool = features, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

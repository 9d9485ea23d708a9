"""Contextual attention of DeepFillV2's refinement stage, as the official PyTorch port computes it
(model/networks.py and networks_tf.py, ksize 3, stride 1, rate 2, softmax scale 10, n_down 2).

Every hole location of the (rate-downsampled) feature map is compared, by cosine similarity, with
every 3x3 patch that holds no hole pixel; a softmax over those patches weights the corresponding
4x4 patches of the full-resolution features, which are pasted back with stride 2.

Written batched, with unfold / bmm / fold instead of a per-sample loop of convolutions. One
deliberate difference: the official code takes the validity of patches from the batch's first
mask only (its training used one mask per batch); here each sample uses its own mask, which is
the same whenever the masks are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def nearest_down(x: Tensor, factor: int) -> Tensor:
    """networks.py's `F.interpolate(scale_factor=1/factor, mode='nearest')`: every factor-th pixel."""
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    return x[..., : h * factor : factor, : w * factor : factor]


def nearest_down_tf(x: Tensor, factor: int) -> Tensor:
    """networks_tf.py's `downsampling_nn_tf`: TF nearest resize with align_corners=True, i.e. the
    rounded points of linspace(0, size-1, size // factor) (computed in float32, as there)."""
    def index(size: int) -> Tensor:
        points = torch.linspace(0, size - 1, steps=size // factor, device=x.device)
        return points.add(0.5).floor().long()
    return x[..., index(x.shape[-2]), :][..., index(x.shape[-1])]


class ContextualAttention(nn.Module):
    """`forward(features, mask) -> features` (same shape, H and W of the features even).

    `fuse=True` (networks.py) smooths the score matrix with the 3x3 kernel `fuse_weight`, a
    persistent buffer (eye(3) at construction) that must come from the state_dict, along the
    background and then along the transposed foreground layout. `tf_resize=True` (networks_tf.py)
    downsamples the TF way; that variant has no fuse step and no buffer."""

    def __init__(self, *, fuse: bool, tf_resize: bool, rate: int = 2, n_down: int = 2, softmax_scale: float = 10.0):
        super().__init__()
        self.fuse, self.rate, self.n_down, self.softmax_scale = fuse, rate, n_down, softmax_scale
        self.down = nearest_down_tf if tf_resize else nearest_down
        if fuse:
            self.register_buffer("fuse_weight", torch.eye(3).view(1, 1, 3, 3))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        k = 2 * self.rate
        raw = F.unfold(x, k, padding=1, stride=self.rate)                  # B, C*4*4, L
        small = self.down(x, self.rate)
        hs, ws = small.shape[-2:]
        patches = F.unfold(small, 3, padding=1)                            # B, C*3*3, L
        if patches.shape[-1] != raw.shape[-1]:
            raise ValueError(f"contextual attention needs even feature sizes, got {height}x{width}; "
                             "pad the image to a multiple of 8")
        valid = F.unfold(self.down(mask, 2 ** self.n_down * self.rate), 3, padding=1).sum(1) == 0
        valid = valid.to(x.dtype).unsqueeze(-1)                            # B, L, 1

        keys = patches / patches.square().sum(1, keepdim=True).sqrt().clamp_min(1e-4)
        scores = keys.transpose(1, 2) @ patches                            # B, L (background), L (foreground)
        if self.fuse:
            scores = self.fused(scores, hs, ws)
        attention = F.softmax(scores * valid * self.softmax_scale, dim=1) * valid
        pasted = raw @ attention                                           # B, C*4*4, L
        return F.fold(pasted, (height, width), k, padding=1, stride=self.rate) / 4.0

    def fused(self, scores: Tensor, h: int, w: int) -> Tensor:
        """Two passes of the 3x3 fuse kernel over the L x L score image: first with locations in
        row-major order, then with both axes in column-major order (the official reshapes)."""
        b, n = scores.shape[0], h * w
        s = F.conv2d(scores.view(b, 1, n, n), self.fuse_weight, padding=1)
        s = s.view(b, h, w, h, w).permute(0, 2, 1, 4, 3).reshape(b, 1, n, n)
        s = F.conv2d(s, self.fuse_weight, padding=1)
        return s.view(b, w, h, w, h).permute(0, 2, 1, 4, 3).reshape(b, n, n)

"""From an encoder's feature map to one vector per image, the classifier's head input and the
embedding that retrieval and clustering see. Three readings:

- `flatten`: the whole map, flattened (C x H x W numbers). The study's head is "a linear layer
  with the input size defined by the encoder output", its encoders end in a feature map and no
  pooling is named anywhere, and its section 5.2 stresses how differently sized the embeddings
  are: the paper preset takes this reading. It keeps where a stripe break sits, which is the
  identity; `grid` first averages the map to grid x grid cells (a coarser layout, fewer numbers).
- `avg`: global average pooling (C numbers): keeps which textures occur, not where.
- `gem`: generalized-mean (GeM) pooling, as MiewID and Radenovic et al. (2018, "Fine-tuning CNN
  image retrieval with no human annotation") use it.

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

POOLINGS = ("flatten", "avg", "gem")


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


class GlobalAverage(nn.Module):
    """Global average pooling, NCHW -> NC."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class FlattenMap(nn.Module):
    """The feature map flattened, NCHW -> N(C*H*W) in channel-major order; with `grid`, first
    averaged to grid x grid cells (adaptive average pooling), so the vector has C*grid*grid
    numbers whatever the image size."""

    def __init__(self, *, grid: int | None = None):
        super().__init__()
        if grid is not None and int(grid) < 1:
            raise ValueError(f"classify.flatten_grid must be a positive number of cells per side or null (the "
                             f"whole map), got {grid}")
        self.grid = None if grid is None else int(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is not None:
            x = nn.functional.adaptive_avg_pool2d(x, self.grid)
        return x.flatten(1)

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


def make_pooling(kind: str, *, grid: int | None = None) -> nn.Module:
    """The parameter-free pooling `kind` (GeM, which learns p, is built by the classifier as an
    encoder part); an unknown kind lists the known ones."""
    if kind == "flatten":
        return FlattenMap(grid=grid)
    if kind == "avg":
        return GlobalAverage()
    if kind == "gem":
        return GeM(p=3.0).requires_grad_(False)  # p fixed at its starting value: a frozen encoder's view
    raise ValueError(f"unknown classification pooling '{kind}'; known poolings: {', '.join(POOLINGS)}")


@torch.no_grad()
def feature_map_shape(encoder: nn.Module, encoder_input, image_size: int) -> tuple[int, int, int]:
    """(C, H, W) of `encoder`'s map for one image of side `image_size`, found by running it once
    in evaluation mode (batch-norm statistics untouched) and restoring its mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        param = next(encoder.parameters(), None)
        device = param.device if param is not None else "cpu"
        image = torch.zeros(1, 3, image_size, image_size, device=device)
        shape = encoder(encoder_input(image, torch.zeros_like(image[:, :1]))).shape
    finally:
        encoder.train(was_training)
    return tuple(int(v) for v in shape[1:])


def pooled_dim(kind: str, map_shape: tuple[int, int, int], grid: int | None = None) -> int:
    """Length of the vector `make_pooling(kind, grid=grid)` gives for a (C, H, W) map."""
    c, h, w = map_shape
    if kind != "flatten":
        return c
    return c * h * w if grid is None else c * int(grid) ** 2

"""EdgeConnect's edge inputs: the grayscale image and its Canny edges, as src/dataset.py makes them.

The original computes both on the whole, unmasked image (`canny(gray, sigma=2)` with mask=None, the
training-mode call; test mode passes mask=~hole instead). The edges are a threshold, not
differentiable, so they come from scikit-image on the CPU; the gray image is a linear map and is
computed in torch so gradients reach the image. Both agree bit for bit with scikit-image's float64
`rgb2gray` once cast to float32 (checked against the golden files).
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny

# skimage.color.rgb2gray's luminance weights (Y = 0.2125 R + 0.7154 G + 0.0721 B)
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
CANNY_SIGMA = 2.0  # config.yml.example SIGMA: 2


def rgb_to_gray(image: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW in [0, 1] -> Bx1xHxW, summed in float64 like rgb2gray, returned in image.dtype."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"rgb_to_gray expects an RGB batch Bx3xHxW, got shape {tuple(image.shape)}")
    weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float64, device=image.device).view(1, 3, 1, 1)
    return (image.double() * weights).sum(dim=1, keepdim=True).to(image.dtype)


def canny_edges(image: torch.Tensor, *, sigma: float = CANNY_SIGMA) -> torch.Tensor:
    """Bx3xHxW in [0, 1] -> Bx1xHxW float edge map (0/1) of each whole image; no gradient."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"canny_edges expects an RGB batch Bx3xHxW, got shape {tuple(image.shape)}")
    batch = image.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    edges = np.stack([canny(rgb2gray(rgb), sigma=sigma) for rgb in batch])[:, None]
    return torch.from_numpy(edges).to(device=image.device, dtype=image.dtype)


def gray_and_edges(image: torch.Tensor, *, sigma: float = CANNY_SIGMA) -> tuple[torch.Tensor, torch.Tensor]:
    """Both edge inputs of a batch: (gray Bx1xHxW, Canny edges Bx1xHxW)."""
    return rgb_to_gray(image), canny_edges(image, sigma=sigma)

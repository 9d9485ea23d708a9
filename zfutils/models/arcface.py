"""Sub-center ArcFace with dynamic (per-class, frequency-based) margins: the head of MiewID and of
the Google Landmark Recognition 2020 winners (Ha et al. 2020, "Google Landmark Recognition 2020
Competition Third Place Solution"; Deng et al. 2020 for sub-centers). pytorch-metric-learning's
SubCenterArcFaceLoss (the `arcface` head) has one fixed margin, hence this module.

Each class has k sub-centres; an embedding's cosine to a class is the largest over them, so a
class may have several modes (poses, sides, lighting) and a noisy image can sit at a sub-centre
of its own. Classes seen less often in training get a larger angular margin:
m_c = a * n_c^(-1/4) + b, with a, b chosen so that the margins span [margin_min, margin_max] over
the training classes (rarest class: margin_max, most frequent: margin_min; Ha et al.'s 0.05 to
0.5 rad is 2.86 to 28.6 degrees). Equal counts (the default, before `set_class_counts`) give
every class margin_max: plain sub-center ArcFace with that margin. A class with no training image
counts as one (the rarest possible).

Prediction and the training loss. `get_logits` (prediction, metrics, Grad-CAM) is the scaled
max-over-sub-centre cosine, without margin, as the `arcface` head's. The loss is cross-entropy on
the same logits with the target class's cos(theta) replaced by cos(theta + m_y). Where
theta + m_y >= pi, cos(theta + m) would rise again as theta grows (rewarding a worse angle), so
there, as in ArcFace's reference code (insightface) and Ha et al. / MiewID, the target logit is
cos(theta) - m * sin(m) (the first-order cos(theta) - m sin(theta) at theta = pi - m). It
decreases in theta and stays below cos(pi) = -1, so a worse angle never pays less; at
theta = pi - m it steps down by cos(m) + m sin(m) - 1 (0.12 at m = 0.5 rad). Not the "easy
margin", which drops the margin for every theta > pi/2, i.e. for the hardest images.

Margins are given in degrees, like classify.arcface.margin, and kept in radians in the buffer
`margins` (saved with the model, so a checkpoint carries the margins it was trained with).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MARGIN_POWER = -0.25   # n_c^(-1/4), Ha et al.


def dynamic_margins(counts: Sequence[int] | torch.Tensor, *, low: float, high: float) -> torch.Tensor:
    """Per-class margins a * n_c^(-1/4) + b spanning [low, high] (the rarest class gets `high`,
    the most frequent `low`), in the units of low and high; equal counts give `high` to all."""
    n = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1)
    if n.ndim != 1 or len(n) == 0:
        raise ValueError(f"class counts must be a non-empty list of per-class counts, got shape {tuple(n.shape)}")
    if low > high:
        raise ValueError(f"margin_min ({low}) must not exceed margin_max ({high})")
    t = n.pow(MARGIN_POWER)
    spread = float(t.max() - t.min())
    if spread <= 1e-12:
        return torch.full_like(t, float(high))
    a = (high - low) / spread
    return a * t + (low - a * float(t.min()))


def counts_per_class(identities: Iterable, classes: Sequence[str]) -> list[int]:
    """How many of `identities` (e.g. the training rows' identity column) fall in each of
    `classes`, in the order of `classes` (the label order)."""
    index = {str(name): k for k, name in enumerate(classes)}
    counts = [0] * len(classes)
    for ident in identities:
        if str(ident) not in index:
            raise ValueError(f"identity '{ident}' is not among the {len(classes)} classes {list(classes)[:5]}...")
        counts[index[str(ident)]] += 1
    return counts


class SubCenterArcFaceDynamic(nn.Module):
    """The head: `get_cosine`, `get_logits` (prediction) and `forward(embedding, labels)` (the
    training loss), as pytorch-metric-learning's SubCenterArcFaceLoss offers them."""

    def __init__(self, *, n_classes: int, embed_dim: int, scale: float = 64.0, sub_centers: int = 3,
                 margin_min: float = 2.86, margin_max: float = 28.6, class_counts: Sequence[int] | None = None):
        super().__init__()
        self.n_classes, self.sub_centers, self.scale = n_classes, sub_centers, float(scale)
        self.margin_min, self.margin_max = float(margin_min), float(margin_max)
        self.weight = nn.Parameter(torch.empty(n_classes, sub_centers, embed_dim))
        bound = 1.0 / math.sqrt(embed_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        self.register_buffer("margins", torch.zeros(n_classes))
        self.set_class_counts([1] * n_classes if class_counts is None else class_counts)

    def set_class_counts(self, counts: Sequence[int] | torch.Tensor) -> None:
        """Margins from the training set's images per class (in label order)."""
        if len(counts) != self.n_classes:
            raise ValueError(f"got {len(counts)} class counts for a head of {self.n_classes} classes")
        degrees = dynamic_margins(counts, low=self.margin_min, high=self.margin_max)
        self.margins.copy_(torch.deg2rad(degrees).to(self.margins))

    def get_cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """(N, classes): each embedding's cosine to its nearest sub-centre of every class."""
        centres = F.normalize(self.weight, dim=2).flatten(0, 1)
        cos = F.normalize(embedding, dim=1) @ centres.t()
        return cos.view(len(embedding), self.n_classes, self.sub_centers).amax(dim=2)

    def get_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Scaled cosines without margin: what prediction, metrics and Grad-CAM read."""
        return self.scale * self.get_cosine(embedding)

    def margin_logits(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training logits: the target class's cos(theta) replaced by cos(theta + m_y)
        (cos(theta) - m_y sin(m_y) where theta + m_y > pi), all scaled."""
        cos = self.get_cosine(embedding).float()
        m = self.margins[labels].float()
        target = cos.gather(1, labels[:, None])[:, 0]
        sine = (1.0 - target * target).clamp(min=1e-12).sqrt()
        shifted = target * torch.cos(m) - sine * torch.sin(m)
        fallback = target - m * torch.sin(m)
        target = torch.where(target > torch.cos(math.pi - m), shifted, fallback)
        return self.scale * cos.scatter(1, labels[:, None], target[:, None])

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.margin_logits(embedding, labels), labels)

    def extra_repr(self) -> str:
        return (f"classes={self.n_classes}, sub_centers={self.sub_centers}, scale={self.scale}, "
                f"margins={self.margin_min}..{self.margin_max} deg")

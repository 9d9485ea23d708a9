"""Things in front of the fish: part of another fish, a plant leaf, or the tank frame at an edge.

Crops centred on one fish in a shared tank often include parts of others at the edges. An
occluder is drawn over the finished fish and returned with its coverage, so the renderer can take
it out of the fish and pattern masks. The other fish wears a generic striped skin, never an
individual's, so occlusion carries no identity.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import body, paint
from .pattern import STRIPE_CENTRES, U_MAX, V_MAX

KINDS = ("fish", "plant", "frame")


@dataclass(frozen=True)
class Occluder:
    kind: str
    side: int             # 0 left, 1 top, 2 right, 3 bottom
    depth: float          # how far it reaches into the image (fraction of the size)
    along: float          # where along that edge (fraction)
    angle: float
    seed: int


def sample_occluder(rng: np.random.Generator) -> Occluder:
    return Occluder(kind=str(rng.choice(KINDS, p=[0.5, 0.3, 0.2])), side=int(rng.integers(4)),
                    depth=float(rng.uniform(0.15, 0.4)), along=float(rng.uniform(0.3, 0.7)),
                    angle=float(rng.uniform(-0.6, 0.6)), seed=int(rng.integers(2**31)))


@lru_cache(maxsize=1)
def _stranger_levels() -> list[np.ndarray]:
    """A plain banded skin for fish that are not the subject."""
    v = np.linspace(0, V_MAX, 112)[:, None]
    dist = np.min([np.abs(v - c) for c in STRIPE_CENTRES], axis=0)
    tex = np.clip((0.06 - dist) / 0.02, 0, 1) * np.ones((1, int(416 * U_MAX / 1.3)))
    return paint.texture_levels(tex.astype(np.float32))


def _edge_frame(occ: Occluder, px: np.ndarray, py: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance into the image from the occluder's edge, and position along that edge (pixels)."""
    into = [px, py, size - px, size - py][occ.side]
    along = [py, px, py, px][occ.side] - occ.along * size
    return into, along


def draw(occ: Occluder, size: int, look: paint.Look, light: float) -> tuple[np.ndarray, np.ndarray]:
    """Colour (HxWx3) and coverage (HxW) of one occluder at image size `size`."""
    rng = np.random.default_rng(occ.seed)
    py, px = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5)
    if occ.kind == "fish":
        # another fish whose middle lies beyond the edge, so only its head or tail reaches in
        length = size * rng.uniform(0.6, 0.9)
        out = length * rng.uniform(0.05, 0.3)
        cx, cy = [(-out, occ.along * size), (occ.along * size, -out),
                  (size + out, occ.along * size), (occ.along * size, size + out)][occ.side]
        cy += (rng.uniform(-0.15, 0.15) * size) if occ.side in (0, 2) else 0
        pose = body.Pose(cx=cx, cy=cy, length=length, angle=occ.angle, flip=bool(rng.random() < 0.5),
                         bend=float(rng.uniform(-0.3, 0.3)))
        layers = paint.paint(px, py, pose, body.sample_shape(rng), _stranger_levels(), look)
        a_fin, a_body = layers["fin_a"], layers["body_a"]
        rgb = layers["fin_rgb"] * a_fin[..., None] * (1 - a_body[..., None]) + layers["body_rgb"] * a_body[..., None]
        cover = a_body + a_fin * (1 - a_body)
        return rgb / np.maximum(cover, 1e-4)[..., None] * light, cover
    into, along = _edge_frame(occ, px, py, size)
    reach = occ.depth * size
    if occ.kind == "plant":
        # a leaf blade leaning in from the edge
        tilt = np.tan(occ.angle)
        across = along - tilt * into
        width = size * rng.uniform(0.04, 0.08) * np.sqrt(np.clip(1 - into / (reach * 2), 0, 1))
        cover = np.clip(np.minimum(width - np.abs(across), reach * 2 - into) + 0.5, 0, 1) * (width > 0)
        green = np.array([0.22, 0.42, 0.18]) * rng.uniform(0.7, 1.2)
        vein = 1 - 0.25 * np.exp(-(across / max(size * 0.006, 0.5)) ** 2)
        rgb = green[None, None, :] * (vein * (0.8 + 0.4 * np.clip(1 - np.abs(across) / np.maximum(width, 1e-3), 0, 1)))[..., None]
    else:
        # tank frame or a stone: a dark band with a soft-edged, slightly wavy boundary
        boundary = reach * (1 + 0.08 * np.sin(along / size * rng.uniform(3, 9) + rng.uniform(0, 6)))
        cover = np.clip(boundary - into + 0.5, 0, 1)
        grey = np.array([0.25, 0.24, 0.22]) * rng.uniform(0.6, 1.4)
        rgb = grey[None, None, :] * (0.9 + 0.2 * np.clip(into / reach, 0, 1))[..., None]
    return (rgb * light).astype(np.float32), cover.astype(np.float32)

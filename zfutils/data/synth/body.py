"""Zebrafish body geometry in its own frame, and the inverse map from image pixels into it.

Fish frame: `x` runs along the body from the snout (0) to the caudal peduncle (1), the caudal fin
reaching to about 1.25; `y` points down, in units of body length. Across the body a pixel gets
`t` in [-1, 1] (dorsal edge to ventral edge, relative to the local depth), so body coordinates
(x, t) stay fixed on the skin whatever the pose. Rendering works backwards from every output
pixel to these coordinates, which keeps it a handful of vectorised numpy operations.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: samples of the depth profile along x in [0, 1]
_PROFILE_N = 512


@dataclass(frozen=True)
class BodyShape:
    """Proportions of one fish, in body lengths; defaults are a typical adult zebrafish."""

    depth: float = 0.105          # half of the maximal body depth
    peak: float = 0.40            # where the back is highest
    peduncle: float = 0.36        # depth at the caudal peduncle relative to the maximum
    belly: float = 1.12           # ventral fullness relative to the back
    head: float = 0.23            # gill-cover position (end of the unpatterned head)
    eye: float = 0.04             # eye radius including the silver ring
    caudal_len: float = 0.26
    caudal_span: float = 0.15     # half-height of the caudal fin at its tips
    fork: float = 0.4             # fork notch depth as a fraction of the caudal length (0 = none)
    dorsal_h: float = 0.075
    anal_h: float = 0.085
    pectoral: float = 0.07


def sample_shape(rng: np.random.Generator, spread: float = 1.0) -> BodyShape:
    """Draw proportions around the default; `spread` > 1 widens the distribution (shortcut)."""
    def jit(value: float, rel: float) -> float:
        return float(value * (1 + rel * spread * rng.uniform(-1, 1)))
    return BodyShape(
        depth=jit(0.105, 0.12), peak=jit(0.40, 0.06), peduncle=jit(0.36, 0.1), belly=jit(1.12, 0.06),
        head=jit(0.23, 0.05), eye=jit(0.04, 0.08), caudal_len=jit(0.26, 0.1),
        caudal_span=jit(0.15, 0.12), fork=min(jit(0.4, 0.15), 0.7), dorsal_h=jit(0.075, 0.15),
        anal_h=jit(0.085, 0.15), pectoral=jit(0.07, 0.1))


@lru_cache(maxsize=512)
def profile(shape: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """Centre line and half-depth of the body at `_PROFILE_N` points along x in [0, 1]."""
    x = np.linspace(0, 1, _PROFILE_N)

    def spindle(peak: float) -> np.ndarray:
        front = (1 - (1 - np.minimum(x, peak) / peak) ** 2) ** 0.62       # rounded snout
        fall = np.clip((x - peak) / (1 - peak), 0, 1)
        back = shape.peduncle + (1 - shape.peduncle) * (0.5 + 0.5 * np.cos(np.pi * fall)) ** 1.15
        return np.where(x <= peak, front, back)

    top = -shape.depth * spindle(shape.peak)
    bottom = shape.depth * shape.belly * spindle(min(shape.peak + 0.06, 0.6))
    bottom *= 1 - 0.12 * np.clip((x - 0.7) / 0.3, 0, 1)   # the peduncle is slimmer below
    return ((top + bottom) / 2).astype(np.float32), ((bottom - top) / 2).astype(np.float32)


def lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Nearest-sample lookup of a profile table at x (clamped to [0, 1])."""
    idx = np.clip(x * (_PROFILE_N - 1) + 0.5, 0, _PROFILE_N - 1).astype(np.intp)
    return table[idx]


@dataclass(frozen=True)
class Pose:
    """Where and how one fish lies in the image; lengths are in pixels."""

    cx: float                 # image position of the fish's middle (x = `MIDDLE`)
    cy: float
    length: float             # body length (snout to peduncle) in pixels
    angle: float              # rotation in radians; positive lowers the tail, either way facing
    flip: bool                # True: the fish faces right
    bend: float               # curvature of the midline (body lengths^-1)
    foreshorten: float = 1.0  # < 1 when the fish is turned away from the camera


#: the point along the body that sits at the pose's (cx, cy); snout to caudal tip is ~0 to 1.26.
MIDDLE = 0.6


def to_image(x: np.ndarray, y: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Image position of fish-frame points; the fish is drawn facing left, then mirrored if `flip`."""
    a = (x - MIDDLE) * pose.length * pose.foreshorten
    b = (y + pose.bend * (x - 0.45) ** 2) * pose.length
    c, s = np.cos(pose.angle), np.sin(pose.angle)
    rx, ry = c * a - s * b, s * a + c * b
    return pose.cx + (-rx if pose.flip else rx), pose.cy + ry


def to_fish_frame(px: np.ndarray, py: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Fish-frame (x, y) of image points: the exact inverse of `to_image`."""
    dx, dy = px - pose.cx, py - pose.cy
    if pose.flip:
        dx = -dx
    c, s = np.float32(np.cos(pose.angle)), np.float32(np.sin(pose.angle))
    x = MIDDLE + (c * dx + s * dy) / np.float32(pose.length * pose.foreshorten)
    y = (c * dy - s * dx) / np.float32(pose.length) - np.float32(pose.bend) * (x - np.float32(0.45)) ** 2
    return x, y


def fish_extent(pose: Pose, size: int, margin: float = 2.0) -> tuple[slice, slice]:
    """Image rows and columns that can hold any part of the fish (to restrict the work)."""
    xs = np.linspace(-0.05, 1.3, 12)
    x = np.concatenate([xs, xs])
    y = np.concatenate([np.full(12, -0.32), np.full(12, 0.32)])
    px, py = to_image(x, y, pose)
    x0, x1 = int(max(px.min() - margin, 0)), int(min(px.max() + margin + 1, size))
    y0, y1 = int(max(py.min() - margin, 0)), int(min(py.max() + margin + 1, size))
    return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))


def _fin_height(q: np.ndarray, apex: float, tip: float = 0.0) -> np.ndarray:
    """Fin outline over its base (q in [0, 1]): rises to 1 at `apex`, falls to `tip` at q = 1."""
    rise = np.clip(q / apex, 0, 1) ** 0.7
    fall = 1 - (1 - tip) * np.clip((q - apex) / (1 - apex), 0, 1) ** 1.3
    inside = (q >= 0) & (q <= 1)
    return np.where(inside, np.where(q < apex, 0.25 + 0.75 * rise, fall), 0)


@lru_cache(maxsize=512)
def fin_profile(shape: BodyShape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heights of the dorsal, anal and pelvic fins along x in [0, 1] (body lengths, 0 = no fin)."""
    x = np.linspace(0, 1, _PROFILE_N)
    return tuple((height * _fin_height((x - start) / span, apex, tip)).astype(np.float32)
                 for height, start, span, apex, tip in ((shape.dorsal_h, 0.47, 0.14, 0.3, 0.15),
                                                        (shape.anal_h, 0.57, 0.27, 0.18, 0.25),
                                                        (0.045, 0.42, 0.09, 0.25, 0.0)))


def fins(x: np.ndarray, y: np.ndarray, c: np.ndarray, h: np.ndarray,
         shape: BodyShape) -> dict[str, np.ndarray]:
    """Per-fin membership depth (>0 inside, ~0 at the edge) and the fin's own coordinates.

    Returns arrays over the pixels: for each fin name a signed "how far inside" in body lengths,
    plus `caudal_q`, `caudal_t` (position along and across the caudal fin) and `anal_d`
    (relative depth into the anal fin) that let the fins carry the body's stripes.
    """
    centre, half = profile(shape)
    top, bottom = c - h, c + h
    out: dict[str, np.ndarray] = {}
    # forked caudal fin, fanning out from the peduncle
    end = lookup(centre, np.float32(1.0)), lookup(half, np.float32(1.0))
    q = (x - 0.97) / shape.caudal_len
    spread = end[1] + np.clip(q, 0, None) * (shape.caudal_span - end[1])
    ct = (y - end[0]) / spread
    edge = (1 - shape.fork) + shape.fork * np.abs(ct) ** 1.4
    out["caudal"] = np.minimum.reduce([(1 - np.abs(ct)) * spread, (edge - q) * shape.caudal_len,
                                       q * shape.caudal_len + 0.03])
    out["caudal_q"], out["caudal_t"] = np.clip(q, 0, 1), np.clip(ct, -1, 1)
    # small dorsal fin above the middle of the back, long anal fin under the rear half, and a
    # small pelvic fin under the belly
    above, below = top - y, y - bottom
    dorsal, anal, pelvic = (lookup(table, x) * ((x >= 0) & (x <= 1)) for table in fin_profile(shape))
    out["dorsal"] = np.where(dorsal > 0, np.minimum(dorsal - above, above + 0.01), -1)
    out["anal"] = np.where(anal > 0, np.minimum(anal - below, below + 0.01), -1)
    out["anal_d"] = np.clip(below / np.maximum(anal, 0.005), 0, 1)
    out["pelvic"] = np.where(pelvic > 0, np.minimum(pelvic - below, below + 0.01), -1)
    # pectoral fin: a narrow ellipse behind the gill cover, lying over the lower flank
    ang = np.float32(0.35)
    px0, py0 = shape.head + 0.03, lookup(centre, np.float32(shape.head)) + 0.45 * lookup(half, np.float32(shape.head))
    ax = (x - px0) * np.cos(ang) + (y - py0) * np.sin(ang)
    ay = -(x - px0) * np.sin(ang) + (y - py0) * np.cos(ang)
    r = np.sqrt(((ax - shape.pectoral * 0.5) / (shape.pectoral * 0.55)) ** 2 + (ay / 0.016) ** 2)
    out["pectoral"] = (1 - r) * 0.016
    return out

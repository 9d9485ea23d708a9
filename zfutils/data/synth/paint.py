"""Colour of a zebrafish at given image pixels: body, head, eye, pattern and translucent fins.

Works pixel-backwards: pixels go into the fish frame (`body.to_fish_frame`), get body coordinates
(x along, t across), and read their colour from the individual's texture there. The body is light
and unstriped on the head and belly, olive on the back, golden between the dark blue stripes; the
caudal and anal fins continue the body's stripes, the dorsal, pelvic and pectoral fins do not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import body
from .pattern import U_MAX, V_MAX


@dataclass(frozen=True)
class Look:
    """Colours of one image's fish (RGB in [0, 1]); drawn per image from one shared distribution."""

    stripe: tuple = (0.13, 0.16, 0.32)
    inter: tuple = (0.80, 0.74, 0.50)
    back: tuple = (0.40, 0.39, 0.30)
    belly: tuple = (0.92, 0.90, 0.84)
    head: tuple = (0.76, 0.73, 0.63)
    fin: tuple = (0.88, 0.80, 0.58)
    fin_opacity: float = 0.6


def sample_look(rng: np.random.Generator) -> Look:
    def jit(c: tuple, amount: float) -> tuple:
        return tuple(np.clip(np.asarray(c) * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount / 3, 3), 0, 1))
    base = Look()
    return Look(stripe=jit(base.stripe, 0.15), inter=jit(base.inter, 0.08), back=jit(base.back, 0.12),
                belly=jit(base.belly, 0.05), head=jit(base.head, 0.06), fin=jit(base.fin, 0.08),
                fin_opacity=float(rng.uniform(0.45, 0.7)))


#: anti-aliasing blur levels of a texture, in texels
_LEVELS = (0.0, 1.0, 2.0, 3.5, 5.5)


def texture_levels(texture: np.ndarray) -> list[np.ndarray]:
    """Pre-blurred copies of a texture, so small renders do not alias the stripes."""
    return [texture if s == 0 else ndimage.gaussian_filter(texture, s, mode="nearest") for s in _LEVELS]


def sample_texture(levels: list[np.ndarray], u: np.ndarray, v: np.ndarray, texels_per_px: float) -> np.ndarray:
    """Bilinear lookup at body coordinates (u, v), from the level that suits the on-screen scale."""
    want = 0.45 * texels_per_px
    tex = levels[int(np.argmin([abs(s - want) for s in _LEVELS]))]
    rows, cols = tex.shape
    r = np.clip(v * np.float32((rows - 1) / V_MAX), 0, rows - 1.001)
    c = np.clip(u * np.float32((cols - 1) / U_MAX), 0, cols - 1.001)
    r0, c0 = r.astype(np.intp), c.astype(np.intp)
    fr, fc = r - r0, c - c0
    top = tex[r0, c0] * (1 - fc) + tex[r0, c0 + 1] * fc
    bot = tex[r0 + 1, c0] * (1 - fc) + tex[r0 + 1, c0 + 1] * fc
    return top * (1 - fr) + bot * fr


def _mix(a: np.ndarray, b, w: np.ndarray) -> np.ndarray:
    return a + (np.asarray(b, np.float32) - a) * w[..., None]


def paint(px: np.ndarray, py: np.ndarray, pose: body.Pose, shape: body.BodyShape,
          levels: list[np.ndarray], look: Look) -> dict[str, np.ndarray]:
    """Layers of one fish at pixels (px, py): fin and body colour/alpha, masks, body coordinates.

    Alphas are coverage (edge anti-aliasing times translucency); `fish` and `pattern` are the
    exact masks (fins count as fish, only the patterned trunk counts as pattern); `u`, `v` are the
    texture coordinates of trunk pixels (NaN elsewhere).
    """
    f32 = np.float32
    x, y = body.to_fish_frame(px, py, pose)
    centre, half = body.profile(shape)
    c, h = body.lookup(centre, x), np.maximum(body.lookup(half, x), f32(1e-4))
    t = (y - c) / h
    L = f32(pose.length)
    inside_px = np.minimum((1 - np.abs(t)) * h * L, (1 - x) * L * f32(pose.foreshorten))
    inside_px = np.where(x >= 0, inside_px, -1)
    body_a = np.clip(inside_px + 0.5, 0, 1)

    # unpatterned body: olive back, golden flank, silver belly, light head
    trunk = np.clip((x - shape.head) / 0.04, 0, 1)
    col = np.empty(x.shape + (3,), f32)
    col[:] = np.asarray(look.inter, f32)
    col = _mix(col, look.back, np.clip((-t - 0.55) / 0.4, 0, 1))
    col = _mix(col, look.belly, np.clip((t - 0.25) / 0.45, 0, 1) * np.clip((0.72 - x) / 0.12, 0, 1))
    col = _mix(col, look.head, (1 - trunk) * np.clip(1.1 - np.abs(t), 0, 1))

    # the individual's pattern on the trunk; the belly in front stays light
    t_bot = 0.3 + 0.65 * np.clip((x - shape.head) / (0.64 - shape.head), 0, 1)
    weight = trunk * np.clip((t_bot - t) / 0.15 + 0.5, 0, 1) * np.clip((t + 0.97) / 0.1, 0, 1)
    u = (x - shape.head) / f32(1 - shape.head)
    v = (t + 1) / 2
    texels_per_px = levels[0].shape[0] / V_MAX / float(2 * shape.depth * L)
    on = (weight > 0) & (body_a > 0)
    dark = np.zeros_like(x)
    dark[on] = sample_texture(levels, u[on], v[on], texels_per_px) * weight[on]
    col = _mix(col, look.stripe, dark)

    # gill cover edge, rounded shading with a silvery sheen along the flank, eye
    gill = np.exp(-(((x - shape.head + 0.02 * t * t) / 0.006) ** 2)) * (np.abs(t) < 0.85)
    shade = 0.72 + 0.34 * np.sqrt(np.clip(1 - t * t, 0, 1)) - 0.2 * gill
    shade += 0.12 * (1 - dark) * np.exp(-(((t + 0.15) / 0.35) ** 2))
    col *= shade[..., None]
    ex = f32(0.085)
    ey = body.lookup(centre, ex) - 0.12 * body.lookup(half, ex)
    r = np.sqrt(((x - ex) * pose.foreshorten) ** 2 + (y - ey) ** 2) / shape.eye
    col = _mix(col, (0.80, 0.80, 0.76), np.clip((1 - r) * shape.eye * L + 0.5, 0, 1))
    col = _mix(col, (0.04, 0.04, 0.06), np.clip((0.62 - r) * shape.eye * L + 0.5, 0, 1))
    glint = np.sqrt(((x - ex + 0.2 * shape.eye)) ** 2 + (y - ey + 0.22 * shape.eye) ** 2) / shape.eye
    col = _mix(col, (0.95, 0.95, 0.95), np.clip((0.16 - glint) * shape.eye * L + 0.5, 0, 1))

    # fins behind the body: caudal and anal carry stripes, dorsal and pelvic are plain
    fin = body.fins(x, y, centre, half, shape)
    cover = {k: np.clip(fin[k] * L + 0.5, 0, 1) for k in ("caudal", "dorsal", "anal", "pelvic", "pectoral")}
    fin_a = np.maximum.reduce([cover["caudal"], cover["dorsal"], cover["anal"], cover["pelvic"]])
    fin_dark = np.zeros_like(x)
    striped = cover["caudal"] > 0
    fu = 1 + fin["caudal_q"][striped] * f32(0.95 * (U_MAX - 1))
    fv = 0.5 + 0.45 * fin["caudal_t"][striped]
    fin_dark[striped] = sample_texture(levels, fu, fv, texels_per_px)
    anal = (cover["anal"] > 0) & ~striped
    av = 1 + fin["anal_d"][anal] * f32(0.95 * (V_MAX - 1))
    fin_dark[anal] = sample_texture(levels, u[anal], av, texels_per_px)
    rays = 0.85 + 0.15 * np.cos(fin["caudal_t"] * 40 + np.where(striped, 0, x * 400))
    fin_col = _mix(np.broadcast_to(np.asarray(look.fin, f32), col.shape).copy(), look.stripe, 0.9 * fin_dark)
    fin_opacity = look.fin_opacity * rays * (1 - 0.35 * fin["caudal_q"] * striped) + 0.25 * fin_dark
    pect_a = cover["pectoral"] * 0.3
    fish = (body_a >= 0.5) | (fin_a >= 0.5) | (pect_a > 0.15)
    return {
        "body_rgb": col, "body_a": body_a, "fin_rgb": fin_col, "fin_a": fin_a * np.clip(fin_opacity, 0, 0.95),
        "pect_a": pect_a, "fish": fish, "pattern": (body_a >= 0.5) & (weight >= 0.5),
        "u": np.where(on, u, np.nan), "v": np.where(on, v, np.nan),
    }

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

    stripe: tuple = (0.10, 0.13, 0.28)
    inter: tuple = (0.80, 0.71, 0.45)
    back: tuple = (0.40, 0.39, 0.30)
    belly: tuple = (0.92, 0.90, 0.84)
    head: tuple = (0.76, 0.73, 0.63)
    fin: tuple = (0.92, 0.80, 0.46)
    fin_opacity: float = 0.6


def sample_look(rng: np.random.Generator) -> Look:
    def jit(c: tuple, amount: float) -> tuple:
        return tuple(np.clip(np.asarray(c) * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount / 3, 3), 0, 1))
    base = Look()
    return Look(stripe=jit(base.stripe, 0.12), inter=jit(base.inter, 0.08), back=jit(base.back, 0.12),
                belly=jit(base.belly, 0.05), head=jit(base.head, 0.06), fin=jit(base.fin, 0.08),
                fin_opacity=float(rng.uniform(0.55, 0.8)))


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


def _blend(weights: list[np.ndarray], colours: list) -> np.ndarray:
    """Per-pixel colour as a weighted sum of a few fixed colours (one small matrix product)."""
    w = np.stack(weights, axis=-1)
    return w @ np.asarray(colours, np.float32)


def _lerp_chain(*weights: np.ndarray) -> list[np.ndarray]:
    """Weights of colours c0..cn after lerping c0 towards c1 by w1, then towards c2 by w2, ..."""
    out = [np.float32(1.0)]
    for w in weights:
        out = [o * (1 - w) for o in out] + [w]
    return out


def paint(px: np.ndarray, py: np.ndarray, pose: body.Pose, shape: body.BodyShape,
          levels: list[np.ndarray], look: Look) -> dict[str, np.ndarray]:
    """Layers of one fish at pixels (px, py): fin and body colour/alpha, masks, body coordinates.

    Alphas are coverage (edge anti-aliasing times translucency); `fish` and `pattern` are the
    exact masks (fins count as fish, only the patterned trunk counts as pattern); `u`, `v` are the
    texture coordinates of trunk pixels (NaN elsewhere); `dark` is the stripe colour each pixel got.
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

    # unpatterned body (golden flank, olive back, silver belly, light head), then the
    # individual's pattern on the trunk; the belly in front stays light
    trunk = np.clip((x - shape.head) / 0.04, 0, 1)
    taper = np.clip((x - shape.head - 0.01 - 0.07 * t * t) / 0.04, 0, 1)  # stripes taper in front
    t_bot = 0.3 + 0.65 * np.clip((x - shape.head) / (0.64 - shape.head), 0, 1)
    weight = taper * np.clip((t_bot - t) / 0.15 + 0.5, 0, 1) * np.clip((t + 0.97) / 0.1, 0, 1)
    u = (x - shape.head) / f32(1 - shape.head)
    v = (t + 1) / 2
    texels_per_px = levels[0].shape[0] / V_MAX / float(2 * shape.depth * L)
    on = (weight > 0) & (body_a > 0)
    dark = np.zeros_like(x)
    dark[on] = sample_texture(levels, u[on], v[on], texels_per_px) * weight[on]
    weights = _lerp_chain(np.clip((-t - 0.55) / 0.4, 0, 1),
                          np.clip((t - 0.25) / 0.45, 0, 1) * np.clip((0.72 - x) / 0.12, 0, 1),
                          (1 - trunk) * np.clip(1.1 - np.abs(t), 0, 1), dark)
    weights[0] = np.broadcast_to(weights[0], x.shape)

    # gill cover edge, rounded shading with a silvery sheen along the flank
    gill = np.exp(-(((x - shape.head + 0.02 * t * t) / 0.006) ** 2)) * (np.abs(t) < 0.85)
    shade = 0.72 + 0.26 * np.sqrt(np.clip(1 - t * t, 0, 1)) - 0.2 * gill
    shade += 0.08 * (1 - dark) * np.exp(-(((t + 0.15) / 0.35) ** 2))
    col = _blend([w * shade for w in weights], [look.inter, look.back, look.belly, look.head, look.stripe])

    # the eye: dark pupil in a silver ring with a highlight; drawn only where it can be
    ex = f32(0.085)
    ey = body.lookup(centre, ex) - 0.12 * body.lookup(half, ex)
    near = np.nonzero((np.abs(x - ex) < 1.3 * shape.eye) & (np.abs(y - ey) < 1.3 * shape.eye))
    if near[0].size:
        xe, ye, ce = x[near] - ex, y[near] - ey, col[near]
        r = np.sqrt((xe * pose.foreshorten) ** 2 + ye ** 2) / shape.eye
        glint = np.sqrt((xe + 0.2 * shape.eye) ** 2 + (ye + 0.22 * shape.eye) ** 2) / shape.eye
        for colour, radius, dist in (((0.80, 0.80, 0.76), 1, r), ((0.04, 0.04, 0.06), 0.62, r),
                                     ((0.95, 0.95, 0.95), 0.16, glint)):
            w = np.clip((radius - dist) * shape.eye * L + 0.5, 0, 1)[:, None]
            ce += (np.asarray(colour, f32) - ce) * w
        col[near] = ce

    # fins behind the body: caudal and anal carry stripes, dorsal and pelvic are plain
    fin = body.fins(x, y, c, h, shape)
    cover = {k: np.clip(fin[k] * L + 0.5, 0, 1) for k in ("caudal", "dorsal", "anal", "pelvic", "pectoral")}
    fin_a = np.maximum.reduce([cover["caudal"], cover["dorsal"], cover["anal"], cover["pelvic"]])
    fin_dark = np.zeros_like(x)
    caudal = cover["caudal"] > 0
    fu = 1 + fin["caudal_q"][caudal] * f32(0.95 * (U_MAX - 1))
    fv = 0.5 + 0.45 * fin["caudal_t"][caudal]      # the stripes fan out with the fin rays
    fin_dark[caudal] = sample_texture(levels, fu, fv, texels_per_px)
    anal = (cover["anal"] > 0) & ~caudal
    av = 1 + fin["anal_d"][anal] * f32(0.95 * (V_MAX - 1))
    fin_dark[anal] = sample_texture(levels, u[anal], av, texels_per_px)
    rays = 0.9 + 0.1 * np.cos(fin["caudal_t"] * 40 + np.where(caudal, 0, x * 400))
    fin_col = _blend([1 - 0.9 * fin_dark, 0.9 * fin_dark], [look.fin, look.stripe])
    plain = np.where(caudal | anal, 1.0, 0.7)  # dorsal and pelvic fins are the most see-through
    fin_opacity = look.fin_opacity * plain * rays * (1 - 0.3 * fin["caudal_q"] * caudal) + 0.3 * fin_dark
    pect_a = cover["pectoral"] * 0.3
    fish = (body_a >= 0.5) | (fin_a >= 0.5) | (pect_a > 0.15)
    return {
        "body_rgb": col, "body_a": body_a, "fin_rgb": fin_col, "fin_a": fin_a * np.clip(fin_opacity, 0, 0.95),
        "pect_a": pect_a, "fish": fish, "pattern": (body_a >= 0.5) & (weight >= 0.5),
        "u": np.where(on, u, np.nan), "v": np.where(on, v, np.nan), "dark": dark * body_a,
    }

"""Recording sessions: the tank around the fish, its light, and what the camera adds.

A session stands for one tank recording. It fixes the background (water colour, gradient, faint
structures such as glass seams, plants and substrate), the lighting and a camera drift that
shifts where fish sit in the frame, so a split by session tests generalisation to new recordings.
Everything a session draws is precomputed once per image size; per image only crops, gains and
noise remain. Images are float32 RGB in [0, 1] until the very end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

#: how far (in fractions of the image) the camera may drift within a session
DRIFT = 0.06


@dataclass
class Session:
    """One recording's look; `cache` holds its background and light field per image size."""

    index: int
    seed: int
    water: np.ndarray                 # base RGB of the tank
    gain: float                       # overall exposure
    cast: np.ndarray                  # colour cast of the light, RGB multipliers
    drift: tuple[float, float]        # mean fish offset (fraction of the image) in this session
    zoom: float                       # mean fish size factor in this session
    blur: float                       # typical defocus blur, in pixels at 128 px
    noise: float                      # sensor noise level
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"s{self.index + 1:02d}"


def make_session(seed: int, index: int) -> Session:
    """Session `index` of a data set; depends only on (seed, index)."""
    rng = np.random.default_rng([int(seed), int(index), 0x5E55])
    hue = rng.choice(3, p=[0.5, 0.3, 0.2])  # bluish-grey, greenish, warm-lit tanks
    water = [np.array([0.55, 0.64, 0.68]), np.array([0.56, 0.66, 0.58]), np.array([0.66, 0.64, 0.56])][hue]
    water = np.clip(water + rng.normal(0, 0.04, 3), 0.25, 0.9)
    return Session(
        index=index, seed=int(rng.integers(2**31)), water=water.astype(np.float32),
        gain=float(rng.uniform(0.8, 1.15)), cast=np.clip(1 + rng.normal(0, 0.05, 3), 0.85, 1.15).astype(np.float32),
        drift=(float(rng.uniform(-DRIFT, DRIFT)), float(rng.uniform(-DRIFT, DRIFT))),
        zoom=float(rng.uniform(0.92, 1.08)), blur=float(rng.uniform(0.1, 0.6)), noise=float(rng.uniform(0.006, 0.02)))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return field_ / (field_.std() + 1e-6)


#: tanks are drawn at this size and resized, so a session looks the same at every image size
_REFERENCE = 128


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize((size, size), Image.BILINEAR))
             for c in range(img.shape[-1])]
    return np.stack(chans, axis=-1)


def _draw_background(session: Session, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The session's tank at `size` plus a margin for drift, and its light field at `size`."""
    ref = _REFERENCE
    rng = np.random.default_rng(session.seed)
    full = ref + 2 * int(np.ceil(DRIFT * ref))
    yy, xx = np.mgrid[0:full, 0:full].astype(np.float32) / full
    tilt = rng.uniform(-0.3, 0.3)
    shade = 1 + rng.uniform(0.1, 0.3) * (0.5 - (yy + tilt * (xx - 0.5)))           # lit from above
    bg = session.water[None, None, :] * shade[..., None]
    bg = bg + 0.03 * _smooth_noise(rng, (full, full), full / 8)[..., None]
    for _ in range(rng.integers(0, 3)):  # glass seams, stems: faint soft vertical lines
        x0 = rng.uniform(0, 1) + rng.uniform(-0.1, 0.1) * yy
        line = np.exp(-(((xx - x0) * full / rng.uniform(0.6, 2.5)) ** 2))
        bg = bg + rng.uniform(-0.07, 0.05) * line[..., None]
    if rng.random() < 0.5:  # soft plant / decoration blobs far behind, out of focus
        blob = np.clip(_smooth_noise(rng, (full, full), full / 14) - 1.0, 0, None)
        tint = np.array([-0.12, -0.02, -0.12], np.float32) * rng.uniform(0.3, 1.0)
        bg = bg + blob[..., None] * tint
    if rng.random() < 0.3:  # substrate along the bottom
        floor = np.clip((yy - rng.uniform(0.8, 0.95)) * 30, 0, 1)
        grit = 1 + 0.15 * rng.standard_normal((full, full)).astype(np.float32)
        sand = np.array([0.55, 0.48, 0.38], np.float32) * ndimage.gaussian_filter(grit, 0.7)[..., None]
        bg = bg * (1 - floor[..., None]) + sand * floor[..., None]
    ripple = np.sin(xx * rng.uniform(8, 20) + 3 * np.sin(yy * rng.uniform(5, 12))) * np.sin(yy * rng.uniform(6, 15))
    bg = bg + 0.012 * ripple[..., None]                                             # faint caustics
    hx, hy = rng.uniform(0.2, 0.8, 2)
    yl, xl = np.mgrid[0:ref, 0:ref].astype(np.float32) / ref
    light = 1 + rng.uniform(0.05, 0.2) * np.exp(-((xl - hx) ** 2 + (yl - hy) ** 2) / 0.15) - 0.1 * ((xl - 0.5) ** 2 + (yl - 0.5) ** 2)
    bg = _resize(np.clip(bg, 0, 1).astype(np.float32), size + 2 * int(np.ceil(DRIFT * size)))
    return bg, _resize(light.astype(np.float32)[..., None], size)[..., 0]


def background(session: Session, size: int, offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A `size` crop of the session tank (shifted by `offset` pixels of camera jitter) and light."""
    if size not in session.cache:
        session.cache[size] = _draw_background(session, size)
    bg, light = session.cache[size]
    m = (bg.shape[0] - size) // 2
    oy, ox = (int(np.clip(o + m, 0, 2 * m)) for o in offset)
    return bg[oy:oy + size, ox:ox + size].copy(), light


def identity_backdrop(seed: int, index: int, size: int) -> np.ndarray:
    """Shortcut: a tint and texture of the background that belong to one identity.

    Hues step round the colour circle by the golden angle, so any two identities differ."""
    rng = np.random.default_rng([int(seed), int(index), 0xB6])
    hue = 2 * np.pi * ((index * 0.618034 + rng.uniform(-0.05, 0.05)) % 1)
    tint = 0.1 * np.cos(hue - np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq, ang = 3 + (index * 0.381966 % 1) * 8, rng.uniform(0, np.pi)
    bars = np.sin(2 * np.pi * freq * (xx * np.cos(ang) + yy * np.sin(ang)))
    return (tint[None, None, :] + 0.05 * bars[..., None]).astype(np.float32)


def add_glints(img: np.ndarray, rng: np.random.Generator, where: np.ndarray, count: int, size_px: float) -> None:
    """Specular glints: tiny bright specks, mostly on the fish (`where` lists candidate pixels)."""
    h, w = img.shape[:2]
    r = max(1, int(np.ceil(2 * size_px)))
    g = np.arange(-r, r + 1, dtype=np.float32)
    for _ in range(count):
        if len(where[0]) and rng.random() < 0.75:
            k = rng.integers(len(where[0]))
            y, x = int(where[0][k]), int(where[1][k])
        else:
            y, x = int(rng.integers(h)), int(rng.integers(w))
        sig = size_px * rng.uniform(0.5, 1.0)
        spot = rng.uniform(0.3, 0.9) * np.exp(-(g[:, None] ** 2 + g[None, :] ** 2) / (2 * sig ** 2))
        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, h), max(x - r, 0), min(x + r + 1, w)
        img[y0:y1, x0:x1] += spot[y0 - y + r:y1 - y + r, x0 - x + r:x1 - x + r, None]


def camera(img: np.ndarray, rng: np.random.Generator, blur: float, motion: int, noise: float) -> np.ndarray:
    """Defocus and motion blur, then sensor noise; returns uint8."""
    if blur > 0.15:
        img = ndimage.gaussian_filter(img, (blur, blur, 0), truncate=2.5)
    if motion > 1:
        img = ndimage.uniform_filter1d(img, motion, axis=1)
    img = img + noise * rng.standard_normal(img.shape, dtype=np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

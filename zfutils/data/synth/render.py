"""One synthetic image: draw its random settings, then compose tank, fish, occluder and camera.

Settings and drawing are separate so that a test can render two individuals with exactly the same
pose, light and noise. All randomness of an image comes from the generator handed to
`sample_params` (the camera noise and glints through the `seed` it draws); `render` itself is a
pure function of its inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import body, occlude, paint, scene


@dataclass(frozen=True)
class ImageParams:
    """Everything random about one image (lengths in pixels of an image of `size`)."""

    size: int
    pose: body.Pose
    shape: body.BodyShape
    look: paint.Look
    offset: tuple[int, int]          # camera jitter: crop offset into the session's tank
    gain: float
    occluder: occlude.Occluder | None
    blur: float
    motion: int
    noise: float
    glints: int
    seed: int                        # of the glint positions and the sensor noise


def sample_params(rng: np.random.Generator, size: int, session: scene.Session, *,
                  shape: body.BodyShape | None = None, size_factor: float = 1.0,
                  occlusion: float = 0.25, noise: float = 1.0, blur: float = 1.0) -> ImageParams:
    """Draw one image's settings. `shape`/`size_factor` pin the body (the body shortcut);
    `occlusion` is the chance of an occluder, `noise` and `blur` scale the camera artefacts."""
    px_scale = size / 128
    spread = (0.6, 0.74) if shape is None else (0.65, 0.69)   # a pinned body also keeps its size
    length = size * session.zoom * size_factor * rng.uniform(*spread)
    cx = size * (0.5 + session.drift[0] + rng.normal(0, 0.03))
    cy = size * (0.5 + session.drift[1] + rng.normal(0, 0.04))
    pose = body.Pose(cx=float(cx), cy=float(cy), length=float(length),
                     angle=float(np.clip(rng.normal(0, 0.12), -0.35, 0.35)), flip=bool(rng.random() < 0.5),
                     bend=float(rng.uniform(-0.35, 0.35)), foreshorten=float(np.clip(1 - abs(rng.normal(0, 0.07)), 0.75, 1)))
    jitter = tuple(int(v) for v in np.round(rng.normal(0, 0.01 * size, 2)))
    motion = int(round(rng.uniform(2, 4) * px_scale)) if rng.random() < 0.15 else 0
    return ImageParams(
        size=size, pose=pose, shape=shape if shape is not None else body.sample_shape(rng),
        look=paint.sample_look(rng), offset=jitter, gain=float(rng.uniform(0.9, 1.1)),
        occluder=occlude.sample_occluder(rng) if rng.random() < occlusion else None,
        blur=float(blur * px_scale * max(session.blur + rng.normal(0, 0.2), 0)), motion=motion * (blur > 0),
        noise=float(noise * session.noise * rng.uniform(0.7, 1.3)), glints=int(rng.poisson(3)), seed=int(rng.integers(2**31)))


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    py, px = np.mgrid[0:size, 0:size].astype(np.float32) + np.float32(0.5)
    return py, px


def render(levels: list[np.ndarray], params: ImageParams, session: scene.Session,
           backdrop: np.ndarray | None = None, coords: bool = False) -> dict:
    """Compose one image; returns image (uint8), fish/pattern masks, occluded, and (if `coords`)
    the texture coordinates u, v of every visible patterned pixel (NaN elsewhere) and `dark`,
    how much stripe colour each visible fish pixel received (0 = none, 1 = full stripe)."""
    size = params.size
    img, light = scene.background(session, size, params.offset)
    if backdrop is not None:
        img += backdrop
    rows, cols = body.fish_extent(params.pose, size)
    gy, gx = _grid(size)
    layer = paint.paint(gx[rows, cols], gy[rows, cols], params.pose, params.shape, levels, params.look)
    sub = img[rows, cols]
    for rgb, a in ((layer["fin_rgb"], layer["fin_a"]), (layer["body_rgb"], layer["body_a"]),
                   (np.asarray(params.look.belly, np.float32), layer["pect_a"])):
        sub += (rgb - sub) * a[..., None]
    img[rows, cols] = sub
    fish = np.zeros((size, size), bool)
    pattern = np.zeros((size, size), bool)
    fish[rows, cols], pattern[rows, cols] = layer["fish"], layer["pattern"]

    occluded = False
    if params.occluder is not None:
        rgb, cover = occlude.draw(params.occluder, size, params.look, 1.0)
        img += (rgb - img) * cover[..., None]
        hidden = cover >= 0.5
        occluded = bool((fish & hidden).any())
        fish &= ~hidden
        pattern &= ~hidden

    img *= (light * np.float32(session.gain * params.gain))[..., None] * session.cast
    rng = np.random.default_rng(params.seed)
    where = np.nonzero(fish)
    scene.add_glints(img, rng, where, params.glints, max(0.6, 0.5 * size / 128))
    out = {"image": scene.camera(img, rng, params.blur, params.motion, params.noise),
           "fish_mask": fish, "pattern_mask": pattern, "occluded": occluded}
    if coords:
        u = np.full((size, size), np.nan, np.float32)
        v = np.full((size, size), np.nan, np.float32)
        u[rows, cols], v[rows, cols] = layer["u"], layer["v"]
        u[~pattern], v[~pattern] = np.nan, np.nan
        dark = np.zeros((size, size), np.float32)
        dark[rows, cols] = layer["dark"]
        out["u"], out["v"], out["dark"] = u, v, np.where(fish, dark, 0)
    return out

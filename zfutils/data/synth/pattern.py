"""Individual skin patterns from a Gray-Scott reaction-diffusion (Turing) model.

A texture lives in body coordinates: rows are `v` (across the body, 0 = dorsal edge, 1 = ventral
edge) and columns are `u` (along the body, 0 = behind the gill cover, 1 = caudal peduncle). The
array extends past both ends (`U_MAX`, `V_MAX`) so the caudal fin and the anal fin can carry
stripes that continue the body's. Values are in [0, 1], 1 = dark (melanophore stripe or spot).

Stripes come from the labyrinth regime of Gray-Scott, made body-long by anisotropic diffusion
(the activator spreads faster along `u`) and a horizontally striped starting state whose dark
bands sit above and below a light midline interstripe, the plan every zebrafish shares. Per-individual noise, wavy and
broken starting bands, and small jitter of the rates give the details (breaks, branches, spots,
wavy edges) that identify an individual. The generator depends only on (seed, family, index).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: texture extent in body units: u beyond 1 is the caudal fin, v beyond 1 is the anal fin.
U_MAX = 1.3
V_MAX = 1.3
#: default simulation grid (rows across v in [0, V_MAX], columns along u in [0, U_MAX]).
GRID = (56, 208)
#: the stored texture is the simulation upsampled by this factor and sharpened.
UPSAMPLE = 2


@dataclass(frozen=True)
class FamilyParams:
    """Gray-Scott settings of one pattern family (rates per unit time, diffusion per cell)."""

    feed: float
    kill: float
    diff_u: float = 0.10
    diff_v: float = 0.05
    #: extra diffusion of the activator along the body. When it diffuses along u about as fast
    #: as the substrate does, no instability can vary along u, so bands run along the body;
    #: a little below that, bands still dominate but break, branch and wave.
    aniso: tuple[float, float] = (1.0, 1.0)
    striped_start: bool = False
    steps: int = 2500
    threshold: float = 0.2      # V level that separates dark from light


FAMILIES: dict[str, FamilyParams] = {
    "stripes": FamilyParams(feed=0.035, kill=0.060, aniso=(1.15, 1.45), striped_start=True, threshold=0.13),
    "spots": FamilyParams(feed=0.037, kill=0.065, striped_start=False, steps=3000),
}

#: dark-stripe centres across the body (v) in the zebrafish plan; 0.5 is the light interstripe X0.
STRIPE_CENTRES = (0.16, 0.38, 0.62, 0.84, 1.07, 1.25)


def family_params(family: str) -> FamilyParams:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown pattern family {family!r}; known families: {sorted(FAMILIES)}") from None


def _laplacian(a: np.ndarray, wu: float, wv: float) -> np.ndarray:
    """Anisotropic 5-point Laplacian with reflecting (no-flux) borders."""
    p = np.pad(a, 1, mode="edge")
    return wv * (p[:-2, 1:-1] + p[2:, 1:-1]) + wu * (p[1:-1, :-2] + p[1:-1, 2:]) - (2 * wu + 2 * wv) * a


def _start_state(rng: np.random.Generator, shape: tuple[int, int], striped: bool) -> tuple[np.ndarray, np.ndarray]:
    """Substrate U and activator V at t=0: zebrafish bands (wavy, broken) or scattered seeds."""
    rows, cols = shape
    seed = np.zeros(shape, np.float32)
    if striped:
        vv = np.linspace(0, V_MAX, rows, dtype=np.float32)[:, None]
        uu = np.linspace(0, U_MAX, cols, dtype=np.float32)[None, :]
        shift = rng.uniform(-0.02, 0.02)
        for centre in STRIPE_CENTRES:
            centre = centre + shift + rng.uniform(-0.025, 0.025)
            wave = rng.uniform(0.005, 0.04) * np.sin(2 * np.pi * (uu * rng.uniform(1.5, 6) + rng.uniform()))
            drift = rng.uniform(-0.04, 0.04) * uu
            width = rng.uniform(0.035, 0.065)
            band = np.exp(-(((vv - (centre + wave + drift)) / width) ** 2)) * np.ones_like(uu)
            for _ in range(rng.integers(1, 6)):  # individual breaks in the starting band
                g0 = rng.uniform(0.05, U_MAX)
                band[:, (uu[0] > g0) & (uu[0] < g0 + rng.uniform(0.03, 0.15))] = 0
            seed = np.maximum(seed, band)
        n_spots = rng.integers(5, 20)
    else:
        n_spots = int(rows * cols / 60)
    for _ in range(n_spots):
        r, c = rng.integers(0, rows), rng.integers(0, cols)
        seed[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = 1.0
    noise = rng.normal(0, 1, shape).astype(np.float32)
    u = 1 - 0.5 * seed + 0.03 * noise
    v = 0.25 * seed + 0.02 * np.abs(noise)
    return u.astype(np.float32), v.astype(np.float32)


def gray_scott(rng: np.random.Generator, params: FamilyParams, shape: tuple[int, int] = GRID) -> np.ndarray:
    """Run the reaction-diffusion from an individual start; returns the activator field V."""
    f32 = np.float32
    feed = f32(params.feed * rng.uniform(0.97, 1.03))
    decay = f32(feed + params.kill * rng.uniform(0.99, 1.01))
    aniso = rng.uniform(*params.aniso)
    diff_u, diff_v = f32(params.diff_u), f32(params.diff_v)
    u, v = _start_state(rng, shape, params.striped_start)
    for _ in range(params.steps):  # explicit Euler, dt = 1: stable for diffusion * 4 * (1 + aniso) < 1
        uvv = u * v * v
        u += diff_u * _laplacian(u, 1.0, 1.0) - uvv + feed * (1 - u)
        v += diff_v * _laplacian(v, aniso, 1.0) + uvv - decay * v
    return v


def make_texture(seed: int, family: str, index: int, shape: tuple[int, int] = GRID) -> np.ndarray:
    """The texture of individual `index`: float32 (rows over v, cols over u), 1 = dark."""
    params = family_params(family)
    family_code = zlib.crc32(family.encode())  # stable when more families are added
    rng = np.random.default_rng([int(seed), family_code, int(index), 0x5EED])
    field = gray_scott(rng, params, shape)
    field = ndimage.zoom(field, UPSAMPLE, order=3)
    soft = 0.04
    tex = np.clip((field - params.threshold) / soft + 0.5, 0, 1)
    return ndimage.gaussian_filter(tex, 0.6).astype(np.float32)

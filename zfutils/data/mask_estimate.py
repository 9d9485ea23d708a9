"""Automatic fish and pattern masks for real crops that come without drawn masks.

Real data (AAU, image folders) has no silhouettes, but the region ablations need some idea of
where the fish and its striped trunk are. The estimate is deliberately simple and explainable:

* fish: the crop is centred on one fish in front of a plain aquarium background, so the
  background colour is the median of a band along the crop border. Each pixel's colour distance
  to it is smoothed and thresholded with Otsu's method; closing, hole filling and opening clean
  the mask, and the connected component at (or nearest to) the crop centre is kept.
* pattern: the striped trunk. Along the fish's main axis (principal component of the mask's
  pixels) the two ends are cut off (head and tail, `end_fraction` of the length each, since
  head and tail are not told apart), and across the axis the outer `belly_fraction` of the
  width on the side where that band is lighter (the light belly; the back is darker) is removed.

Either mask can be empty when no object stands out from the background; callers get what the
image supports rather than an invented silhouette.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 255] (256 bins)."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.int64).ravel(), minlength=256)
    hist = hist.astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(np.argmax(between))


def _border_colour(image: np.ndarray, band: int) -> np.ndarray:
    border = np.concatenate([
        image[:band].reshape(-1, 3), image[-band:].reshape(-1, 3),
        image[:, :band].reshape(-1, 3), image[:, -band:].reshape(-1, 3)])
    return np.median(border.astype(np.float64), axis=0)


def _component_at_centre(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    h, w = mask.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    centre_label = labels[int(round(cy)), int(round(cx))]
    if centre_label == 0:
        ys, xs = np.nonzero(labels)
        nearest = np.argmin((ys - cy) ** 2 + (xs - cx) ** 2)
        centre_label = labels[ys[nearest], xs[nearest]]
    return labels == centre_label


def estimate_fish_mask(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the object at the crop centre that differs from the border colour."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"estimate_masks needs an HxWx3 image, got shape {image.shape}")
    h, w = image.shape[:2]
    side = min(h, w)
    band = max(1, side // 25)
    diff = np.linalg.norm(image.astype(np.float64) - _border_colour(image, band), axis=2)
    diff = ndi.gaussian_filter(diff, sigma=max(0.5, side / 100.0))
    if diff.max() < 8.0:  # nothing stands out from the background (flat crop)
        return np.zeros((h, w), dtype=bool)
    scaled = diff / diff.max() * 255.0
    mask = scaled > _otsu_threshold(scaled)
    radius = max(1, side // 40)
    disk = _disk(radius)
    mask = ndi.binary_closing(mask, structure=disk, iterations=2, border_value=0)
    mask = ndi.binary_fill_holes(mask)
    mask = ndi.binary_opening(mask, structure=disk)
    return _component_at_centre(mask)


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def estimate_pattern_mask(image: np.ndarray, fish: np.ndarray, *, end_fraction: float = 0.2,
                          belly_fraction: float = 0.25, n_bins: int = 32) -> np.ndarray:
    """The trunk of `fish`: without the two ends along its axis and without the light belly."""
    ys, xs = np.nonzero(fish)
    pattern = np.zeros_like(fish, dtype=bool)
    if len(ys) < 10:
        return pattern
    coords = np.stack([xs, ys], axis=1).astype(np.float64)
    centred = coords - coords.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov(centred.T))
    along = centred @ vecs[:, 1]   # largest eigenvalue last: the fish's long axis
    across = centred @ vecs[:, 0]
    lo, hi = along.min(), along.max()
    length = hi - lo
    keep = (along >= lo + end_fraction * length) & (along <= hi - end_fraction * length)

    # Position across the body, 0..1 within each slice along the axis, so the belly band
    # follows the body's outline rather than a straight line.
    bins = np.minimum(((along - lo) / max(length, 1e-9) * n_bins).astype(int), n_bins - 1)
    smin = np.full(n_bins, np.inf)
    smax = np.full(n_bins, -np.inf)
    np.minimum.at(smin, bins, across)
    np.maximum.at(smax, bins, across)
    width = np.maximum(smax[bins] - smin[bins], 1e-9)
    u = (across - smin[bins]) / width

    luminance = image[ys, xs].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    high, low = u > 1.0 - belly_fraction, u < belly_fraction
    if high.any() and low.any() and luminance[high].mean() >= luminance[low].mean():
        keep &= ~high   # the lighter outer band is the belly
    else:
        keep &= ~low
    pattern[ys[keep], xs[keep]] = True
    return pattern


def estimate_masks(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fish, pattern) boolean masks estimated from one HxWx3 uint8 crop; pattern is inside fish."""
    fish = estimate_fish_mask(image)
    return fish, estimate_pattern_mask(image, fish) & fish

"""The automatic mask estimate finds a drawn fish and keeps the pattern inside it."""
import numpy as np
import pytest

from zfutils.data.mask_estimate import estimate_masks, estimate_pattern_mask


def _synthetic_fish(size=128, angle=0.3, shift=(0, 0)):
    """A light aquarium with an ellipse fish carrying dark longitudinal stripes and a light belly."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = size / 2 + shift[0], size / 2 + shift[1]
    c, s = np.cos(angle), np.sin(angle)
    u = (x - cx) * c + (y - cy) * s        # along the body
    v = -(x - cx) * s + (y - cy) * c       # across the body
    a, b = size * 0.4, size * 0.12
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1
    rng = np.random.default_rng(0)
    image = np.full((size, size, 3), (225, 228, 232), float) + rng.normal(0, 3, (size, size, 3))
    body = np.array([200, 180, 120])        # yellowish interstripes
    stripe = np.array([40, 50, 110])        # dark blue stripes
    is_stripe = (np.sin(v / b * np.pi * 2.5) > 0.2) & inside
    image[inside] = body
    image[is_stripe] = stripe
    image[inside & (v > 0.7 * b)] = (235, 230, 215)  # light belly
    return np.clip(image, 0, 255).astype(np.uint8), inside


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("angle,shift", [(0.0, (0, 0)), (0.5, (0, 0)), (-0.8, (6, -4))])
def test_fish_mask_matches_ellipse_and_pattern_inside(angle, shift):
    image, truth = _synthetic_fish(angle=angle, shift=shift)
    fish, pattern = estimate_masks(image)
    assert fish.dtype == bool and fish.shape == truth.shape
    assert _iou(fish, truth) > 0.7
    assert pattern.any()
    assert not (pattern & ~fish).any()
    assert pattern.sum() < 0.8 * fish.sum()  # ends and belly were removed


def test_pattern_leaves_out_the_ends_of_the_fish():
    image, truth = _synthetic_fish(angle=0.0)
    _, pattern = estimate_masks(image)
    cols = np.nonzero(truth.any(axis=0))[0]
    length = cols[-1] - cols[0]
    pcols = np.nonzero(pattern.any(axis=0))[0]
    assert pcols[0] > cols[0] + 0.1 * length and pcols[-1] < cols[-1] - 0.1 * length


def test_pattern_avoids_the_light_belly():
    image, truth = _synthetic_fish(angle=0.0)
    belly = truth & (np.mgrid[0:128, 0:128][0] > 64 + 0.7 * 128 * 0.12)
    _, pattern = estimate_masks(image)
    assert (pattern & belly).sum() <= 0.05 * belly.sum()


def test_belly_trim_uses_the_lighter_side():
    """Given the exact silhouette, the outer band on the light (lower) side is trimmed."""
    image, truth = _synthetic_fish(angle=0.0)
    pattern = estimate_pattern_mask(image, truth)
    rows = np.nonzero(pattern.any(axis=1))[0]
    centre = 64
    assert (rows - centre).max() < (centre - rows).max()
    flipped = estimate_pattern_mask(image[::-1].copy(), truth[::-1].copy())
    assert np.array_equal(np.nonzero(flipped.any(axis=1))[0], sorted(127 - rows))


def test_flat_image_gives_empty_masks():
    image = np.full((64, 64, 3), 200, np.uint8)
    fish, pattern = estimate_masks(image)
    assert not fish.any() and not pattern.any()


def test_rejects_grey_image():
    with pytest.raises(ValueError, match="HxWx3"):
        estimate_masks(np.zeros((32, 32), np.uint8))

import numpy as np

from tests.test_torchsets import split_data
from zfutils import plots


def test_pick_samples_round_robin_over_identities(tmp_path):
    data = split_data(tmp_path)
    picked = plots.pick_samples(data.meta, 6, seed=0)
    assert len(picked) == 6 and picked["identity"].value_counts().tolist() == [2, 2, 2]
    assert picked.equals(plots.pick_samples(data.meta, 6, seed=0))
    assert len(plots.pick_samples(data.meta, 1000)) == len(data.meta)


def test_overlay_marks_pattern_and_fish_outline():
    image = np.zeros((10, 10, 3), np.uint8)
    fish = np.zeros((10, 10), bool)
    fish[2:8, 2:8] = True
    pattern = np.zeros_like(fish)
    pattern[4:6, 4:6] = True
    out = plots.overlay_masks(image, fish, pattern)
    assert np.allclose(out[2, 2], plots.FISH_COLOUR)           # outline
    assert np.allclose(out[3, 3], 0)                           # inside the fish, not pattern: untouched
    assert out[4, 4, 0] > 0.4 and np.allclose(out[0, 0], 0)    # pattern tinted, background untouched


def test_sample_grid_and_class_balance_figures(tmp_path):
    data = split_data(tmp_path)
    fig = plots.sample_grid(data, n=6)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 12  # 6 images + 6 mask overlays
    fig = plots.class_balance(data.meta)
    bars = fig.axes[0].containers
    assert sum(sum(b.datavalues) for b in bars) == len(data.meta)

"""Training jitter and the learning-rate schedule (zfutils/train/augment.py)."""
import math

import pytest
import torch

from zfutils import config
from zfutils.train.augment import Jitter, image_keys, lr_factor, recipe


def test_jitter_is_fixed_by_the_key_and_differs_between_keys():
    images = torch.rand(3, 3, 24, 24)
    jitter = Jitter()
    keys = image_keys(seed=0, epoch=1, index=torch.tensor([5, 6, 7]))
    first, again = jitter(images, keys), jitter(images, keys)
    assert torch.equal(first, again)
    # an image's jitter depends on its key alone, not on its place in the batch (ranks, resumes)
    alone = jitter(images[1:2], keys[1:2])
    assert torch.allclose(alone, first[1:2], atol=1e-6)
    other = jitter(images, image_keys(seed=0, epoch=2, index=torch.tensor([5, 6, 7])))
    assert not torch.allclose(other, first)
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 1


def test_zero_jitter_is_the_identity_and_each_knob_does_its_part():
    images = torch.rand(2, 3, 16, 16) * 0.8 + 0.1  # no pixel near 0, where a ratio says nothing
    keys = torch.tensor([1, 2])
    none = Jitter(rotate=0, scale=0, shift=0, brightness=0, contrast=0, saturation=0)
    assert torch.allclose(none(images, keys), images, atol=1e-5)
    # brightness alone scales every pixel of an image by one factor within the bound
    bright = Jitter(rotate=0, scale=0, shift=0, brightness=0.2, contrast=0, saturation=0)(images * 0.5, keys)
    ratio = bright / (images * 0.5)
    assert torch.allclose(ratio[0], ratio[0].flatten()[0].expand_as(ratio[0]), atol=1e-4)
    assert 0.8 - 1e-6 <= float(ratio[0].flatten()[0]) <= 1.2 + 1e-6
    # a shift moves a bright dot, and reflected borders bring in no black
    dot = torch.zeros(1, 3, 32, 32)
    dot[..., 16, 16] = 1
    moved = Jitter(rotate=0, scale=0, shift=0.1, brightness=0, contrast=0, saturation=0)(dot + 0.5, torch.tensor([3]))
    assert moved.min() >= 0.5 - 1e-5
    assert not torch.allclose(moved, dot + 0.5)


def test_lr_factor_warms_up_then_decays_to_zero():
    total, warm = 100, 10
    factors = [lr_factor("cosine", i, total, warm) for i in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor("cosine", total, total, warm) == pytest.approx(0.0)
    assert {lr_factor("constant", i, total, warm) for i in range(total)} == {1.0}
    with pytest.raises(ValueError, match="unknown classify.schedule 'step'"):
        lr_factor("step", 0, 1, 0)


def test_recipe_reads_the_config():
    cfg = config.resolve("smoke", None, {"classify.augment.enabled": True, "classify.augment.rotate": 2.0,
                                         "classify.schedule": "cosine", "classify.warmup_epochs": 1})
    options = recipe(cfg["classify"])
    assert options["jitter"] == Jitter(rotate=2.0, scale=0.1, shift=0.05, brightness=0.2, contrast=0.2, saturation=0.2)
    assert options["schedule"] == "cosine" and options["warmup_epochs"] == 1.0
    assert recipe(config.resolve("paper", None, {})["classify"])["jitter"] is None
    with pytest.raises(ValueError, match="unknown classify.schedule"):
        recipe({**cfg["classify"], "schedule": "steps"})

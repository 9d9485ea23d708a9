import pytest
import torch

from zfutils import losses


def test_weighted_l1_hole_and_known_weights():
    target = torch.zeros(1, 3, 4, 4)
    output = torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # half the image is hole
    assert losses.weighted_l1(output, target, mask) == 1.0
    assert losses.weighted_l1(output, target, mask, hole=0.0, known=10.0) == 5.0  # LaMa: only known pixels
    assert losses.weighted_l1(output, target, mask, per_mask_mean=True) == 2.0    # EdgeConnect: / hole fraction


def test_hinge_and_nsgan_signs():
    high, low = torch.full((2, 1, 3, 3), 5.0), torch.full((2, 1, 3, 3), -5.0)
    assert losses.hinge_d(real=high, fake=low) == 0.0 and losses.hinge_d(real=low, fake=high) == 12.0
    assert losses.hinge_g(low) == 5.0
    assert losses.nsgan_d(high, low) < 0.02 < losses.nsgan_d(low, high)
    assert losses.nsgan_g(high) < 0.01 < losses.nsgan_g(low)


def test_nsgan_mask_as_fake_target_treats_known_pixels_as_real():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    fake = torch.full((1, 1, 8, 8), 10.0)  # D says "real" everywhere
    fake[..., 4:, :] = -10.0               # ... except in the hole: a perfect D under LaMa's target
    assert losses.nsgan_d(torch.full_like(fake, 10.0), fake, mask) < 1e-3
    assert losses.nsgan_d(torch.full_like(fake, 10.0), fake) > 4.0  # without the mask: half wrong


def test_soft_mask_target_is_a_blurred_mask_fading_at_borders():
    mask = torch.zeros(1, 1, 96, 96)
    mask[..., 32:64, 32:64] = 1
    target = losses.soft_mask_target(mask)
    assert target.shape == mask.shape
    assert target[0, 0, 48, 48] > target[0, 0, 48, 20] > target[0, 0, 48, 2] > 0
    assert abs(target.sum() - mask.sum()) / mask.sum() < 0.05  # blur keeps the mass inside a big image
    full = losses.soft_mask_target(torch.ones(1, 1, 96, 96))
    assert full[0, 0, 0, 0] < 0.6 < full[0, 0, 48, 48]  # zero padding: fades at the border


def test_smgan_targets():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    logits_small = torch.zeros(1, 1, 6, 6)
    assert losses.smgan_d(real=logits_small, fake=logits_small, mask=mask) > 0  # fake should match the soft mask
    perfect_fake = losses.soft_mask_target(mask)
    assert losses.smgan_d(real=torch.zeros(1, 1, 64, 64), fake=perfect_fake, mask=mask) < 1e-10
    assert losses.smgan_g(torch.ones(1, 1, 6, 6), mask) < 1e-12
    assert torch.isclose(losses.smgan_g(torch.zeros(1, 1, 6, 6), mask), torch.tensor(1.0))


def test_feature_matching_and_style_perceptual():
    a = [torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 2, 2)]
    b = [torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2, 2)]
    assert losses.feature_matching(a, b) == 0.5
    assert losses.feature_matching(a, b, reduction="sum") == 1.0   # EdgeConnect's edge model sums its 5 layers
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        losses.feature_matching(a, b, reduction="max")
    assert losses.perceptual(a, b, weights=[2.0, 1.0]) == 2.0
    assert losses.style(a, a) == 0 and losses.style(a, b) > 0
    g = losses.gram(torch.ones(1, 2, 2, 2))
    assert torch.allclose(g, torch.full((1, 2, 2), 4 / 8))


def test_r1_penalty_is_the_squared_gradient_norm():
    x = torch.randn(3, 1, 2, 2, requires_grad=True)
    logits = (2 * x).sum(dim=(1, 2, 3))  # gradient 2 everywhere: |g|^2 = 4 * 4 pixels
    assert torch.isclose(losses.r1_penalty(logits, x), torch.tensor(16.0))

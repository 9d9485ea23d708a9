"""The inpainting losses of the four originals, as plain functions of tensors.

Which terms a backbone uses, and their weights, come from its module's `TRAINING` facts and can
be changed in params (`inpaint.losses`); zfutils.train.recipe assembles them. Images are in [0, 1]
here; a term that the original computed in [-1, 1] says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def weighted_l1(output: Tensor, target: Tensor, mask: Tensor, *, hole: float = 1.0, known: float = 1.0,
                per_mask_mean: bool = False) -> Tensor:
    """Mean absolute error with weight `hole` inside the mask (1 = hole) and `known` outside.
    `per_mask_mean` divides by the hole fraction, as EdgeConnect does."""
    weights = hole * mask + known * (1 - mask)
    loss = (weights * (output - target).abs()).mean()
    return loss / mask.mean().clamp_min(1e-8) if per_mask_mean else loss


# --- adversarial losses: each returns (discriminator loss, generator loss) -------------------

def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    """DeepFillV2 / SN-PatchGAN discriminator hinge loss."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def nsgan_d(real: Tensor, fake: Tensor, mask: Tensor | None = None) -> Tensor:
    """Non-saturating GAN (EdgeConnect; LaMa with `mask` = the hole, downsampled to the logits:
    known pixels of a fake image count as real, as LaMa's `mask_as_fake_target`)."""
    real_loss = F.softplus(-real).mean()
    if mask is None:
        return real_loss + F.softplus(fake).mean()
    m = F.interpolate(mask, size=fake.shape[-2:], mode="nearest")  # LaMa: mask_scale_mode nearest
    return real_loss + (m * F.softplus(fake) + (1 - m) * F.softplus(-fake)).mean()


def nsgan_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def soft_mask_target(mask: Tensor, kernel: int = 71, sigma: float = 10.0) -> Tensor:
    """AOT-GAN's soft label for fake pixels: the hole mask blurred by a Gaussian with zero padding
    (so it fades at the image border), asking D to find the filled region, softly."""
    k = gaussian_kernel(kernel, sigma).to(mask)
    pad = kernel // 2
    blurred = F.conv2d(mask, k.view(1, 1, 1, -1), padding=(0, pad))
    return F.conv2d(blurred, k.view(1, 1, -1, 1), padding=(pad, 0))


def _to_mask_size(logits: Tensor, mask: Tensor) -> Tensor:
    if logits.shape[-2:] == mask.shape[-2:]:
        return logits
    return F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=True)


def smgan_d(real: Tensor, fake: Tensor, mask: Tensor) -> Tensor:
    """AOT-GAN soft-mask least-squares loss, discriminator side, as its code computes it: logits
    upsampled to the image, real -> 0, fake -> the blurred hole mask."""
    fake, real = _to_mask_size(fake, mask), _to_mask_size(real, mask)
    return F.mse_loss(fake, soft_mask_target(mask)) + F.mse_loss(real, torch.zeros_like(real))


def smgan_g(fake: Tensor, mask: Tensor) -> Tensor:
    """Generator side: the composite's logits pushed to 1 everywhere. (The original multiplies the
    already averaged loss by mask / mean(mask) and averages again, which cancels out.)"""
    fake = _to_mask_size(fake, mask)
    return F.mse_loss(fake, torch.ones_like(fake))


ADVERSARIAL = {"hinge": (hinge_d, hinge_g), "nsgan": (nsgan_d, nsgan_g), "smgan": (smgan_d, smgan_g)}


def feature_matching(real_feats: list[Tensor], fake_feats: list[Tensor], distance: str = "l1",
                     reduction: str = "mean") -> Tensor:
    """The L1 (EdgeConnect) or squared (LaMa, `distance="l2"`) distance between discriminator
    features of real and fake images (real ones detached), per layer, then the mean over layers
    (LaMa, losses/feature_matching.py) or, with `reduction="sum"`, their sum (EdgeConnect's edge
    model, src/models.py)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"feature_matching reduction must be 'mean' or 'sum', got {reduction!r}")
    if not real_feats:
        return fake_feats[0].new_zeros(()) if fake_feats else torch.zeros(())
    dist = {"l1": F.l1_loss, "l2": F.mse_loss}[distance]
    total = sum(dist(f, r.detach()) for r, f in zip(real_feats, fake_feats))
    return total / len(real_feats) if reduction == "mean" else total


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 gradient penalty: squared gradient norm of D's output on real images (LaMa)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def gram(features: Tensor) -> Tensor:
    b, c, h, w = features.shape
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def perceptual(out_feats: list[Tensor], tgt_feats: list[Tensor], weights=None) -> Tensor:
    """L1 between feature maps of output and target, one weight per layer."""
    weights = weights or [1.0] * len(out_feats)
    return sum(w * F.l1_loss(o, t.detach()) for w, o, t in zip(weights, out_feats, tgt_feats))


def style(out_feats: list[Tensor], tgt_feats: list[Tensor]) -> Tensor:
    """L1 between Gram matrices of the feature maps (texture statistics)."""
    return sum(F.l1_loss(gram(o), gram(t.detach())) for o, t in zip(out_feats, tgt_feats))

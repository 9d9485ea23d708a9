"""AOT-GAN (Zeng et al., "Aggregated Contextual Transformations for High-Resolution Image
Inpainting"; researchmm/AOT-GAN-for-Inpainting @ 2cd1afd) as a backbone of the study.

The encoder, as the study defines it, is the generator's own `G.encoder`: reflection padding 3,
then three conv + ReLU (7x7 to 64 ch, 4x4 stride 2 to 128, 4x4 stride 2 to 256), no norm layers.
It reads the 4-channel `cat([xm, m])` that the official forward builds (xm = masked image in
[-1, 1] with holes set to +1, m = 1 in holes; for classification the mask is all zero, so the
input is the image in [-1, 1] plus a zero channel). Its output is 256 channels at H/4 x W/4, so
global pooling gives a 256-d embedding (`embed_dim`: 256 x width, rounded to a multiple of 4).

Parameter counts at official size (measured): generator 15,200,835 (8 AOT blocks, rates
1/2/4/8), encoder 668,352, discriminator 2,763,777 (weight_orig + last conv; the spectral-norm
u/v vectors are buffers).

The layers live in aotgan_blocks.py; this module holds the input convention, the checkpoint
format, the training facts and the registry entry.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zfutils.models.aotgan_blocks import BLOCKS, RATES, Discriminator, InpaintGenerator, scaled
from zfutils.models.checkpoints import read_checkpoint, take
from zfutils.models.registry import InpaintResult, register_inpainting

CHECKPOINT_HINT = (
    "download the places2 (or CELEBA-HQ) folder linked under 'Pretrained models' in "
    "https://github.com/researchmm/AOT-GAN-for-Inpainting#pretrained-models and pass its G0000000.pt "
    "(a raw generator state_dict; a D0000000.pt beside it is read as the discriminator when present)")

# Facts of the original training set-up, as data for the loss and trainer code.
TRAINING = {
    # src/utils/option.py (--optimizer ADAM, --lrg, --lrd, --beta1, --beta2);
    # src/trainer/trainer.py builds one torch.optim.Adam per network, no weight decay, no schedule
    "optimizer": {"name": "adam", "lr_generator": 1e-4, "lr_discriminator": 1e-4,
                  "betas": (0.5, 0.999), "weight_decay": 0.0, "lr_schedule": None},
    # src/utils/option.py --batch_size, --iterations, --image_size, --mask_type, --seed
    "batch_size": 8, "iterations": 1_000_000, "image_size": 512, "masks": "pconv (irregular masks)",
    "seed": 2021,
    # src/trainer/trainer.py: every iteration both networks step once, on the same batch
    "d_steps_per_g_step": 1,
    # src/model/common.py BaseNetwork.init_weights (called by both networks): normal, gain 0.02
    "init": {"conv_weight": ("normal", 0.0, 0.02), "bias": 0.0},
    # src/utils/option.py --rec_loss "1*L1+250*Style+0.1*Perceptual" and --adv_weight 0.01;
    # src/trainer/trainer.py: reconstruction losses compare the raw output (not the composite)
    # with the image, over the whole image (no hole weighting)
    "loss_weights": {"l1": 1.0, "style": 250.0, "perceptual": 0.1, "adversarial": 0.01,
                     "feature_matching": 0.0, "r1": 0.0, "gradient_penalty": 0.0},
    "reconstruction_target": "output",
    # src/loss/loss.py L1: torch.nn.L1Loss (mean over every pixel and channel)
    "l1": {"masked": False, "reduction": "mean"},
    # src/loss/common.py VGG19 and src/loss/loss.py Perceptual / Style: torchvision ImageNet
    # VGG19, input (x + 1) / 2 then ImageNet mean/std, no resize; L1 between feature maps
    "vgg": {"net": "vgg19", "weights": "imagenet", "input": "(x+1)/2, ImageNet mean/std",
            "resize": None},
    "perceptual": {"layers": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
                   "layer_weights": (1.0, 1.0, 1.0, 1.0, 1.0), "distance": "l1"},
    "style": {"layers": ("relu2_2", "relu3_4", "relu4_4", "relu5_2"),
              "gram": "F F^T / (c*h*w)", "distance": "l1"},
    # src/loss/loss.py smgan (option.py --gan_type smgan), called in src/trainer/trainer.py as
    # adv_loss(netD, comp_img, images, masks) with comp = (1-m)*image + m*output
    "adversarial": {
        "type": "smgan",                  # soft-mask least-squares (nn.MSELoss, mean)
        "discriminator_input": "image in [-1,1], 3 ch, no mask",
        "fake": "composite",              # D and G both see the composite, not the raw output
        # the logit map (H/8-2) is upsampled to the mask's size; the mask is never downsampled
        "logit_resize": {"mode": "bilinear", "align_corners": True, "to": "mask size"},
        # D target on fakes: the full-resolution mask blurred by a normalised 71x71 Gaussian
        # (sigma 10, separable outer product of a 1-D kernel, zero padding 35, per channel)
        "fake_label": {"blur_kernel": 71, "blur_sigma": 10.0, "padding": "zeros", "of": "mask"},
        "real_label": 0.0,
        "generator_label": 1.0,
        # d_loss = mse(D(comp.detach()), blur(m)) + mse(D(image), 0);  g_loss = mse(D(comp), 1)
        # The code multiplies the already-reduced g MSE by m / mean(m) and averages, which
        # cancels: the mask weighting written in the paper has no effect in the code.
        "generator_mask_weighting_effective": False,
        # The paper writes real label 1 and fake target blur(1 - m); the code uses 0 and blur(m)
        # while keeping generator label 1 (questioned in the repo's issue #2, unanswered).
        "paper_labels": {"real": 1.0, "fake": "blur(1 - m)", "generator": 1.0, "generator_weight": "m"},
        # trainer.py zeroes both grads, backprops the G total (advg reaches D's parameters too,
        # because D(comp) is not detached) and then d_loss, then steps G and D
        "g_loss_grads_reach_discriminator": True,
    },
}


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> InpaintGenerator:
    """The official InpaintGenerator at `width` x channels with `blocks` AOT blocks (default 8)."""
    return InpaintGenerator(width=width, blocks=BLOCKS if blocks is None else blocks, rates=RATES)


def build_discriminator(*, width: float = 1.0) -> Discriminator:
    return Discriminator(width=width)


def network_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The official masked image: [-1, 1], holes set to +1 (src/test.py, trainer.py)."""
    return (2 * image - 1) * (1 - mask) + mask


def encoder_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What G.encoder reads: the masked image and the mask on channels (4 ch)."""
    return torch.cat([network_input(image, mask), mask], 1)


def inpaint(generator: InpaintGenerator, image: torch.Tensor, mask: torch.Tensor) -> InpaintResult:
    """Run the generator in its own convention; sides are padded on the bottom/right up to a
    multiple of 4 and at least `generator.min_side` (the padding is marked as hole), then cropped."""
    h, w = image.shape[-2:]
    side = generator.min_side
    pad_h, pad_w = max(side, -(-h // 4) * 4) - h, max(side, -(-w // 4) * 4) - w
    x, m = network_input(image, mask), mask
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=1.0)
        m = F.pad(m, (0, pad_w, 0, pad_h), value=1.0)
    out = (generator(x, m)[..., :h, :w] + 1) / 2
    composite = (1 - mask) * image + mask * out
    return InpaintResult(stages=[out], output=out, composite=composite)


def discriminate(discriminator: Discriminator, image: torch.Tensor, mask: torch.Tensor):
    """The official call netD(image in [-1, 1]); the mask is not an input of AOT-GAN's D (it
    only shapes the smgan target, see TRAINING). No intermediate features (no feature matching)."""
    if min(image.shape[-2:]) < 24:
        raise ValueError(f"AOT-GAN's discriminator needs sides of at least 24 pixels, got {tuple(image.shape[-2:])}")
    return discriminator(2 * image - 1), []


def encoder(generator: InpaintGenerator) -> nn.Module:
    return generator.encoder


def cam_layer(generator: InpaintGenerator) -> nn.Module:
    """The encoder's last conv (4x4 stride 2 to 256 ch)."""
    return [layer for layer in generator.encoder if isinstance(layer, nn.Conv2d)][-1]


def embed_dim(width: float = 1.0) -> int:
    return scaled(256, width)


def _generator_file(path: Path) -> Path:
    """A G*.pt file, or the newest one in a folder (as the official trainer resumes)."""
    if path.is_dir():
        found = sorted(path.glob("G*.pt"))
        if not found:
            raise FileNotFoundError(f"no G*.pt generator checkpoint in {path}; {CHECKPOINT_HINT}")
        return found[-1]
    return path


def load_pretrained(path, *, trust_pickle: bool = False) -> dict:
    """{"generator": state_dict, "discriminator": state_dict or None} from the official raw
    state_dict files: G<iteration>.pt, and D<iteration>.pt beside it when it exists."""
    gen_path = _generator_file(Path(path).expanduser())
    generator = dict(take(read_checkpoint(gen_path, how_to_get=CHECKPOINT_HINT, trust_pickle=trust_pickle),
                          None, gen_path))
    dis_path = gen_path.with_name("D" + gen_path.name[1:]) if gen_path.name.startswith("G") else None
    discriminator = None
    if dis_path is not None and dis_path.is_file():
        discriminator = dict(take(read_checkpoint(dis_path, how_to_get=CHECKPOINT_HINT, trust_pickle=trust_pickle),
                                  None, dis_path))
    return {"generator": generator, "discriminator": discriminator}


BACKBONE = register_inpainting("aotgan", globals(), checkpoint_hint=CHECKPOINT_HINT, missing_fill=(1.0, 1.0, 1.0))

"""DeepFillV2 (Yu et al. 2019, gated convolution), from the PyTorch port nipponjo/deepfillv2-pytorch
at commit 4899fd38: model/networks.py (this backbone's generator, weights states_pt_places2.pth)
and model/networks_tf.py (the converted TensorFlow weights states_tf_places2.pth).

Two variants, one backbone: `build_generator(variant="pt")` (default, networks.py) or
`variant="tf"` (networks_tf.py; TF padding and flat key names). `load_pretrained` tells them apart
by their keys, as the official test.py does, and returns the one it found under "variant":
`build_generator(variant=loaded["variant"])` is the model those weights fit. Every other function
here works with either generator.

Input: x = cat([(2*image-1)*(1-mask), ones, ones*mask]) (5 channels, holes = 0, range [-1, 1]);
both stages end in tanh; stage 2 refines x_stage1*mask + x[:, :3]*(1-mask); the official
composite is image*(1-mask) + x_stage2*mask. InpaintResult.stages = [coarse, fine].

Encoder (the study's definition): the first five gated convolutions of the coarse stage on that
5-channel input, stage1.conv1 -> down_block1.conv1_downsample -> down_block1.conv2 ->
down_block2.conv1_downsample -> down_block2.conv2 (tf: conv1 -> conv2_downsample -> conv3 ->
conv4_downsample -> conv5). Output: 96 channels (2 * cnum) at H/4 x W/4; a 96-d embedding after
global pooling. Parameters at official size (measured): generator 4,052,478 (plus the 9-value
fuse_weight buffer), encoder 317,664, discriminator 5,946,816; the tf variant has the same counts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zfutils.models import checkpoints
from zfutils.models.deepfillv2_layers import Discriminator
from zfutils.models.deepfillv2_net import DeepFillGenerator
from zfutils.models.deepfillv2_tf import DeepFillTFGenerator
from zfutils.models.registry import InpaintResult, register_inpainting

Tensor = torch.Tensor

GENERATORS = {"pt": DeepFillGenerator, "tf": DeepFillTFGenerator}
OFFICIAL_CNUM, OFFICIAL_DILATED, OFFICIAL_DCNUM = 48, 4, 64
HOW_TO_GET = ("download it from the links in nipponjo/deepfillv2-pytorch's README, 'Pretrained models' "
              "(Places2: states_pt_places2.pth for networks.py, or the converted TF weights states_tf_places2.pth)")
CHECKPOINT_HINT = ("nipponjo/deepfillv2-pytorch README, 'Pretrained models' (Google Drive): pass "
                   "states_pt_places2.pth (fine-tuned, networks.py) or states_tf_places2.pth (converted TF "
                   "weights, networks_tf.py); load_pretrained reports which under 'variant'")

# Facts of the original training (configs/train.yaml and configs/train-places.yaml agree on all of them;
# train.py, model/losses.py). Images there are in [-1, 1].
TRAINING = {
    # train.py: torch.optim.Adam for G and D; configs/train.yaml g_lr, g_beta1, g_beta2, d_lr, d_beta1, d_beta2
    "optimizer": {"name": "adam", "lr_g": 1e-4, "lr_d": 1e-4, "betas_g": (0.5, 0.999), "betas_d": (0.5, 0.999)},
    # configs/train.yaml: batch_size, img_shapes, max_iters
    "batch_size": 16, "image_size": 256, "max_iters": 1_000_000,
    # configs/train.yaml gan_loss 'hinge', gan_loss_alpha 1.0; model/losses.py: hinge_loss_d =
    # 0.5*mean(relu(1 - real)) + 0.5*mean(relu(1 + fake)), hinge_loss_g = -mean(fake).
    # train.py: D sees cat([image, mask]); fakes are the composite x_stage2*mask + image*(1-mask);
    # real and fake go through D as one batch; the D step comes before the G step.
    "adversarial": {"type": "hinge", "weight": 1.0, "d_terms_factor": 0.5, "fake": "composite",
                    "d_input": "cat([image, mask])", "order": "d_then_g"},
    # configs/train.yaml ae_loss True, l1_loss_alpha 1.0; train.py: l1_loss_alpha * mean|real - x_stage1|
    # + l1_loss_alpha * mean|real - x_stage2|, over every pixel (no hole weighting), in [-1, 1]
    # (twice the same L1 computed on [0, 1] images: weight 2.0 there).
    "l1": {"weight": 1.0, "stages": (1.0, 1.0), "hole": 1.0, "known": 1.0, "range": "[-1, 1]",
           "weight_in_unit_range": 2.0},
    # none of these exist in the original (train.py sums only the two L1 terms and the GAN term)
    "perceptual": 0.0, "style": 0.0, "feature_matching": 0.0, "gradient_penalty": 0.0,
    # model/networks.py Conv2DSpectralNorm: one power iteration per D call, weight divided in place
    "discriminator_norm": "spectral",
    # train.py + utils/misc.py: one mask per batch, a random box (configs/train.yaml height/width 128,
    # max_delta 32) OR-ed with brush strokes (random_bbox, bbox2mask, brush_stroke_mask)
    "masks": "box_or_brush_per_batch",
}


def scaled_cnum(width: float, official: int, multiple: int) -> int:
    """round(official * width) to a positive multiple of `multiple`."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return multiple * max(1, round(official * width / multiple))


def build_generator(*, width: float = 1.0, blocks: int | None = None, variant: str = "pt") -> nn.Module:
    """The generator; `blocks` = dilated convs per bottleneck (0-4, official 4), `variant` "pt"
    (networks.py) or "tf" (networks_tf.py)."""
    if variant not in GENERATORS:
        raise ValueError(f"unknown DeepFillV2 variant '{variant}'; known: {', '.join(GENERATORS)}")
    dilated = OFFICIAL_DILATED if blocks is None else blocks
    if not 0 <= dilated <= OFFICIAL_DILATED:
        raise ValueError(f"blocks={blocks}: DeepFillV2 has at most {OFFICIAL_DILATED} dilated convs per "
                         "bottleneck (more would need names the official model does not have)")
    return GENERATORS[variant](cnum=scaled_cnum(width, OFFICIAL_CNUM, 4), dilated=dilated)


def build_discriminator(*, width: float = 1.0, variant: str = "pt") -> nn.Module:
    """The SN-PatchGAN discriminator (same keys in both variants; "tf" pads the TF way)."""
    if variant not in GENERATORS:
        raise ValueError(f"unknown DeepFillV2 variant '{variant}'; known: {', '.join(GENERATORS)}")
    return Discriminator(cnum=scaled_cnum(width, OFFICIAL_DCNUM, 1), tf_same=variant == "tf")


def variant_of(state) -> str:
    """"pt" for networks.py keys (stage1.*, stage2.*), else "tf" (as the official test.py decides)."""
    return "pt" if any(k.startswith(("stage1.", "stage2.")) for k in state) else "tf"


def load_pretrained(path, *, trust_pickle: bool = False) -> dict:
    """{"generator", "discriminator" (None if the file has no 'D'), "variant"} from a train.py-style
    dict {'G', 'D', 'G_optim', 'D_optim', 'n_iter'}."""
    container = checkpoints.read_checkpoint(path, how_to_get=HOW_TO_GET, trust_pickle=trust_pickle)
    generator = dict(checkpoints.take(container, "G", path))
    has_d = isinstance(container, dict) and "D" in container
    discriminator = dict(checkpoints.take(container, "D", path)) if has_d else None
    return {"generator": generator, "discriminator": discriminator, "variant": variant_of(generator)}


def network_input(image: Tensor, mask: Tensor) -> Tensor:
    """cat([(2*image-1)*(1-mask), ones, ones*mask]): the official 5-channel input."""
    ones = torch.ones_like(mask)
    return torch.cat([(2 * image - 1) * (1 - mask), ones, ones * mask], dim=1)


def pad_to(x: Tensor, multiple: int, mode: str) -> Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, [0, -w % multiple, 0, -h % multiple], mode=mode)


def inpaint(generator: nn.Module, image: Tensor, mask: Tensor) -> InpaintResult:
    """Both stages in [0, 1]; sizes that are not multiples of 8 are padded (image replicated,
    mask 0) and cropped back."""
    h, w = image.shape[-2:]
    padded_image, padded_mask = pad_to(image, 8, "replicate"), pad_to(mask, 8, "constant")
    x_stage1, x_stage2 = generator(network_input(padded_image, padded_mask), padded_mask)
    stages = [(s[..., :h, :w] + 1) / 2 for s in (x_stage1, x_stage2)]
    return InpaintResult(stages=stages, output=stages[-1], composite=image * (1 - mask) + stages[-1] * mask)


def discriminate(discriminator: nn.Module, image: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Flattened patch logits of cat([image in [-1, 1], mask]); the original uses no D features.
    Like the original, each call renormalises D's weights in place (see SNConv2d)."""
    return discriminator(torch.cat([2 * image - 1, mask], dim=1)), []


class Encoder(nn.Module):
    """The five gated convs of the coarse stage, sharing the generator's parameters."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def encoder(generator: nn.Module) -> nn.Module:
    return Encoder(generator.encoder_layers())


def cam_layer(generator: nn.Module) -> nn.Module:
    """The encoder's last gated conv (its output, after gating, is the encoder's feature map)."""
    return generator.encoder_layers()[-1]


def embed_dim(width: float = 1.0) -> int:
    return 2 * scaled_cnum(width, OFFICIAL_CNUM, 4)


BACKBONE = register_inpainting("deepfillv2", globals(), checkpoint_hint=CHECKPOINT_HINT, missing_fill=(0.5, 0.5, 0.5),
                               encoder_input=network_input)

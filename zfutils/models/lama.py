"""LaMa big-lama (advimman/lama at 786f593): FFC ResNet generator, PatchGAN discriminator, the
official best.ckpt reader, and the study's encoder.

Generator (`configs/training/big-lama.yaml`, kind ffc_resnet): input cat([image*(1-mask), mask])
(holes = 0, 4 ch, [0, 1]); ReflectionPad(3) + 7x7 conv/BN/ReLU to 64 ch; three stride-2 3x3
conv/BN/ReLU to 128, 256 and 512 ch, the last one splitting its output into a local (128 ch) and
a global (384 ch) stream; 18 FFC residual blocks (global ratio 0.75, Fourier unit with
norm='ortho'); three transposed convs back to 64 ch; ReflectionPad(3) + 7x7 conv; sigmoid.
All convs of the FFC layers pad by reflection; BatchNorm everywhere (eps 1e-5).

Encoder, as the study defines it: `G.model[0:5]` = padding + 3 x (conv + BN + ReLU) + the first
FFC (the downsampling FFC_BN_ACT with ratio_gout 0.75), its local (128 ch) and global (384 ch)
outputs concatenated: 512 channels at H/8 x W/8, so 512 numbers per image after global pooling.
At official size the generator has 50,975,875 parameters and the encoder 1,562,752
(G.model[0:6], with the first FFC residual block, would have 4,221,312). The discriminator has
6,962,369.

Scale knobs: `width` multiplies ngf (64) and every channel count with it; the bottleneck is
8 * ngf, split 2:6 (local:global), so the 0.75 ratio always gives whole channels. `blocks` below
18 leaves the unused residual slots empty (nn.Identity) so the upsampling layers keep their
official indices (`model.24` ...) and the keys stay a subset of the official ones.
"""
from __future__ import annotations

import torch
from torch import nn

from zfutils.models.checkpoints import CheckpointMismatch, read_checkpoint, strip_prefix, take
from zfutils.models.lama_discriminator import NLayerDiscriminator
from zfutils.models.lama_ffc import ConcatStreams, FFCBNAct, FFCResnetBlock
from zfutils.models.registry import InpaintResult, register_inpainting

Tensor = torch.Tensor

NGF = 64
BLOCKS = 18
GLOBAL_RATIO = 0.75
N_DOWN = 3
ENCODER_DEPTH = 5          # G.model[0:5]
MULTIPLE = 8               # the network downsamples by 2**N_DOWN
MIN_SIDE = 16              # reflection padding at H/8 needs at least 2 pixels there

HOW_TO_GET = ("download big-lama.zip (curl -LJO https://huggingface.co/smartywu/big-lama/resolve/main/big-lama.zip, "
              "linked from https://github.com/advimman/lama#inference), unzip it and pass big-lama/models/best.ckpt; "
              "it is a PyTorch-Lightning file that pickles its hyper-parameters, so it needs trust_pickle=True")

# The original's training recipe, as data (configs/training/big-lama.yaml and the files it
# includes: optimizers/default_optimizers.yaml, discriminator/pix2pixhd_nlayer.yaml,
# data/abl-04-256-mh-dist.yaml, trainer/any_gpu_large_ssim_ddp_final.yaml).
TRAINING = {
    # optimizers/default_optimizers.yaml (kind adam); betas are not set there, so torch's defaults
    # apply (trainers/base.py make_optimizer passes only lr).
    "optimizer": {
        "generator": {"name": "adam", "lr": 1e-3, "betas": (0.9, 0.999)},
        "discriminator": {"name": "adam", "lr": 1e-4, "betas": (0.9, 0.999)},
    },
    "gradient_clip_val": 1.0,            # trainer/any_gpu_large_ssim_ddp_final.yaml
    "max_epochs": 40,                    # same file, with limit_train_batches 25000 per epoch
    "batch_size": 10,                    # data/abl-04-256-mh-dist.yaml (per GPU, DDP)
    "image_size": 256,                   # same file (out_size)
    # trainers/default.py: every generator loss is computed on the raw prediction
    # (image_to_discriminator='predicted_image'), not on the composite.
    "loss_input": "predicted_image",
    "losses": {
        # big-lama.yaml losses.l1; losses/feature_matching.py masked_l1_loss:
        # mean(|pred - img| * (mask * weight_missing + (1 - mask) * weight_known)).
        "l1": {"weight_known": 10.0, "weight_missing": 0.0},
        "perceptual_vgg": {"weight": 0.0},    # big-lama.yaml losses.perceptual: off
        # big-lama.yaml losses.adversarial (kind r1); losses/adversarial.py NonSaturatingWithR1.
        # G: softplus(-D(fake)).mean() * weight.  D (weight NOT applied): softplus(-D(real))
        # + gp_coef * R1 + fake term, where with mask_as_fake_target the fake term is
        # softplus(D(fake)) * m + softplus(-D(fake)) * (1 - m), m = mask resized to the logit map
        # (nearest). R1 = mean over the batch of ||d sum(D(real)) / d real||^2, every D step.
        "adversarial": {"kind": "non_saturating_r1", "weight": 10.0, "gp_coef": 0.001,
                        "mask_as_fake_target": True, "allow_scale_mask": True, "mask_scale_mode": "nearest",
                        "extra_mask_weight_for_gen": 0.0},
        # big-lama.yaml losses.feature_matching; losses/feature_matching.py: mean over D blocks
        # of MSE(D features of fake, of real), no mask (pass_mask unset).
        "feature_matching": {"weight": 100.0},
        # big-lama.yaml losses.resnet_pl; losses/perceptual.py ResNetPL: ImageNet mean/std
        # normalisation, then the sum over the 4 stage outputs (layer1..layer4) of the MSE between
        # features of pred and target, times weight. Network: ADE20k-segmentation-pretrained
        # dilated ResNet50 encoder (models/ade20k, deep 3-conv stem), frozen, eval mode.
        "resnet_pl": {"weight": 30.0, "arch": "resnet50dilated",
                      "weights_file": "ade20k/ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth",
                      "weights_url": "http://sceneparsing.csail.mit.edu/model/pytorch/"
                                     "ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth",
                      "normalize_mean": (0.485, 0.456, 0.406), "normalize_std": (0.229, 0.224, 0.225)},
    },
}


class LamaGenerator(nn.Module):
    """FFCResNetGenerator with the official key layout (`model.<i>....`). `encoder_out` is a
    parameter-free concatenation the study's encoder ends with (its Grad-CAM target)."""

    def __init__(self, *, ngf: int = NGF, n_blocks: int = BLOCKS, input_nc: int = 4, output_nc: int = 3):
        super().__init__()
        cap = 16 * ngf                        # max_features, 1024 at ngf 64
        layers = [nn.ReflectionPad2d(3),
                  FFCBNAct(in_channels=input_nc, out_channels=ngf, kernel_size=7, ratio_gin=0, ratio_gout=0)]
        for i in range(N_DOWN):
            layers.append(FFCBNAct(in_channels=min(cap, ngf * 2 ** i), out_channels=min(cap, ngf * 2 ** (i + 1)),
                                   kernel_size=3, ratio_gin=0, ratio_gout=GLOBAL_RATIO if i == N_DOWN - 1 else 0,
                                   stride=2, padding=1))
        bottleneck = min(cap, ngf * 2 ** N_DOWN)
        for i in range(max(BLOCKS, n_blocks)):
            layers.append(FFCResnetBlock(channels=bottleneck, ratio=GLOBAL_RATIO) if i < n_blocks else nn.Identity())
        layers.append(ConcatStreams())
        for i in range(N_DOWN):
            cin, cout = min(cap, ngf * 2 ** (N_DOWN - i)), min(cap, ngf * 2 ** (N_DOWN - i - 1))
            layers += [nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)
        self.encoder_out = ConcatStreams()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def logits(self, x: Tensor) -> Tensor:
        """The output before the sigmoid (it saturates, so tests compare this)."""
        return self.model[:-1](x)


class LamaEncoder(nn.Module):
    """`G.model[0:depth]` (the generator's own layers) with the two streams concatenated."""

    def __init__(self, generator: LamaGenerator, *, depth: int = ENCODER_DEPTH):
        super().__init__()
        self.body = generator.model[:depth]
        self.concat = generator.encoder_out

    def forward(self, x: Tensor) -> Tensor:
        return self.concat(self.body(x))


def _ngf(width: float) -> int:
    if not width > 0:
        raise ValueError(f"lama: width must be positive, got {width}")
    return max(1, round(NGF * width))


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> LamaGenerator:
    n_blocks = BLOCKS if blocks is None else int(blocks)
    if n_blocks < 0:
        raise ValueError(f"lama: blocks must be >= 0, got {blocks}")
    return LamaGenerator(ngf=_ngf(width), n_blocks=n_blocks)


def build_discriminator(*, width: float = 1.0) -> NLayerDiscriminator:
    ndf = _ngf(width)
    return NLayerDiscriminator(ndf=ndf, max_features=8 * ndf)


def network_input(image: Tensor, mask: Tensor) -> Tensor:
    """cat([image * (1 - mask), mask]): holes set to 0, the mask as a 4th channel."""
    return torch.cat((image * (1 - mask), mask), dim=1)


def encoder_input(image: Tensor, mask: Tensor) -> Tensor:
    """The encoder reads the generator's own input (pass an all-zero mask for whole images)."""
    return network_input(image, mask)


def _extend(x: Tensor, size: int, dim: int) -> Tensor:
    """Mirror (numpy 'symmetric', as LaMa's predict does) at the end of `dim` up to `size`."""
    while x.shape[dim] < size:
        take_n = min(size - x.shape[dim], x.shape[dim])
        x = torch.cat((x, x.flip(dim).narrow(dim, 0, take_n)), dim=dim)
    return x


def inpaint(generator: LamaGenerator, image: Tensor, mask: Tensor) -> InpaintResult:
    """Run big-lama on images in [0, 1] (mask 1 = hole); pads bottom/right to a multiple of 8 if
    needed and crops back; composite = mask * out + (1 - mask) * image, as trainers/default.py."""
    h, w = image.shape[-2:]
    x = network_input(image, mask)
    size_h = max(MIN_SIDE, -(-h // MULTIPLE) * MULTIPLE)
    size_w = max(MIN_SIDE, -(-w // MULTIPLE) * MULTIPLE)
    x = _extend(_extend(x, size_h, -2), size_w, -1)
    out = generator(x)[..., :h, :w]
    return InpaintResult(stages=[out], output=out, composite=mask * out + (1 - mask) * image)


def discriminate(discriminator: NLayerDiscriminator, image: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor]]:
    """D(image) on the RGB image in [0, 1]; the original gives D no mask (the mask enters only the
    adversarial loss, see TRAINING)."""
    return discriminator(image)


def encoder(generator: LamaGenerator) -> LamaEncoder:
    return LamaEncoder(generator)


def cam_layer(generator: LamaGenerator) -> nn.Module:
    """The concatenation of the last (downsampling) FFC's two conv streams after their BN+ReLU:
    that FFC has two parallel convs (local 128 ch, global 384 ch), so a single conv would see only
    part of the encoder's 512 channels."""
    return generator.encoder_out


def embed_dim(width: float = 1.0) -> int:
    return _ngf(width) * 2 ** N_DOWN


def load_pretrained(path, *, trust_pickle: bool = False) -> dict:
    """{"generator", "discriminator"} state_dicts from a Lightning best.ckpt: `generator.*` keys
    without the prefix; `discriminator.*` when present (big-lama-with-discr), else None; loss
    modules' keys (loss_resnet_pl.*) are ignored."""
    ckpt = read_checkpoint(path, how_to_get=HOW_TO_GET, trust_pickle=trust_pickle)
    state = take(ckpt, "state_dict", path)
    generator = strip_prefix(state, "generator.")
    if not generator:
        raise CheckpointMismatch(f"{path}: ckpt['state_dict'] has no 'generator.*' keys (found "
                                 f"{list(state)[:5]}); is it a LaMa training checkpoint? {HOW_TO_GET}")
    return {"generator": generator, "discriminator": strip_prefix(state, "discriminator.") or None}


BACKBONE = register_inpainting("lama", globals(), checkpoint_hint=HOW_TO_GET, missing_fill=(0.0, 0.0, 0.0))

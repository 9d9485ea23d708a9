"""EdgeConnect (Nazeri et al. 2019, knazeri/edge-connect at 3142579): an edge generator completes the
Canny edges of the hole, an inpainting generator fills the hole guided by them.

The registry's generator is `EdgeConnectGenerator` with submodules `edge` and `inpaint` (keys
`edge.<official>` / `inpaint.<official>`); the discriminator likewise (edgeconnect_networks.py).

Encoder, as the study defines it: padding + 3 x (conv + norm + ReLU) of the INPAINTING generator,
i.e. `generator.inpaint.encoder` = ReflectionPad2d(3), Conv7x7(4->64), Conv4x4/2(64->128),
Conv4x4/2(128->256), each followed by norm + ReLU. The study's text says batch normalization; the
official code uses InstanceNorm2d(affine=False, no running stats), and so do we. It reads
cat([x*(1-m)+m, edges]) (4 ch: image with white holes, Canny edges of the whole image); for
classification m = 0, i.e. the image and its edges. Output: 256 ch at H/4 x W/4 (64x64 for 256x256
input); after global pooling a 256-d embedding (`embed_dim(width)` = round(256 * width)).

Parameter counts at official size (measured): edge generator 10,761,089; inpainting generator
10,774,595; both 21,535,684; encoder 668,352; discriminators 2,762,752 (edge) + 2,763,776 (inpaint).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from zfutils.models.checkpoints import read_checkpoint, strip_prefix, take
from zfutils.models.edgeconnect_edges import canny_edges, gray_and_edges
from zfutils.models.edgeconnect_networks import (
    EdgeConnectDiscriminator, EdgeConnectGenerator, channels, inpaint_input,
)
from zfutils.models.edgeconnect_training import AUXILIARY, discriminate_edges  # noqa: F401 (discriminate_edges: API)
from zfutils.models.registry import InpaintResult, register_inpainting

RELEASE = "https://drive.google.com/drive/folders/158ch9Psjop0mQEdeIp9DKjrYIGTDsZKN"
FILES = {"edge": "EdgeModel", "inpaint": "InpaintingModel"}  # <name>_gen.pth / <name>_dis.pth
HOW_TO_GET = (f"download the places2 folder from {RELEASE} (knazeri/edge-connect README, 'Getting started'; "
              "CelebA and Paris-StreetView folders are linked there too) and pass the folder that holds "
              "EdgeModel_gen.pth and InpaintingModel_gen.pth")
CHECKPOINT_HINT = (f"places2 weights: {RELEASE} (knazeri/edge-connect README); pass the folder holding "
                   "EdgeModel_gen.pth and InpaintingModel_gen.pth (EdgeModel_dis.pth / InpaintingModel_dis.pth "
                   "are optional)")

# The original training configuration (config.yml.example; losses in src/models.py and src/loss.py).
TRAINING = {
    "optimizer": {"name": "adam", "lr_g": 1e-4, "lr_d": 1e-5, "d2g_lr": 0.1,   # config.yml.example LR, D2G_LR
                  "betas": (0.0, 0.9)},                                       # config.yml.example BETA1, BETA2
    "batch_size": 8, "input_size": 256, "max_iters": 2_000_000,               # config.yml.example
    "canny_sigma": 2, "edge_threshold": 0.5,  # config.yml.example SIGMA; EDGE_THRESHOLD (edge precision/recall only)
    # nsgan: BCE on sigmoid(D) with labels 1/0 == BCE-with-logits on the logits discriminate() returns
    "adversarial": {"type": "nsgan", "d_loss": "(bce(real, 1) + bce(fake, 0)) / 2",  # src/loss.py, src/models.py
                    "g_loss": "bce(fake, 1)"},
    "stages": "train MODEL=1 (edge), MODEL=2 (inpaint on Canny edges), MODEL=3 (inpaint on the detached "
              "merged predicted edges); MODEL=4 (joint) trains both, merge not detached",  # README, edge_connect.py
    "edge": {  # EdgeModel.process, src/models.py
        "adversarial_weight": 1.0,             # gen_gan_loss is not weighted
        "feature_matching_weight": 10.0,       # FM_LOSS_WEIGHT
        "feature_matching": "sum over conv1..conv5 of L1 mean(fake feats, real feats detached)",
        "discriminator_input": "real cat([gray, canny]); fake cat([gray, edge_output]) (raw output, not merged)",
        "l1_weight": 0.0,                      # the edge model has no pixel loss
    },
    "inpaint": {  # InpaintingModel.process, src/models.py; config.yml.example weights
        "l1_weight": 1.0,                      # L1_LOSS_WEIGHT
        "l1": "mean |output - image| over the whole image, divided by mean(mask)",
        "adversarial_weight": 0.1,             # INPAINT_ADV_LOSS_WEIGHT
        "perceptual_weight": 0.1,              # CONTENT_LOSS_WEIGHT
        "perceptual": "sum of L1 means of VGG19 relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (weights 1)",
        "style_weight": 250.0,                 # STYLE_LOSS_WEIGHT
        "style": "sum of L1 of Gram matrices (/ c*h*w) of VGG19 relu2_2, relu3_4, relu4_4, relu5_2 "
                 "on output*mask vs image*mask",
        "vgg": "torchvision vgg19(pretrained=True).features, frozen, fed [0,1] images WITHOUT ImageNet normalization",
        "discriminator_input": "the raw generator output (not the composite); real = image",
        "feature_matching_weight": 0.0,        # not used for the inpainting model
    },
}


def build_generator(*, width: float = 1.0, blocks: int | None = None) -> EdgeConnectGenerator:
    return EdgeConnectGenerator(width=width, blocks=blocks)


def build_discriminator(*, width: float = 1.0) -> EdgeConnectDiscriminator:
    return EdgeConnectDiscriminator(width=width)


def _network_size(n: int) -> int:
    # two stride-2 convs and a dilation-2 reflection pad at H/4 need H % 4 == 0 and H/4 >= 3
    return max(12, -(-n // 4) * 4)


def inpaint(generator: EdgeConnectGenerator, image: torch.Tensor, mask: torch.Tensor) -> InpaintResult:
    """The joint pipeline (edge_connect.py sample() / MODEL=3 / MODEL=4): gray and Canny edges of the
    whole image, the edge generator's map merged into the hole, then the inpainting generator (how the
    edge model trains: edgeconnect_training.py).
    extras: `edges` (merged map the inpainter saw), `edge_output` (raw edge generator output), `gray`,
    `canny` (the Canny edges), all Bx1xHxW in [0, 1]."""
    gray, edges = gray_and_edges(image)
    h, w = image.shape[-2:]
    pad = (0, _network_size(w) - w, 0, _network_size(h) - h)
    if any(pad):
        padded = [F.pad(t, pad, mode="replicate") for t in (image, gray, edges, mask)]
        edge_output, merged, output = (t[..., :h, :w] for t in generator(*padded))
    else:
        edge_output, merged, output = generator(image, gray, edges, mask)
    composite = output * mask + image * (1 - mask)
    return InpaintResult(stages=[output], output=output, composite=composite,
                         extras={"edges": merged, "edge_output": edge_output, "gray": gray, "canny": edges})


def discriminate(discriminator: EdgeConnectDiscriminator, image: torch.Tensor, mask: torch.Tensor):
    """The inpainting discriminator on an RGB image in [0, 1] (the mask is not fed, as in the original).
    Returns (logits = conv5 before the sigmoid, [conv1..conv5]); the original applies the sigmoid and BCE."""
    _, feats = discriminator.inpaint(image)
    return feats[-1], feats


def encoder_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """cat([image*(1-m)+m, Canny edges of the whole image]): the inpainting generator's own input."""
    return inpaint_input(image, canny_edges(image), mask)


def encoder(generator: EdgeConnectGenerator) -> torch.nn.Module:
    return generator.inpaint.encoder


def cam_layer(generator: EdgeConnectGenerator) -> torch.nn.Module:
    return generator.inpaint.encoder[7]


def embed_dim(width: float = 1.0) -> int:
    return channels(256, width)


def _read_state(file: Path, key: str, trust_pickle: bool) -> dict:
    state = take(read_checkpoint(file, how_to_get=HOW_TO_GET, trust_pickle=trust_pickle), key, file)
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel (GPU: [0, 1])
        state = strip_prefix(state, "module.")
    return dict(state)


def load_pretrained(path, *, trust_pickle: bool = False) -> dict:
    """{"generator": edge.* + inpaint.* keys, "discriminator": the same from the *_dis.pth files, or None
    when neither is there}. `path` is the folder with the official files (a file in it also works)."""
    folder = Path(path).expanduser()
    folder = folder.parent if folder.is_file() else folder
    result = {}
    for part, key in (("generator", "generator"), ("discriminator", "discriminator")):
        files = {sub: folder / f"{name}_{key[:3]}.pth" for sub, name in FILES.items()}
        if part == "discriminator" and not any(f.is_file() for f in files.values()):
            result[part] = None
            continue
        result[part] = {f"{sub}.{k}": v for sub, file in files.items()
                        for k, v in _read_state(file, key, trust_pickle).items()}
    return result


BACKBONE = register_inpainting("edgeconnect", globals(), checkpoint_hint=CHECKPOINT_HINT, missing_fill=(1.0, 1.0, 1.0),
                               auxiliary=AUXILIARY)

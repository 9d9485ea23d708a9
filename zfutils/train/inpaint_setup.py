"""An inpainting model as stage 02 builds and trains it: generator and discriminator at the
configured scale (from released weights when a path is given), and their trainer writing
resumable checkpoints into the stage's run folder. Stage 02 and zfutils.train.launch share it,
so both train, and resume, the same run."""
from __future__ import annotations

import hashlib
import json

from torch import nn

from zfutils import config
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import InpaintingSet
from zfutils.models import checkpoints, get
from zfutils.models.registry import Backbone
from zfutils.train.compute import Compute
from zfutils.train.inpaint import InpaintTrainer
from zfutils.train.recipe import LossRecipe


def build_models(cfg: dict) -> tuple[Backbone, nn.Module, nn.Module, dict]:
    """Generator and discriminator at the configured scale, with official weights if given."""
    backbone = get(cfg["backbone"]["name"])
    scale = cfg["model"]
    states, variant = None, {}
    if scale["pretrained"]:
        states = backbone.load_pretrained(scale["pretrained"], trust_pickle=scale["trust_pickle"])
        # anything beside the two state_dicts says how to build the networks (DeepFillV2: which release)
        variant = {k: v for k, v in states.items() if k not in ("generator", "discriminator")}
    generator = backbone.build_generator(width=scale["width"], blocks=scale["blocks"], **variant)
    discriminator = backbone.build_discriminator(width=scale["width"], **variant)
    init = {"generator": "random", "discriminator": "random", "pretrained": scale["pretrained"], **variant}
    if states is not None:
        checkpoints.load_strict(generator, states["generator"], source=f"{scale['pretrained']} (generator)")
        init["generator"] = "pretrained"
        if states.get("discriminator") is not None:
            checkpoints.load_strict(discriminator, states["discriminator"], source=f"{scale['pretrained']} (discriminator)")
            init["discriminator"] = "pretrained"
    return backbone, generator, discriminator, init


def parameter_counts(backbone: Backbone, generator: nn.Module, discriminator: nn.Module, width: float) -> dict:
    """Sizes for the study's Fig. 6a: parameters of generator, encoder and discriminator, embedding size."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"generator_params": count(generator), "encoder_params": count(backbone.encoder(generator)),
            "discriminator_params": count(discriminator), "embedding_dim": backbone.embed_dim(width)}


def _stamp(cfg: dict) -> str:
    keys = {k: cfg[k] for k in ("seed", "run_seed", "data", "split", "model", "inpaint", "backbone")}
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_trainer(cfg: dict, run_dir, device: str) -> tuple[InpaintTrainer, dict]:
    """The configured trainer writing into `run_dir`, and where its weights came from (the stage
    and zfutils.train.launch share it, so both train, and resume, the same run)."""
    backbone, generator, discriminator, init = build_models(cfg)
    recipe = LossRecipe.from_config(cfg["inpaint"])
    ic = cfg["inpaint"]
    trainer = InpaintTrainer(backbone=backbone, generator=generator, discriminator=discriminator, recipe=recipe,
                             run_dir=run_dir, epochs=ic["epochs"], batch_size=ic["batch_size"], lr_g=ic["lr_g"],
                             lr_d=ic["lr_d"], betas=tuple(ic["betas"]), seed=config.training_seed(cfg), stamp=_stamp(cfg),
                             max_batches=ic["max_batches"], val_every=ic["val_every"], grad_clip=ic["grad_clip"],
                             device=device, compute=Compute.from_cfg(cfg, device))
    return trainer, init


def fit(trainer: InpaintTrainer, cfg: dict, data: StoredDataset) -> dict:
    """Fit on the flipped training images, validate on the flipped validation images (Table 3)."""
    flips = cfg["split"]["inpaint_flips"]
    return trainer.fit(InpaintingSet(data, "train", flips), InpaintingSet(data, "val", flips))

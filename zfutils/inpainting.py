"""Stage 02's work: fine-tune a backbone's generator and discriminator to inpaint zebrafish skin
patterns, starting from official weights when a path is given (else random init, recorded), then
measure it on the test split and embed the classification test images with its encoder."""
from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from zfutils import config
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet, InpaintingSet
from zfutils.embed import embed, save_embeddings
from zfutils.models import checkpoints, get
from zfutils.models.registry import Backbone
from zfutils.provenance import device_info
from zfutils.stage import Stage
from zfutils.train.compute import Compute
from zfutils.train.inpaint import InpaintTrainer, evaluate_inpainting
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


def finetune(stage: Stage, data: StoredDataset) -> dict:
    """Train (resuming where a previous run of this config stopped), test, embed; logs everything
    into the stage's metrics.json and returns the trainer with the best generator loaded."""
    cfg = stage.cfg
    device = device_info(cfg["device"])["device"]
    trainer, init = build_trainer(cfg, stage.dir, device)
    backbone, recipe = trainer.backbone, trainer.recipe
    ic, flips = cfg["inpaint"], cfg["split"]["inpaint_flips"]
    table3 = fit(trainer, cfg, data)
    best = trainer.load_best()
    test = evaluate_inpainting(backbone, best, InpaintingSet(data, "test", flips), ic["batch_size"], device)
    dims = []
    for name, column in (("embeddings.npz", "split"), ("embeddings_open.npz", "split_open")):
        rows = ClassificationSet(data, "test", column=column)  # the test split; the held-out individuals
        if len(rows):
            vectors = embed(backbone, best, rows, cfg["embed"]["batch_size"], device,
                            pooling=cfg["classify"]["pooling"], grid=cfg["classify"]["flatten_grid"])
            save_embeddings(stage.dir / name, vectors, rows, kind="inpainting", backbone=backbone.name, split=column)
            dims.append(int(vectors.shape[1]))
    stage.log_metrics(init=init, loss_terms=recipe.terms(), dropped_terms=recipe.dropped, table3=table3, test=test,
                      training=recipe.describe(backbone),  # update order; EdgeConnect: edge-model mode (MODEL=4)
                      sizes=parameter_counts(backbone, trainer.generator, trainer.discriminator, cfg["model"]["width"]),
                      embeddings={"files": ["embeddings.npz", "embeddings_open.npz"],
                                  "dim": dims[0] if dims else None,
                                  "pooling": cfg["classify"]["pooling"], "flatten_grid": cfg["classify"]["flatten_grid"]},
                      device=device)
    return {"trainer": trainer, "backbone": backbone, "generator": best, "table3": table3, "test": test}


def examples(run: dict, data, n: int):
    """The first `n` images of `data` with their masks and the best generator's composites."""
    items = [data[i] for i in range(min(n, len(data)))]
    if not items:
        raise ValueError("no test images to show; the inpainting test split is empty (more images per individual?)")
    images = torch.stack([it["image"] for it in items])
    masks = torch.stack([it["mask"] for it in items])
    with torch.no_grad():
        device = next(run["generator"].parameters()).device
        out = run["backbone"].inpaint(run["generator"], images.to(device), masks.to(device)).composite.cpu()
    return images, masks, out

"""Stage 02 (notebooks/02_inpaint_patterns.ipynb): fine-tune a backbone's generator and
discriminator to inpaint zebrafish skin patterns, starting from official weights when a path is
given (else random init, recorded), then measure it on the test split and embed the classification
test images with its encoder."""
from __future__ import annotations

import pandas as pd
import torch

from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet, InpaintingSet
from zfutils.embed import embed, save_embeddings
from zfutils.provenance import device_info
from zfutils.stage import Stage
from zfutils.train.inpaint import evaluate_inpainting
from zfutils.train.inpaint_setup import build_trainer, fit, parameter_counts


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


def table3_row(run: dict, backbone: str) -> pd.DataFrame:
    """The study's Table 3 row of this model: its best checkpoint (lowest validation generator
    loss, batch size, iteration) and the hole metrics of that checkpoint on the test split."""
    t3 = run["table3"]
    return pd.DataFrame([{"model": backbone, "lowest validation generator loss": t3["best_val_g_loss"],
                          "batch size": t3["batch_size"], "iterations": t3["best_iteration"],
                          **run["test"]}]).set_index("model")

"""A classifier as the stages build and train it: its starting weights (stage 02's checkpoint,
released weights or random ones), the network on its backbone's encoder, and its training with
resumable checkpoints. Stages 03, 04, 06 and 07, the explorer, the benchmarks and
zfutils.train.launch share it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from zfutils import config, paths
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.models import checkpoints, get
from zfutils.models.arcface import counts_per_class
from zfutils.models.classifier import Classifier
from zfutils.models.registry import Backbone
from zfutils.train.augment import recipe
from zfutils.train.cam_watch import CamWatcher, cam_watch_set
from zfutils.train.checkpoint import load_checkpoint
from zfutils.train.classify import ClassifierTrainer
from zfutils.train.compute import Compute


def initial_state(cfg: dict, backbone: Backbone) -> tuple[dict | None, dict]:
    """The generator weights a classifier starts from, and a record of where they came from."""
    init, family = cfg["classify"]["init"], cfg["backbone"]["family"]
    if init == "auto":
        init = "inpainting" if family == "inpainting" else "pretrained"
    if init == "random":
        return None, {"init": "random"}
    if init == "inpainting":
        path = paths.run_stage_dir(cfg, paths.INPAINT_PATTERNS, backbone.name) / "checkpoints" / "best.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: classify.init 'inpainting' starts from stage 02's best "
                                    f"checkpoint; run stage 02 for {backbone.name} first, or set classify.init")
        return load_checkpoint(path)["generator"], {"init": "inpainting", "checkpoint": str(path)}
    if init == "pretrained":
        try:
            states = backbone.load_pretrained(cfg["model"]["pretrained"], trust_pickle=cfg["model"]["trust_pickle"])
        except FileNotFoundError as err:
            if cfg["classify"]["init"] != "auto":
                raise
            return None, {"init": "random", "why": f"pretrained weights not found: {err}"}
        return states["generator"], {"init": "pretrained", "checkpoint": str(cfg["model"]["pretrained"] or "torch cache")}
    raise ValueError(f"unknown classify.init '{init}'; known: auto, inpainting, pretrained, random")


def build_classifier(cfg: dict, backbone: Backbone, state: dict | None, n_classes: int) -> Classifier:
    """The configured classifier on `backbone`'s encoder, its generator loaded strictly from `state`."""
    generator = backbone.build_generator(width=cfg["model"]["width"], blocks=cfg["model"]["blocks"])
    if state is not None:
        checkpoints.load_strict(generator, state, source=f"the {backbone.name} starting weights")
    c = cfg["classify"]
    return Classifier(backbone=backbone, generator=generator, n_classes=n_classes,
                      embed_dim=backbone.embed_dim(cfg["model"]["width"]), head=c["head"], arcface=c["arcface"],
                      neck=c["neck"], pooling=c["pooling"], flatten_grid=c["flatten_grid"],
                      image_size=cfg["data"]["image_size"])


def _stamp(cfg: dict, mode: str) -> str:
    keys = {k: cfg[k] for k in ("seed", "run_seed", "data", "split", "model", "classify", "backbone")}
    return hashlib.sha256(json.dumps([keys, mode], sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_classifier(cfg: dict, mode: str, sets: dict, out: Path, device: str, watcher=None,
                     tag: str = "", seed: int | None = None) -> tuple[ClassifierTrainer, dict, dict]:
    """Build the configured classifier from its starting weights and train it on `sets` (train,
    val) in `mode`, resuming in `out`; returns the trainer (best epoch loaded), the best epoch
    summary and where the weights came from; `seed` (default: the run's training seed) seeds the
    head's initialisation and the batch order. Stages 03 and 04 share it."""
    c = cfg["classify"]
    backbone = get(cfg["backbone"]["name"])
    n_classes = len(sets["train"].classes)
    state, init = initial_state(cfg, backbone)
    seed = config.training_seed(cfg) if seed is None else int(seed)
    torch.manual_seed(seed)
    model = build_classifier(cfg, backbone, state, n_classes)
    model.set_class_counts(counts_per_class(sets["train"].rows["identity"], sets["train"].classes))  # dynamic margins
    out.mkdir(parents=True, exist_ok=True)
    trainer = ClassifierTrainer(model=model, mode=mode, run_dir=out, epochs=c["epochs"], batch_size=c["batch_size"],
                                lr_head=c["lr_head"], lr_encoder=c["lr_encoder"], weight_decay=c["weight_decay"],
                                seed=seed, stamp=_stamp(cfg, f"{mode}{tag}-seed{seed}"), max_batches=c["max_batches"],
                                device=device, on_epoch_end=watcher, precise_bn_batches=c["precise_bn_batches"],
                                calibrate_first=init["init"] == "random", compute=Compute.from_cfg(cfg, device),
                                **recipe(c))
    best = trainer.fit(sets["train"], sets["val"], n_classes)
    trainer.load_best()
    return trainer, best, init


def train_mode(cfg: dict, data: StoredDataset, mode: str, stage_dir: Path, device: str):
    """Train one mode in <stage dir>/<mode>/, with Grad-CAM watched every epoch (the stage and
    zfutils.train.launch share it); returns the sets, the watcher, the trainer, best and init."""
    sets = {s: ClassificationSet(data, s) for s in ("train", "val", "test")}
    out = Path(stage_dir) / mode
    out.mkdir(parents=True, exist_ok=True)
    watcher = CamWatcher(cam_watch_set(sets["val"], cfg["classify"]["cam_images"]), out,
                         cfg["classify"]["cam_method"])
    trainer, best, init = train_classifier(cfg, mode, sets, out, device, watcher=watcher)
    watcher.restore(best["epochs"])
    return sets, watcher, trainer, best, init

"""Stage 03's work: couple pattern information to identity. For each mode (shallow: frozen
encoder; deep: everything trains) a classifier starts from the configured weights, trains with
Grad-CAM on fixed validation images every epoch, and is tested; its embeddings are scored by
retrieval (also on held-out individuals), and the deep ("refined", the study's `ref-`)
embeddings of the test split are saved for clustering."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zfutils import config, matching, paths
from zfutils.cam import cam_mass_shares, grad_cams
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.embed import save_embeddings
from zfutils.models import checkpoints, get
from zfutils.models.arcface import counts_per_class
from zfutils.models.classifier import Classifier
from zfutils.models.registry import Backbone
from zfutils.provenance import device_info
from zfutils.retrieval import retrieval_metrics
from zfutils.stage import Stage
from zfutils.train.augment import recipe
from zfutils.train.checkpoint import load_checkpoint
from zfutils.train.classify import ClassifierTrainer
from zfutils.train.compute import Compute

INPAINT_STAGE = "02_inpaint_patterns"
MATCH_EMBEDDINGS = {"test": "embeddings_match.npz", "open": "embeddings_match_open.npz"}  # a matcher's profiles


def initial_state(cfg: dict, backbone: Backbone) -> tuple[dict | None, dict]:
    """The generator weights a classifier starts from, and a record of where they came from."""
    init, family = cfg["classify"]["init"], cfg["backbone"]["family"]
    if init == "auto":
        init = "inpainting" if family == "inpainting" else "pretrained"
    if init == "random":
        return None, {"init": "random"}
    if init == "inpainting":
        path = paths.run_stage_dir(cfg, INPAINT_STAGE, backbone.name) / "checkpoints" / "best.pt"
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
    generator = backbone.build_generator(width=cfg["model"]["width"], blocks=cfg["model"]["blocks"])
    if state is not None:
        checkpoints.load_strict(generator, state, source=f"the {backbone.name} starting weights")
    c = cfg["classify"]
    return Classifier(backbone=backbone, generator=generator, n_classes=n_classes,
                      embed_dim=backbone.embed_dim(cfg["model"]["width"]), head=c["head"], arcface=c["arcface"],
                      neck=c["neck"], pooling=c["pooling"], flatten_grid=c["flatten_grid"],
                      image_size=cfg["data"]["image_size"])


def cam_watch_set(data: ClassificationSet, n: int) -> dict[str, torch.Tensor]:
    """`n` fixed validation images spread over identities, with their labels and masks."""
    order = data.rows.reset_index().groupby("identity", sort=True).cumcount().sort_values(kind="stable").index[:n]
    items = [data[int(i)] for i in order]
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "label", "fish", "pattern")}


class CamWatcher:
    """Grad-CAM of the fixed images after every epoch, with the pattern-focus shares."""

    def __init__(self, watch: dict, out: Path):
        self.watch, self.out = watch, Path(out)
        self.cams: dict[int, np.ndarray] = {}

    def restore(self, epochs: int) -> None:
        """Epochs up to `epochs` this process did not train (a resumed run, or training done by
        zfutils.train.launch) from cams.npz, so the Grad-CAM figures show every epoch."""
        path = self.out / "cams.npz"
        if not path.is_file() or all(e in self.cams for e in range(1, epochs + 1)):
            return
        with np.load(path) as saved:
            for epoch in range(1, epochs + 1):
                if epoch not in self.cams and f"epoch_{epoch:03d}" in saved:
                    self.cams[epoch] = saved[f"epoch_{epoch:03d}"].astype(np.float32)

    def __call__(self, epoch: int, model: Classifier) -> dict:
        import matplotlib.pyplot as plt

        from zfutils.plots import cam_grid

        cams = grad_cams(model, model.cam_layer, self.watch["image"], self.watch["label"].tolist())
        self.cams[epoch] = cams
        np.savez_compressed(self.out / "cams.npz", **{f"epoch_{e:03d}": c.astype(np.float16) for e, c in self.cams.items()})
        (self.out / "cams").mkdir(exist_ok=True)
        fig = cam_grid(self.watch["image"], {epoch: cams}, title=f"epoch {epoch}")
        fig.savefig(self.out / "cams" / f"epoch_{epoch:03d}.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        shares = cam_mass_shares(cams, self.watch["fish"][:, 0].numpy(), self.watch["pattern"][:, 0].numpy())
        return {f"cam_{k.removeprefix('mean_')}": float(v) for k, v in shares.items() if np.ndim(v) == 0}


def _stamp(cfg: dict, mode: str) -> str:
    keys = {k: cfg[k] for k in ("seed", "run_seed", "data", "split", "model", "classify", "backbone")}
    return hashlib.sha256(json.dumps([keys, mode], sort_keys=True, default=str).encode()).hexdigest()[:16]


@torch.no_grad()
def embed_set(model: Classifier, data, batch_size: int, device: str) -> np.ndarray:
    model.eval()
    out = [model.embed(b["image"].to(device)).cpu() for b in torch.utils.data.DataLoader(data, batch_size=batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def retrieval_on(model: Classifier, data: StoredDataset, column: str, protocol: str, cfg: dict, device: str) -> dict:
    """Retrieval with this model's embeddings. `gallery`: the test images of split `column` query
    every other classification image (the reference images of known individuals); `loo`: the test
    images query each other (held-out individuals, who have no reference images)."""
    rows = ClassificationSet(data, "test" if protocol == "loo" else ("train", "val", "test"), column=column)
    if len(rows) < 2:
        return {"n_queries": 0, "protocol": protocol}
    vectors = embed_set(model, rows, cfg["embed"]["batch_size"], device)
    queries = None if protocol == "loo" else (rows.rows[column] == "test").to_numpy()
    out = retrieval_metrics(vectors, rows.rows["identity"].to_numpy(), rows.rows["session"].to_numpy(),
                            ks=tuple(cfg["classify"]["retrieval_ks"]), queries=queries)
    return {**out, "protocol": protocol}


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
    watcher = CamWatcher(cam_watch_set(sets["val"], cfg["classify"]["cam_images"]), out)
    trainer, best, init = train_classifier(cfg, mode, sets, out, device, watcher=watcher)
    watcher.restore(best["epochs"])
    return sets, watcher, trainer, best, init


def run_mode(stage: Stage, data: StoredDataset, mode: str, device: str) -> dict:
    """Train, test and score one mode; its files live in <stage dir>/<mode>/."""
    cfg = stage.cfg
    sets, watcher, trainer, best, init = train_mode(cfg, data, mode, stage.dir, device)
    model, classes = trainer.model, sets["train"].classes
    result = {"init": init, "best": best, "test": trainer.evaluate(sets["test"], len(classes)), "classes": classes,
              "history": [r for r in trainer.log.read() if r.get("kind") == "epoch"],
              "retrieval": {"test": retrieval_on(model, data, "split", "gallery", cfg, device),
                            "open": retrieval_on(model, data, "split_open", "loo", cfg, device)}}
    if mode == "deep":
        save_refined_embeddings(stage, data, model, device)
    result["watcher"], result["trainer"] = watcher, trainer
    return result


def save_refined_embeddings(stage: Stage, data: StoredDataset, model: Classifier, device: str) -> None:
    """The refined (`ref-`) embeddings for clustering: the test split, and the held-out
    individuals of the open split."""
    batch = stage.cfg["embed"]["batch_size"]
    for name, column in (("embeddings_ref.npz", "split"), ("embeddings_ref_open.npz", "split_open")):
        rows = ClassificationSet(data, "test", column=column)
        if len(rows):
            save_embeddings(stage.dir / name, embed_set(model, rows, batch, device), rows, kind="refined",
                            backbone=model.backbone_name, split=column)


def finetune_classifiers(stage: Stage, data: StoredDataset) -> dict[str, dict]:
    """Both modes; their numbers go into the stage's metrics.json as they finish. A matching
    method (no network) is evaluated by matching instead, in stage 03's result shape."""
    if matching.is_matcher(stage.cfg["backbone"]["name"]):
        return evaluate_matcher(stage, data)
    device = device_info(stage.cfg["device"])["device"]
    results = {}
    for mode in stage.cfg["classify"]["modes"]:
        results[mode] = run_mode(stage, data, mode, device)
        keep = {k: v for k, v in results[mode].items() if k not in ("watcher", "trainer")}
        stage.log_metrics(**{mode: keep})
    stage.log_metrics(chance=1 / len(results[next(iter(results))]["classes"]), head=stage.cfg["classify"]["head"])
    if stage.cfg["classify"]["leakage_check"]:
        stage.log_metrics(leakage=leakage_check(stage, data, results, device))
    if stage.cfg["classify"]["random_start_control"] and results[next(iter(results))]["init"]["init"] != "random":
        stage.log_metrics(random_start=random_start_control(stage.cfg, data, stage.dir, device))
    if stage.cfg["classify"]["head_comparison"]["poolings"]:
        stage.log_metrics(head_comparison=head_comparison(stage.cfg, data, stage.dir, device, results))
    return results


def random_start_control(cfg: dict, data: StoredDataset, stage_dir: Path, device: str) -> dict:
    """Each mode trained again, identically but from random weights, in <stage dir>/random_start/:
    the control without which no claim about pre-training can be read. {mode: test metrics}."""
    sets = {s: ClassificationSet(data, s) for s in ("train", "val", "test")}
    run_cfg = {**cfg, "classify": {**cfg["classify"], "init": "random"}}
    out = {}
    for mode in cfg["classify"]["modes"]:
        trainer, best, _ = train_classifier(run_cfg, mode, sets, Path(stage_dir) / "random_start" / mode, device,
                                            tag="-random-start")
        test = trainer.evaluate(sets["test"], len(sets["train"].classes))
        out[mode] = {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "best_epoch": best["best_epoch"],
                     "n_test": len(sets["test"])}
    return out


def pooling_label(pooling: str, grid: int | None) -> str:
    """How a table names a pooling: `flatten`, `flatten 8x8` (averaged to a grid first), `avg`, `gem`."""
    return f"flatten {grid}x{grid}" if pooling == "flatten" and grid is not None else pooling


def head_comparison(cfg: dict, data: StoredDataset, stage_dir: Path, device: str, results: dict | None = None) -> list[dict]:
    """Test accuracy of the classifier with each pooling (the configured one and
    `classify.head_comparison.poolings`) in each of its modes, once per training seed: does the
    head's input decide whether a frozen encoder identifies the fish? Each run resumes in
    <stage dir>/head_comparison/<pooling>-<mode>-seed<s>/; the configured pooling at the run's own
    seed is the main run (`results`). The grid of `classify.flatten_grid` applies to `flatten`."""
    hc, c = cfg["classify"]["head_comparison"], cfg["classify"]
    poolings = list(dict.fromkeys([c["pooling"], *hc["poolings"]]))
    sets = {s: ClassificationSet(data, s) for s in ("train", "val", "test")}
    rows = []
    for pooling in poolings:
        for mode in hc["modes"]:
            for seed in hc["seeds"]:
                main = pooling == c["pooling"] and int(seed) == config.training_seed(cfg) and mode in (results or {})
                if main:
                    test = results[mode]["test"]
                else:
                    run_cfg = {**cfg, "classify": {**c, "pooling": pooling}}  # not run_seed: it names the run folders
                    trainer, _, _ = train_classifier(run_cfg, mode, sets, Path(stage_dir) / "head_comparison" /
                                                     f"{pooling}-{mode}-seed{seed}", device, tag=f"-{pooling}", seed=seed)
                    test = trainer.evaluate(sets["test"], len(sets["train"].classes))
                rows.append({"pooling": pooling_label(pooling, c["flatten_grid"]), "mode": mode, "seed": int(seed),
                             "accuracy": test["accuracy"], "n_test": len(sets["test"]), "main_run": bool(main)})
    return rows


def evaluate_matcher(stage: Stage, data: StoredDataset) -> dict[str, dict]:
    """Stage 03 for a matching method; its match profiles are saved as embeddings for stage 05."""
    results = {matching.MODE: matching.evaluate(stage.cfg, data)}
    for split, column in (("test", "split"), ("open", "split_open")):
        rows = ClassificationSet(data, "test", column=column)
        if len(rows):
            save_embeddings(stage.dir / MATCH_EMBEDDINGS[split], results[matching.MODE]["profiles"][split], rows,
                            kind="matching profile", backbone=stage.cfg["backbone"]["name"], split=column)
    keep = {k: v for k, v in results[matching.MODE].items() if k not in ("watcher", "trainer", "profiles")}
    stage.log_metrics(**{matching.MODE: keep},
                      chance=1 / len(results[matching.MODE]["classes"]), head="none")
    if stage.cfg["classify"]["leakage_check"]:
        configured = stage.cfg["split"]["classify"]
        stage.log_metrics(leakage={rule: results[matching.MODE]["test"]["accuracy"] if rule == configured
                                   else matching.test_accuracy(stage.cfg, data, f"split_{rule}")
                                   for rule in ("random", "session")})
    return results


def leakage_check(stage: Stage, data: StoredDataset, results: dict, device: str) -> dict:
    """Shallow-mode test accuracy under the study's `random` split and under the `session` split:
    how much random splits of near-duplicate frames inflate results. The configured split's
    number is the main shallow run's; the other is trained here."""
    cfg, out = stage.cfg, {}
    for rule in ("random", "session"):
        column = f"split_{rule}"
        if cfg["split"]["classify"] == rule and "shallow" in results:
            out[rule] = results["shallow"]["test"]["accuracy"]
            continue
        if not data.meta[column].isin(["train"]).any():
            out[rule] = None  # the rule was impossible for this data (splits.json says why)
            continue
        sets = {s: ClassificationSet(data, s, column=column) for s in ("train", "val", "test")}
        trainer, _, _ = train_classifier(cfg, "shallow", sets, stage.dir / f"leakage_{rule}", device, tag=f"-{rule}")
        out[rule] = trainer.evaluate(sets["test"], len(sets["train"].classes))["accuracy"]
    return out


def test_table(results: dict[str, dict], backbone: str, chance: float) -> pd.DataFrame:
    """Test accuracy, macro recall and macro F1 per mode, with the starting weights and chance."""
    rows = [{"backbone": backbone, "mode": mode, "init": r["init"]["init"], "best epoch": r["best"]["best_epoch"],
             "accuracy": r["test"]["accuracy"], "macro recall": r["test"]["macro_recall"],
             "macro F1": r["test"]["macro_f1"], "chance": chance} for mode, r in results.items()]
    return pd.DataFrame(rows).set_index(["backbone", "mode"])


def retrieval_table(results: dict[str, dict], backbone: str) -> pd.DataFrame:
    """Leave-one-out top-k and mAP of each mode's embeddings: test split and unseen individuals;
    with sessions also the share of top-1 neighbours from the query's own session and its chance."""
    rows = []
    for mode, r in results.items():
        for split, m in r["retrieval"].items():
            rows.append({"backbone": backbone, "mode": mode, "split": "test" if split == "test" else "open (unseen)",
                         **{k: v for k, v in m.items() if k.startswith("top") or k in ("mAP", "n_queries", "same_session_chance")}})
    return pd.DataFrame(rows).set_index(["backbone", "mode", "split"])

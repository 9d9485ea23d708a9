"""Stage 03 (notebooks/03_finetune_classifier.ipynb): couple pattern information to identity. For
each mode (shallow: frozen encoder; deep: everything trains) a classifier starts from the configured
weights, trains with Grad-CAM on fixed validation images every epoch, and is tested; its embeddings
are scored by retrieval (also on held-out individuals), and the deep ("refined", the study's `ref-`)
embeddings of the test split are saved for clustering. The controls live here too: leakage check,
random start, head comparison."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from zfutils import config, matching
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.embed import embed_set, retrieval_on, save_embeddings
from zfutils.models.classifier import Classifier
from zfutils.provenance import device_info
from zfutils.stage import Stage
from zfutils.train.classifier_setup import train_classifier, train_mode

MATCH_EMBEDDINGS = {"test": "embeddings_match.npz", "open": "embeddings_match_open.npz"}  # a matcher's profiles


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
    first = results[next(iter(results))]
    stage.log_metrics(chance=1 / len(first["classes"]), head=stage.cfg["classify"]["head"],
                      cam_method=stage.cfg["classify"]["cam_method"], cam_area=first["watcher"].area_shares())
    if stage.cfg["classify"]["leakage_check"]:
        stage.log_metrics(leakage=leakage_check(stage, data, results, device))
    if stage.cfg["classify"]["random_start_control"] and first["init"]["init"] != "random":
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

"""Stage 06 (notebooks/06_vary_training_size.ipynb): how test accuracy grows with the number of
training images per individual (`size_study.per_individual`: 1, 2, 5, ...), for each pattern family:
the configured data and, for synthetic data, the other family (stripes and spots differ in intra-
individual variance).

For every family, size N and seed (`size_study.seeds`), exactly N images per individual are drawn
from the session split's training part (zfutils.fewshot.select_per_individual) and a classifier
is trained on them from the weights stage 03 starts from, in each of `size_study.modes`, and
tested on the session split's test images. A matching backbone (family `matching`, no encoder)
instead puts the N images in its gallery and names each test image's nearest individual.
Sizes no individual can supply are dropped and listed. The report overlays the backbones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zfutils import config, fewshot, paths
from zfutils.data import families
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.models import get
from zfutils.provenance import device_info
from zfutils.stage import Stage
from zfutils.tables import Table, row_label, stage_metrics
from zfutils.train.classifier_setup import build_classifier, initial_state

STAGE = paths.VARY_TRAINING_SIZE
COLUMN = fewshot.COLUMN


def family_plan(data: StoredDataset, requested) -> dict:
    """What a family's data allows: individuals, training images per individual, the sizes kept
    and dropped, test images and chance; `note` says why nothing can run."""
    rows = data.meta[data.meta["task"] == "classify"]
    available = fewshot.available_per_individual(rows, COLUMN)
    sizes, dropped = fewshot.usable_sizes(requested, available)
    n_individuals = int(rows["identity"].nunique())
    note = ""
    if not (rows[COLUMN] == "train").any():
        note = f"the session split is impossible for this data ({_split_note(data)}): nothing to train on"
    elif not sizes:
        fewest = min((int(n) for n in requested), default=1)
        note = f"every individual needs at least {fewest} training images; the fewest has {available}"
    return {"root": str(data.root), "n_individuals": n_individuals, "available_per_individual": available,
            "sizes": sizes, "dropped": dropped, "n_test": int((rows[COLUMN] == "test").sum()),
            "chance": 1 / n_individuals if n_individuals else None, "note": note}


def _split_note(data: StoredDataset) -> str:
    import json

    path = Path(data.root) / "splits.json"
    notes = json.loads(path.read_text()).get("notes", {}) if path.is_file() else {}
    return notes.get("session", "see splits.json")


def run_study(stage: Stage) -> dict:
    """Every family, size, mode and seed; metrics.json gets each family's numbers as they come:
    families.<family>.accuracy.<mode>.<N>.<seed> = test accuracy."""
    cfg, s = stage.cfg, stage.cfg["size_study"]
    matching = fewshot.is_matching(cfg)
    modes = ["matching"] if matching else list(s["modes"])
    out = {"method": "matching" if matching else "classifier", "modes": modes, "seeds": [int(x) for x in s["seeds"]],
           "split": COLUMN, "configured_family": families.configured(cfg), "families": {}}
    device = device_info(cfg["device"])["device"]
    for family in families.every(cfg):
        data = families.load(cfg, family)
        plan = family_plan(data, s["per_individual"])
        where = stage.dir / "runs" / family
        if not plan["sizes"]:
            accuracy, extra = {}, {}
        elif matching:
            by_n, cost = fewshot.matching_sweep(cfg, data, plan["sizes"], out["seeds"])
            accuracy = {"matching": by_n}
            extra = {"cost": cost, "init": {"init": "none", "why": "matching learns nothing"}}
        else:
            accuracy, extra = classifier_sweep(cfg, data, plan, modes, out["seeds"], where, device)
        out["families"][family] = {**plan, **extra, "accuracy": accuracy}
        stage.log_metrics(**out)
    return out


def classifier_sweep(cfg: dict, data: StoredDataset, plan: dict, modes: list[str], seeds: list[int],
                     where: Path, device: str) -> tuple[dict, dict]:
    """accuracy[mode][N][seed] of classifiers trained on N images per individual."""
    unknown = sorted(set(modes) - {"shallow", "deep"})
    if unknown:
        raise ValueError(f"unknown size_study.modes {unknown}; known: shallow, deep")
    backbone = get(cfg["backbone"]["name"])
    state, init = initial_state(cfg, backbone)
    accuracy = {}
    if "shallow" in modes:
        accuracy["shallow"] = shallow_sweep(cfg, backbone, state, init, data, plan["sizes"], seeds, where / "shallow",
                                            device)
    if "deep" in modes:
        accuracy["deep"] = deep_sweep(cfg, backbone, state, init, data, plan["sizes"], seeds, where / "deep", device)
    return accuracy, {"init": init}


def _key(cfg: dict) -> dict:
    """What a run's result depends on besides its mode, size, seed, images and starting point."""
    keep = ("seed", "run_seed", "data", "split", "model", "classify", "backbone")
    return {**{k: cfg.get(k) for k in keep}, "min_steps": cfg["size_study"]["min_steps"]}


def shallow_sweep(cfg: dict, backbone, state, init: dict, data: StoredDataset, sizes, seeds, where: Path,
                  device: str) -> dict:
    """{N: {seed: accuracy}} of heads trained on the frozen encoder's features, computed once."""
    every = ClassificationSet(data, fewshot.SPLITS, column=COLUMN)
    seed = config.training_seed(cfg)
    torch.manual_seed(seed)  # a random start is the same for every family, and stage 03's
    model = build_classifier(cfg, backbone, state, len(every.classes))
    if init["init"] == "random":
        fewshot.calibrate(model, ClassificationSet(data, "train", column=COLUMN), cfg, device, seed)
    stored = fewshot.by_split(fewshot.frozen_features(model, every, cfg, device, where), every.rows, COLUMN)
    del model
    train_rows = every.rows[every.rows[COLUMN] == "train"].reset_index(drop=True)
    key = fewshot.digest(_key(cfg), "shallow", *(stored[k].embedding for k in fewshot.SPLITS))
    return fewshot.probe_sweep(cfg, backbone, stored, train_rows, len(every.classes), sizes, seeds, where, key,
                               cfg["size_study"]["min_steps"], device)


def deep_sweep(cfg: dict, backbone, state, init: dict, data: StoredDataset, sizes, seeds, where: Path,
               device: str) -> dict:
    """{N: {seed: accuracy}} of classifiers trained whole from the starting weights on N images."""
    images = {k: ClassificationSet(data, k, column=COLUMN) for k in fewshot.SPLITS}
    n_classes = len(images["train"].classes)
    source = init.get("checkpoint")
    stat = Path(source).stat() if source and Path(source).is_file() else None
    key = fewshot.digest(_key(cfg), "deep", init, stat and [stat.st_size, stat.st_mtime_ns])
    result = {}
    for n in sizes:
        for seed in seeds:
            chosen = fewshot.select_per_individual(images["train"].rows, n, seed, COLUMN)
            sets = {**images, "train": fewshot.Selected(images["train"], chosen)}
            out = where / f"n{n:03d}_seed{seed}"
            got = fewshot.run_once(out, fewshot.digest(key, n, seed, sets["train"].rows["image_id"].tolist()),
                                   lambda stamp: fewshot.train_and_test(cfg, backbone, state, n_classes, "deep", sets,
                                                                        out, seed, cfg["size_study"]["min_steps"],
                                                                        device, stamp,
                                                                        calibrate_first=init["init"] == "random"))
            result.setdefault(str(n), {})[str(seed)] = got["accuracy"]
    return result


def curves(results: dict) -> dict[str, dict[int, list[float]]]:
    """{'<family>' (or '<family> (<mode>)' with several modes): {N: [accuracy per seed]}}."""
    out = {}
    for family, f in results["families"].items():
        for mode, by_n in f["accuracy"].items():
            label = family if len(f["accuracy"]) == 1 else f"{family} ({mode})"
            out[label] = {int(n): list(by_seed.values()) for n, by_seed in by_n.items()}
    return out


def chance(results: dict) -> float | None:
    values = [f["chance"] for f in results["families"].values() if f.get("chance")]
    return float(np.mean(values)) if values else None


def plan_table(results: dict) -> pd.DataFrame:
    """One row per family: individuals, training images available per individual, sizes run and dropped."""
    listed = lambda sizes: ", ".join(map(str, sizes)) or "–"  # noqa: E731
    rows = {family: {"individuals": f["n_individuals"],
                     "train images per individual (fewest)": f["available_per_individual"],
                     "sizes run": listed(f["sizes"]), "sizes dropped": listed(f["dropped"]), "test images": f["n_test"],
                     "note": f["note"]} for family, f in results["families"].items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("family")


def accuracy_table(results: dict, backbone: str) -> pd.DataFrame:
    """Long format: (backbone, family, mode, images per individual) -> mean and std over seeds, chance."""
    rows = []
    for family, f in results["families"].items():
        for mode, by_n in f["accuracy"].items():
            for n, by_seed in by_n.items():
                values = np.array(list(by_seed.values()), dtype=float)
                rows.append({"backbone": backbone, "family": family, "mode": mode, "images per individual": int(n),
                             "accuracy": float(np.nanmean(values)), "std": float(np.nanstd(values)),
                             "seeds": len(values), "chance": f["chance"]})
    index = ["backbone", "family", "mode", "images per individual"]
    return pd.DataFrame(rows, columns=index + ["accuracy", "std", "seeds", "chance"]).set_index(index)


def report_tables(cfg: dict, backbones, run_seed: int | None = None) -> list:
    """The report's size-study table (zfutils.tables.Table): rows backbone, mode and family,
    columns images per individual, cells the accuracies over the size study's seeds (mean ± std);
    with several training seeds, each seed's mean, so the report's seed merge gives mean ± std
    over training seeds."""

    found = stage_metrics(cfg["preset"], STAGE, backbones, run_seed)
    pooled = len(config.training_seeds(cfg)) == 1
    rows, dropped, chances = {}, set(), set()
    for b, m in found.items():
        for family, f in m.get("families", {}).items():
            label = row_label(b, f.get("init", {}).get("init"))
            dropped |= {(family, n) for n in f.get("dropped", [])}
            if f.get("chance"):
                chances.add(round(f["chance"], 3))
            for mode, by_n in f.get("accuracy", {}).items():
                rows[f"{label if mode == 'matching' else f'{label} {mode}'}, {family}"] = {
                    f"N={n}": (list(s.values()) if pooled else float(np.nanmean(list(s.values()))))
                    for n, s in sorted(by_n.items(), key=lambda item: int(item[0]))}
    if not rows:
        return []
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame = frame[sorted(frame.columns, key=lambda c: int(c[2:]))]
    drop_text = "; ".join(f"{fam}: N={n}" for fam, n in sorted(dropped))
    chance_text = ", ".join(map(str, sorted(chances))) or "–"
    caption = (f"Test accuracy on the session split's test images (recording sessions kept apart) with N training "
               f"images per individual from its training sessions; chance = {chance_text}. "
               + ("Mean ± std over draws of the N images (size_study.seeds). " if pooled else "")
               + (f"Sizes the training split cannot supply were dropped ({drop_text}). " if drop_text else "")
               + "Best per column in bold, worst in italic.")
    return [Table("size_study", "Training-set size: test accuracy against images per individual", frame, caption,
                  mark="column")]


def report_figure(cfg: dict, backbones) -> Path | None:
    """figures/<preset>/size_study.png: one panel per family, one curve per backbone (and mode),
    error bars over seeds (pooled over training seeds); None when no backbone ran stage 06."""
    import matplotlib.pyplot as plt

    from zfutils.plots import size_curves

    panels: dict[str, dict[str, dict[int, list[float]]]] = {}
    chances: dict[str, float] = {}
    for run_seed in config.training_seeds(cfg):
        for b, m in stage_metrics(cfg["preset"], STAGE, backbones, run_seed).items():
            for family, f in m.get("families", {}).items():
                chances[family] = f.get("chance")
                for mode, by_n in f.get("accuracy", {}).items():
                    curve = panels.setdefault(family, {}).setdefault(f"{b} {mode}", {})
                    for n, by_seed in by_n.items():
                        curve.setdefault(int(n), []).extend(by_seed.values())
    if not panels:
        return None
    fig = size_curves(panels, chances, title=f"Training-set size, preset {cfg['preset']}")
    target = paths.figures_dir(cfg["preset"])
    target.mkdir(parents=True, exist_ok=True)
    fig.savefig(target / "size_study.png", dpi=cfg["figures"]["dpi"], bbox_inches="tight")
    plt.close(fig)
    return target / "size_study.png"

"""Stage 07 (notebooks/07_transfer_species.ipynb): cross-species transfer. An encoder trained on one
synthetic pattern family (the configured one, stripes by default) meets another (spots), which it
never saw:

- zero-shot: retrieval (top-k, mAP; test images query every other classification image, images
  of the query's own individual and session left out) and k-means clustering (k = number of
  individuals; ARI, NMI, silhouette) of its embeddings of the new family, and the same on the
  configured family's held-out individuals (the open split, leave-one-out retrieval);
- few-shot: a linear probe (shallow, on the frozen encoder's features) trained on N images per
  individual of the new family (`transfer.few_shot`) and tested on its session-split test images.

Two encoders: the weights stage 03 starts from ("before fine-tuning": stage 02's inpainting
checkpoint, or ImageNet or random weights) and stage 03's deep classifier ("fine-tuned on
<family>", its best checkpoint). A matching backbone has no encoder: its zero-shot transfer is
matching on the new family, its few-shot the N images as gallery, and it has no clustering.
Real data has one family: the stage records that it does not apply and writes empty results.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from zfutils import cluster, config, fewshot, paths
from zfutils.data import families
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.models import get
from zfutils.provenance import device_info
from zfutils.retrieval import retrieval_metrics
from zfutils.stage import Stage
from zfutils.tables import Table, row_label, stage_metrics
from zfutils.train.checkpoint import load_checkpoint
from zfutils.train.classifier_setup import build_classifier, initial_state

STAGE = paths.TRANSFER_SPECIES
COLUMN = fewshot.COLUMN
CLUSTER_KEYS = ("ari", "ari_std", "nmi", "nmi_std", "silhouette", "silhouette_std")


def run_transfer(stage: Stage) -> dict:
    """Zero-shot and few-shot scores of every encoder on every other family; metrics.json gets
    them as they come (encoders.<encoder>.zero_shot.<family>, .held_out, .few_shot.<family>.<N>.<seed>)."""
    cfg = stage.cfg
    source, targets = families.configured(cfg), families.others(cfg)
    out = {"applicable": bool(targets), "method": "matching" if fewshot.is_matching(cfg) else "classifier",
           "source": source, "targets": targets, "encoders": {}, "notes": []}
    if not targets:
        out["notes"].append(f"not applicable: needs synthetic pattern families (data.source synth); this run reads "
                            f"data.source '{cfg['data']['source']}', which has one")
        stage.log_metrics(**out)
        return out
    data = families.load(cfg, source)
    target_data = {family: families.load(cfg, family) for family in targets}
    out["few_shot_plan"] = {family: _plan(d, cfg["transfer"]["few_shot"]) for family, d in target_data.items()}
    out["held_out_seen_in_training"] = cfg["split"]["classify"] != "open"
    if out["method"] == "matching":
        out["encoders"]["matching"] = matching_transfer(cfg, data, target_data, out["few_shot_plan"])
        stage.log_metrics(**out)
        return out
    device = device_info(cfg["device"])["device"]
    for name, model, record in encoders(cfg, data, device, out["notes"]):
        where = stage.dir / "runs" / name.split()[0]
        out["encoders"][name] = {**record, **evaluate_encoder(model, cfg, data, target_data, out["few_shot_plan"],
                                                              where, device)}
        stage.log_metrics(**out)
    return out


def _plan(data: StoredDataset, requested) -> dict:
    rows = data.meta[data.meta["task"] == "classify"]
    available = fewshot.available_per_individual(rows, COLUMN)
    sizes, dropped = fewshot.usable_sizes(requested, available)
    n = int(rows["identity"].nunique())
    return {"available_per_individual": available, "sizes": sizes, "dropped": dropped, "n_individuals": n,
            "chance": 1 / n if n else None}


def finetuned_checkpoint(cfg: dict):
    """Stage 03's best deep classifier of this backbone and training seed."""
    return paths.run_stage_dir(cfg, paths.FINETUNE_CLASSIFIER, cfg["backbone"]["name"]) / "deep" / "checkpoints" / "best.pt"


def encoders(cfg: dict, data: StoredDataset, device: str, notes: list) -> list[tuple[str, object, dict]]:
    """(name, classifier, record) of the encoder before fine-tuning and of stage 03's deep one."""
    backbone = get(cfg["backbone"]["name"])
    n_classes = len(ClassificationSet(data, "train").classes)  # stage 03's head
    state, init = initial_state(cfg, backbone)
    torch.manual_seed(config.training_seed(cfg))
    before = build_classifier(cfg, backbone, state, n_classes)
    if init["init"] == "random":  # statistics of the family it would be trained on
        fewshot.calibrate(before, ClassificationSet(data, "train"), cfg, device, config.training_seed(cfg))
    found = [("before fine-tuning", before, {"init": init})]
    path = finetuned_checkpoint(cfg)
    if not path.is_file():
        if "deep" in cfg["classify"]["modes"]:
            raise FileNotFoundError(f"{path} does not exist: the fine-tuned encoder is stage 03's deep classifier; run "
                                    f"stage 03 for {backbone.name} first (python -m zfutils.pipeline --preset "
                                    f"{cfg['preset']} --backbones {backbone.name} --stages 03)")
        notes.append("classify.modes has no deep mode: no fine-tuned encoder (a shallow classifier's encoder is the "
                     "one before fine-tuning)")
        return found
    tuned = build_classifier(cfg, backbone, None, n_classes)
    tuned.load_state_dict(load_checkpoint(path)["model"])
    found.append((f"fine-tuned on {families.configured(cfg)}", tuned, {"init": {"init": "fine-tuned",
                                                                                "checkpoint": str(path)}}))
    return found


def scores(vectors: np.ndarray, rows: pd.DataFrame, cfg: dict, queries=None) -> dict:
    """Retrieval (same-session positives left out; `queries` marks who asks, None: everyone) and
    k-means clustering of `vectors` against the identities of `rows`."""
    ids, sessions = rows["identity"].astype(str).to_numpy(), rows["session"].astype(str).to_numpy()
    found = retrieval_metrics(vectors, ids, sessions, ks=tuple(cfg["classify"]["retrieval_ks"]), queries=queries)
    grouped = cluster.cluster_scores(vectors, ids, seeds=tuple(cfg["cluster"]["seeds"]),
                                     scaling=cfg["cluster"]["scaling"])
    return {**found, **{k: grouped[k] for k in CLUSTER_KEYS}, "k": grouped["k"], "n": grouped["n"],
            "cluster_note": grouped["note"]}


def evaluate_encoder(model, cfg: dict, data: StoredDataset, target_data: dict, plans: dict, where, device: str) -> dict:
    """Zero-shot scores on each new family and on the held-out individuals; few-shot probes."""
    backbone = get(cfg["backbone"]["name"])
    out = {"zero_shot": {}, "few_shot": {}, "held_out": None}
    for family, target in target_data.items():
        every = ClassificationSet(target, fewshot.SPLITS, column=COLUMN)  # every classification image
        features = fewshot.frozen_features(model, every, cfg, device, where)
        rows = every.rows
        asking = (rows["split"] == "test").to_numpy()
        out["zero_shot"][family] = {**scores(features.embedding.numpy(), rows, cfg, asking), "protocol": "gallery"}
        stored = fewshot.by_split(features, rows, COLUMN)
        train_rows = rows[rows[COLUMN] == "train"].reset_index(drop=True)
        key = fewshot.digest(cfg["classify"], cfg["transfer"]["min_steps"], family,
                             *(stored[k].embedding for k in fewshot.SPLITS))
        out["few_shot"][family] = fewshot.probe_sweep(cfg, backbone, stored, train_rows, len(every.classes),
                                                      plans[family]["sizes"], cfg["transfer"]["seeds"],
                                                      where / family, key, cfg["transfer"]["min_steps"], device)
    held = ClassificationSet(data, "test", column="split_open")
    if len(held) >= 2:
        vectors = fewshot.frozen_features(model, held, cfg, device, where).embedding.numpy()
        out["held_out"] = {**scores(vectors, held.rows, cfg), "protocol": "loo"}
    return out


def matching_transfer(cfg: dict, data: StoredDataset, target_data: dict, plans: dict) -> dict:
    """Local-feature matching on each new family (zero-shot retrieval; few-shot: N gallery images
    per individual) and on the held-out individuals; no clustering (no embedding)."""
    from zfutils.localfeatures import similarity_retrieval_metrics
    from zfutils.matching import open_retrieval

    ks = tuple(cfg["classify"]["retrieval_ks"])
    out = {"init": {"init": "none", "why": "matching learns nothing"}, "zero_shot": {}, "few_shot": {}, "cost": {},
           "held_out": None, "note": "matching has no embedding: no clustering"}
    for family, target in target_data.items():
        every = ClassificationSet(target, fewshot.SPLITS, column=COLUMN)  # every classification image
        asking = (every.rows["split"] == "test").to_numpy()
        items = [every[i] for i in range(len(every))]
        queries = [items[i] for i in np.flatnonzero(asking)]
        similarity, out["cost"][family] = fewshot.match_scores(cfg, target, items, queries)
        found = similarity_retrieval_metrics(similarity, every.rows["identity"].to_numpy(),
                                             every.rows["session"].to_numpy(), ks, asking)
        out["zero_shot"][family] = {**found, "protocol": "gallery"}
        out["few_shot"][family], _ = fewshot.matching_sweep(cfg, target, plans[family]["sizes"],
                                                            cfg["transfer"]["seeds"])
    out["held_out"], _ = open_retrieval(cfg, data, fewshot.matching_region(cfg, data))
    return out


def _where(result: dict, family: str | None) -> str:
    return f"{family} (zero-shot)" if family else f"{result['source']}, held-out individuals"


def zero_shot_table(result: dict) -> pd.DataFrame:
    """Rows (encoder, evaluated on); columns top-k, mAP, ARI, NMI, silhouette."""
    metrics = [f"top{k}" for k in (1, 5)] + ["mAP", "ari", "nmi", "silhouette", "n_queries"]
    rows = {}
    for encoder, r in result.get("encoders", {}).items():
        for family, got in [*r["zero_shot"].items(), (None, r["held_out"])]:
            if got:
                rows[(encoder, _where(result, family))] = {m: got.get(m, np.nan) for m in metrics}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=metrics)
    frame.index = pd.MultiIndex.from_tuples(list(rows), names=["encoder", "evaluated on"]) if rows else \
        pd.MultiIndex.from_tuples([], names=["encoder", "evaluated on"])
    return frame


def few_shot_curves(result: dict) -> dict[str, dict[int, list[float]]]:
    """{'<encoder>' (or '<encoder> → <family>' with several new families): {N: [accuracy per seed]}}."""
    out = {}
    for encoder, r in result.get("encoders", {}).items():
        for family, by_n in r["few_shot"].items():
            label = encoder if len(r["few_shot"]) == 1 else f"{encoder} → {family}"
            out[label] = {int(n): list(s.values()) for n, s in by_n.items()}
    return out


def few_shot_table(result: dict) -> pd.DataFrame:
    """Long format: (encoder, family, images per individual) -> mean and std over seeds, chance."""
    rows = []
    for encoder, r in result.get("encoders", {}).items():
        for family, by_n in r["few_shot"].items():
            for n, by_seed in by_n.items():
                values = np.array(list(by_seed.values()), dtype=float)
                rows.append({"encoder": encoder, "family": family, "images per individual": int(n),
                             "accuracy": float(np.nanmean(values)), "std": float(np.nanstd(values)),
                             "seeds": len(values), "chance": result["few_shot_plan"][family]["chance"]})
    index = ["encoder", "family", "images per individual"]
    return pd.DataFrame(rows, columns=index + ["accuracy", "std", "seeds", "chance"]).set_index(index)


def chance(result: dict) -> float | None:
    values = [p["chance"] for p in result.get("few_shot_plan", {}).values() if p.get("chance")]
    return float(np.mean(values)) if values else None


REPORT_METRICS = {"top1": "top-1", "top5": "top-5", "mAP": "mAP", "ari": "ARI", "nmi": "NMI",
                  "silhouette": "Silhouette"}


def report_tables(cfg: dict, backbones, run_seed: int | None = None) -> list:
    """The report's cross-species tables (zfutils.tables.Table): zero-shot scores per backbone and
    encoder on the new family and the held-out individuals, and few-shot probe accuracy (cells:
    the transfer seeds' accuracies, shown as mean ± std; with several training seeds each seed's
    mean, so the report's seed merge gives mean ± std over training seeds)."""

    found = {b: m for b, m in stage_metrics(cfg["preset"], STAGE, backbones, run_seed).items() if m.get("applicable")}
    pooled = len(config.training_seeds(cfg)) == 1
    zero, few, seen, plans = {}, {}, False, {}
    for b, m in found.items():
        seen |= bool(m.get("held_out_seen_in_training"))
        plans.update(m.get("few_shot_plan", {}))
        for encoder, r in m["encoders"].items():
            label = row_label(b, r.get("init", {}).get("init"))
            cells = {}
            for family, got in [*r["zero_shot"].items(), (None, r.get("held_out"))]:
                where = f"{family}, zero-shot" if family else f"{m['source']}, held out"
                cells.update({f"{name} ({where})": (got or {}).get(key) for key, name in REPORT_METRICS.items()})
            row = label if encoder == "matching" else f"{label}, {encoder}"
            zero[row] = cells
            for family, by_n in r["few_shot"].items():
                few[f"{row} → {family}"] = {
                    f"N={n}": (list(s.values()) if pooled else float(np.nanmean(list(s.values()))))
                    for n, s in sorted(by_n.items(), key=lambda item: int(item[0]))}
    if not zero:
        return []
    source = next(iter(found.values()))["source"]
    held_note = (" The held-out individuals are those of the open split; under this run's split rule stage 03 "
                 "trained on other images of them, so for the fine-tuned encoder they are unseen images, not unseen "
                 "individuals."
                 if seen else "")
    out = [Table("cross_species_zero_shot", f"Cross-species transfer: zero-shot, encoders trained on {source}",
                 pd.DataFrame.from_dict(zero, orient="index"),
                 "Retrieval: test images query every other classification image of the new family, the query's own "
                 "individual and session left out (held out: leave-one-out); clustering: k-means, k = number of "
                 f"individuals.{held_note} Best per column in bold, worst in italic.", mark="column")]
    if few:
        frame = pd.DataFrame.from_dict(few, orient="index")
        chances = ", ".join(f"{f} {p['chance']:.3f}" for f, p in plans.items() if p.get("chance"))
        dropped = "; ".join(f"{f}: N={n}" for f, p in plans.items() for n in p.get("dropped", []))
        out.append(Table("cross_species_few_shot", "Cross-species transfer: few-shot linear probe on the new family",
                         frame[sorted(frame.columns, key=lambda c: int(c[2:]))],
                         f"Test accuracy on the new family's session-split test images with N training images per "
                         f"individual (frozen encoder, linear probe; matching: N gallery images); chance: {chances}."
                         + (" Mean ± std over draws (transfer.seeds)." if pooled else "")
                         + (f" Dropped (too few training images): {dropped}." if dropped else "")
                         + " Best per column in bold, worst in italic.", mark="column"))
    return out

"""Stage 04 (notebooks/04_ablate_regions.ipynb): the region ablation. For every condition (which of
background, fish and pattern the model may see) and mode, a classifier is trained from the
backbone's starting weights on the ablation set and tested; removed regions are filled with the
backbone's own "missing pixel" value. The study's Table 1 (deep) and Table 2 (shallow) are these
accuracies."""
from __future__ import annotations

import copy

import pandas as pd
import torch

from zfutils import matching
from zfutils.data.ablation import ablation_sets, apply_condition, select_ablation_rows
from zfutils.train.classifier_setup import train_classifier
from zfutils.data.format import StoredDataset
from zfutils.models import get
from zfutils.provenance import device_info
from zfutils.stage import Stage


def split_rule(cfg: dict) -> str:
    """The run's split rule for re-splitting the ablation set (held-out individuals cannot be
    classified, so the open rule falls back to random)."""
    return cfg["split"]["classify"] if cfg["split"]["classify"] in ("random", "session") else "random"


def ablation_rows(cfg: dict, data: StoredDataset) -> pd.DataFrame:
    a = cfg["ablation"]
    return select_ablation_rows(data.meta, per_individual=a["per_individual"], seed=cfg["seed"],
                                ratios=cfg["split"]["classify_ratios"], rule=split_rule(cfg), source=a["source"])


def run_ablation(stage: Stage, data: StoredDataset) -> pd.DataFrame:
    """Train and test every condition x mode; returns one row each (condition, mode, accuracy, ...)
    and logs them to metrics.json as they finish."""
    cfg = copy.deepcopy(stage.cfg)
    if cfg["ablation"]["epochs"]:
        cfg["classify"]["epochs"] = cfg["ablation"]["epochs"]
    device = device_info(cfg["device"])["device"]
    fill = get(cfg["backbone"]["name"]).missing_fill
    rows = ablation_rows(cfg, data)
    stage.log_metrics(ablation_set={"rule": split_rule(cfg), "fill": list(fill), **rows.attrs.get("ablation", {}),
                                    "sizes": rows["split_ablation"].value_counts().to_dict()})
    records = []
    for condition in cfg["ablation"]["conditions"]:
        sets = ablation_sets(data, rows, condition, fill)
        if matching.is_matcher(cfg["backbone"]["name"]):  # nothing to train: match under the condition
            test = matching.ablate(cfg, sets, condition)
            records.append({"condition": condition, "mode": matching.MODE, "accuracy": test["accuracy"],
                            "macro_f1": test["macro_f1"], "best_epoch": None, "init": "none"})
            stage.log_metrics(results=records)
            continue
        for mode in cfg["ablation"]["modes"]:
            trainer, best, init = train_classifier(cfg, mode, sets, stage.dir / condition / mode, device, tag=condition)
            test = trainer.evaluate(sets["test"], len(sets["train"].classes))
            records.append({"condition": condition, "mode": mode, "accuracy": test["accuracy"],
                            "macro_f1": test["macro_f1"], "best_epoch": best["best_epoch"], "init": init["init"]})
            stage.log_metrics(results=records)
    stage.log_metrics(chance=1 / len(sets["train"].classes))
    return pd.DataFrame(records)


def accuracy_table(records: pd.DataFrame, backbone: str) -> pd.DataFrame:
    """Test accuracy with modes as rows and conditions as columns (the study's layout)."""
    table = records.pivot(index="mode", columns="condition", values="accuracy")
    table = table[[c for c in records["condition"].unique()]]
    table.index = [f"{backbone} ({mode})" for mode in table.index]
    return table


def condition_examples(data: StoredDataset, rows: pd.DataFrame, fill, conditions, n: int = 2) -> dict:
    """`n` images of the ablation set under every condition, for the figure of what each model saw."""
    plain = ablation_sets(data, rows, "all", fill)["test"].dataset
    items = [plain[i] for i in range(min(n, len(plain)))]
    out = {}
    for condition in conditions:
        out[condition] = torch.stack([apply_condition(it["image"], it["fish"], it["pattern"], condition, fill)
                                      for it in items])
    return out

"""Stage 05 (notebooks/05_cluster_embeddings.ipynb): how well a backbone's embeddings cluster by
individual, before (inpainting only, stage 02) and after (refined, the deep classifier of stage 03)
fine-tuning; the study's Table 4 rows `<backbone>` and `ref-<backbone>`, on the test split and on
held-out individuals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from zfutils import cluster, config, paths
from zfutils.embed import load_embeddings

SOURCES = {  # (row-name prefix, stage, file) per split; a matching method's are its match profiles
    "test": [("", paths.INPAINT_PATTERNS, "embeddings.npz"), ("ref-", paths.FINETUNE_CLASSIFIER, "embeddings_ref.npz"),
             ("", paths.FINETUNE_CLASSIFIER, "embeddings_match.npz")],
    "open": [("", paths.INPAINT_PATTERNS, "embeddings_open.npz"),
             ("ref-", paths.FINETUNE_CLASSIFIER, "embeddings_ref_open.npz"),
             ("", paths.FINETUNE_CLASSIFIER, "embeddings_match_open.npz")],
}


def embedding_files(cfg: dict, split: str = "test") -> dict[str, Path]:
    """The embedding files of this backbone that exist, by Table 4 row name. Baselines have no
    inpainting stage, so only their refined row."""
    backbone = cfg["backbone"]["name"]
    found = {}
    for prefix, stage, name in SOURCES[split]:
        path = paths.run_stage_dir(cfg, stage, backbone) / name
        if path.is_file():
            found[f"{prefix}{backbone}"] = path
    if not found:
        raise FileNotFoundError(f"no embeddings of {backbone} for preset {cfg['preset']} ({split} split); run stages "
                                "02 and 03 first")
    return found


def load_named(files: dict[str, Path]) -> dict[str, dict[str, np.ndarray]]:
    return {name: load_embeddings(path) for name, path in files.items()}


def table4(named: dict[str, dict], cfg: dict) -> pd.DataFrame:
    """Table 4 rows (k-means scores, mean over seeds, with their std) for each embedding."""
    c = cfg["cluster"]
    return cluster.table4_rows({n: (e["embeddings"], e["identity"]) for n, e in named.items()},
                               seeds=tuple(c["seeds"]), scaling=c["scaling"])


def projections(named: dict[str, dict], cfg: dict) -> dict[tuple[str, str], np.ndarray]:
    """2-D coordinates per (embedding name, method)."""
    c = cfg["cluster"]
    return {(name, method): cluster.project(e["embeddings"], method, seed=config.training_seed(cfg), scaling=c["scaling"])
            for name, e in named.items() for method in c["methods"]}

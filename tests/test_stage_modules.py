"""Stages 04 and 05 plumbing on small data: ablation rows and tables, clustering inputs, the explorer."""
import numpy as np
import pandas as pd
import pytest
import torch

from tests.test_torchsets import split_data
from zfutils import config, paths
from zfutils.embed import save_embeddings
from zfutils.stages import ablate_regions, cluster_embeddings


def test_split_rule_falls_back_to_random_for_open():
    assert ablate_regions.split_rule(config.resolve("smoke")) == "session"
    assert ablate_regions.split_rule(config.resolve("smoke", None, {"split.classify": "open"})) == "random"


def test_ablation_rows_and_condition_examples(tmp_path):
    data = split_data(tmp_path, per_session=4)
    cfg = config.resolve("smoke", "lama", {"ablation.per_individual": 8, "ablation.source": "classify",
                                           "split.classify": "random"})
    rows = ablate_regions.ablation_rows(cfg, data)
    assert rows.groupby("identity").size().max() <= 8 and set(rows["split_ablation"]) == {"train", "val", "test"}
    examples = ablate_regions.condition_examples(data, rows, (0.0, 0.0, 0.0), ["pattern_only", "all"], n=2)
    assert examples["all"].shape == (2, 3, 16, 16)
    removed = examples["pattern_only"] != examples["all"]
    assert removed.any() and torch.all(examples["pattern_only"][removed] == 0)


def test_accuracy_table_layout():
    records = pd.DataFrame([{"condition": c, "mode": m, "accuracy": a} for c, m, a in
                            [("pattern_only", "deep", 0.9), ("no_pattern", "deep", 0.2),
                             ("pattern_only", "shallow", 0.5), ("no_pattern", "shallow", 0.4)]])
    table = ablate_regions.accuracy_table(records, "lama")
    assert list(table.columns) == ["pattern_only", "no_pattern"]
    assert table.loc["lama (deep)", "pattern_only"] == 0.9


def test_clustering_finds_embeddings_and_scores_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    data = split_data(tmp_path, per_session=4)
    from zfutils.data.torchsets import ClassificationSet

    rows = ClassificationSet(data, ("train", "val", "test"))
    rng = np.random.default_rng(0)
    centres = {c: rng.normal(size=8) * 5 for c in rows.classes}
    vectors = np.stack([centres[i] + rng.normal(size=8) * 0.1 for i in rows.rows["identity"]]).astype(np.float32)
    for stage, name in (("02_inpaint_patterns", "embeddings.npz"), ("03_finetune_classifier", "embeddings_ref.npz")):
        d = paths.stage_dir("smoke", stage, "lama")
        d.mkdir(parents=True)
        save_embeddings(d / name, vectors, rows)
    cfg = config.resolve("smoke", "lama")
    files = cluster_embeddings.embedding_files(cfg, "test")
    assert set(files) == {"lama", "ref-lama"}
    table = cluster_embeddings.table4(cluster_embeddings.load_named(files), cfg)
    assert np.allclose(table["ari"], 1.0)
    coords = cluster_embeddings.projections(cluster_embeddings.load_named(files), cfg)
    assert set(coords) == {(n, m) for n in ("lama", "ref-lama") for m in ("pca", "tsne")}
    with pytest.raises(FileNotFoundError, match="run stages 02 and 03 first"):
        cluster_embeddings.embedding_files(cfg, "open")


def test_explorer_lists_embeddings_draws_and_picks_the_nearest_point(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tests.helpers import write_tiny_dataset
    from zfutils.data import build
    from zfutils.data.build import prepare_dataset
    from zfutils.data.torchsets import ClassificationSet
    from zfutils.explore import EmbeddingExplorer, available_embeddings

    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    monkeypatch.setitem(build.SOURCES, "synth", lambda cfg, out: write_tiny_dataset(out, per_session=4))
    cfg = config.resolve("smoke", None, {"cluster.methods": ["pca"]})
    data = prepare_dataset(cfg)
    rows = ClassificationSet(data, "test")
    d = paths.stage_dir("smoke", "03_finetune_classifier", "lama")
    d.mkdir(parents=True)
    vectors = np.random.default_rng(0).normal(size=(len(rows), 4)).astype(np.float32)
    save_embeddings(d / "embeddings_ref.npz", vectors, rows)
    assert set(available_embeddings("smoke", ["lama", "aotgan"])) == {("lama", "refined (deep)")}
    explorer = EmbeddingExplorer(cfg, ["lama", "aotgan"])
    explorer.draw()
    assert list(explorer.image.options) == rows.rows["image_id"].tolist()
    xy = explorer.coordinates(explorer.current())
    picked = []
    explorer.image.observe(lambda change: picked.append(change["new"]), names="value")
    explorer._clicked(SimpleNamespace(xdata=xy[2, 0] + 1e-6, ydata=xy[2, 1]), xy, explorer.current())
    assert explorer.image.value == rows.rows["image_id"].iloc[2]
    with pytest.raises(FileNotFoundError, match="run stages 02 and 03 first"):
        EmbeddingExplorer(cfg, ["aotgan"])


def test_table3_row_is_the_studys_table_3_row():
    from zfutils.stages import inpaint_patterns

    run = {"table3": {"best_val_g_loss": 0.25, "batch_size": 8, "best_iteration": 120, "other": 1},
           "test": {"l1_hole": 0.1, "psnr_hole": 18.0}}
    row = inpaint_patterns.table3_row(run, "lama")
    assert list(row.index) == ["lama"]
    assert row.loc["lama"].to_dict() == {"lowest validation generator loss": 0.25, "batch size": 8, "iterations": 120,
                                         "l1_hole": 0.1, "psnr_hole": 18.0}

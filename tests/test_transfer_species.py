"""Stage 07 (cross-species transfer): zero-shot retrieval and clustering scores, the encoders it
compares (before fine-tuning and stage 03's deep classifier), few-shot probes on the other family,
the matching path, "not applicable" for real data, and the report's tables."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import prepare_tiny_study
from zfutils import config, plots
from zfutils.data import build
from zfutils.data.torchsets import ClassificationSet
from zfutils.models import get
from zfutils.stage import open_stage
from zfutils.stages import transfer_species
from zfutils.train.classifier_setup import build_classifier


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    overrides = {"classify.init": "random", "transfer.few_shot": [1, 2, 50], "transfer.seeds": [0, 1],
                 "transfer.min_steps": 4, "classify.batch_size": 4, "cluster.seeds": [0]}
    return prepare_tiny_study(tmp_path, monkeypatch, overrides)  # stage 01


def fake_stage03(cfg):
    """Stage 03's deep best checkpoint: a classifier of this backbone with other weights."""
    data = build.load_prepared(cfg)
    torch.manual_seed(123)
    n_classes = len(ClassificationSet(data, "train").classes)
    model = build_classifier(cfg, get(cfg["backbone"]["name"]), None, n_classes)
    path = transfer_species.finetuned_checkpoint(cfg)
    path.parent.mkdir(parents=True)
    torch.save({"model": model.state_dict()}, path)


def test_scores_of_separated_embeddings():
    rng = np.random.default_rng(0)
    ids = np.repeat(["a", "b", "c"], 8)
    rows = pd.DataFrame({"identity": ids, "session": np.tile(np.repeat(["s0", "s1"], 4), 3)})
    centres = {i: rng.normal(size=6) * 10 for i in "abc"}
    vectors = np.stack([centres[i] + rng.normal(size=6) * 0.1 for i in ids])
    cfg = config.resolve("smoke", None, {"cluster.seeds": [0]})
    got = transfer_species.scores(vectors, rows, cfg, queries=rows["session"].eq("s1").to_numpy())
    assert got["top1"] == got["mAP"] == 1.0 and got["n_queries"] == 12
    assert got["ari"] == pytest.approx(1.0) and got["nmi"] == pytest.approx(1.0) and got["silhouette"] > 0.9
    assert got["k"] == 3 and got["n"] == 24


def test_transfer_end_to_end_on_tiny_data(tiny):
    stage = open_stage(transfer_species.STAGE, "smoke", backbone="aotgan", overrides=tiny)
    with pytest.raises(FileNotFoundError, match="run stage 03 for aotgan first"):
        transfer_species.run_transfer(stage)
    fake_stage03(stage.cfg)
    result = transfer_species.run_transfer(stage)
    assert result["applicable"] and result["source"] == "stripes" and result["targets"] == ["spots"]
    assert result["few_shot_plan"]["spots"]["sizes"] == [1, 2] and result["few_shot_plan"]["spots"]["dropped"] == [50]
    assert list(result["encoders"]) == ["before fine-tuning", "fine-tuned on stripes"]
    for r in result["encoders"].values():
        zero = r["zero_shot"]["spots"]
        assert {"top1", "top5", "mAP", "ari", "nmi", "silhouette"} <= set(zero) and zero["protocol"] == "gallery"
        assert zero["n_queries"] > 0 and zero["k"] == 4
        assert r["held_out"]["protocol"] == "loo" and r["held_out"]["n_queries"] > 0 and r["held_out"]["k"] == 2
        assert {n: set(s) for n, s in r["few_shot"]["spots"].items()} == {"1": {"0", "1"}, "2": {"0", "1"}}
    before, tuned = (r["zero_shot"]["spots"]["silhouette"] for r in result["encoders"].values())
    assert before != tuned  # two different encoders
    assert result["held_out_seen_in_training"]  # smoke trains on the session split: every individual seen
    saved = json.loads((stage.dir / "metrics.json").read_text())
    tuned = "fine-tuned on stripes"
    assert saved["encoders"][tuned]["few_shot"] == result["encoders"][tuned]["few_shot"]

    zero = transfer_species.zero_shot_table(result)
    assert zero.index.names == ["encoder", "evaluated on"] and len(zero) == 4
    assert ("before fine-tuning", "spots (zero-shot)") in zero.index
    few = transfer_species.few_shot_table(result)
    assert len(few) == 4 and (few["seeds"] == 2).all()
    fig = plots.transfer_summary(zero, transfer_species.few_shot_curves(result), transfer_species.chance(result))
    assert len(fig.axes) == 2

    tables = transfer_species.report_tables(config.resolve("smoke", None, tiny), ["aotgan", "lama"])
    assert [t.name for t in tables] == ["cross_species_zero_shot", "cross_species_few_shot"]
    assert list(tables[0].values.index) == ["aotgan (random init), before fine-tuning", "aotgan, fine-tuned on stripes"]
    assert {"top-1 (spots, zero-shot)", "ARI (stripes, held out)"} <= set(tables[0].values.columns)
    assert list(tables[1].values.columns) == ["N=1", "N=2"] and len(tables[1].values.iloc[0, 0]) == 2
    assert "unseen images, not unseen individuals" in tables[0].caption


def test_without_deep_mode_only_the_encoder_before_fine_tuning(tiny):
    stage = open_stage(transfer_species.STAGE, "smoke", backbone="aotgan",
                       overrides={**tiny, "classify.modes": ["shallow"], "transfer.few_shot": [1],
                                  "transfer.seeds": [0]})
    result = transfer_species.run_transfer(stage)
    assert list(result["encoders"]) == ["before fine-tuning"] and "no deep mode" in result["notes"][0]


def test_matching_backbone_transfers_by_matching(tiny):
    stage = open_stage(transfer_species.STAGE, "smoke", backbone="sift",
                       overrides={**tiny, "transfer.few_shot": [1], "transfer.seeds": [0]})
    result = transfer_species.run_transfer(stage)
    assert result["method"] == "matching" and list(result["encoders"]) == ["matching"]
    r = result["encoders"]["matching"]
    assert {"top1", "top5", "mAP"} <= set(r["zero_shot"]["spots"]) and "ari" not in r["zero_shot"]["spots"]
    assert r["held_out"]["protocol"] == "loo" and set(r["few_shot"]["spots"]) == {"1"}
    assert r["cost"]["spots"]["queries"] == r["zero_shot"]["spots"]["n_queries"] + r["zero_shot"]["spots"]["n_skipped"]
    [zero, few] = transfer_species.report_tables(config.resolve("smoke", None, tiny), ["sift"])
    assert list(zero.values.index) == ["sift (no training)"]
    assert list(few.values.index) == ["sift (no training) → spots"]


def test_real_data_is_not_applicable(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    stage = open_stage(transfer_species.STAGE, "smoke", backbone="aotgan",
                       overrides={"data.source": "folder", "data.path": str(tmp_path / "photos")})
    result = transfer_species.run_transfer(stage)
    assert not result["applicable"] and result["encoders"] == {} and "not applicable" in result["notes"][0]
    assert json.loads((stage.dir / "metrics.json").read_text())["applicable"] is False
    assert transfer_species.zero_shot_table(result).empty and transfer_species.few_shot_table(result).empty
    assert plots.transfer_summary(transfer_species.zero_shot_table(result), transfer_species.few_shot_curves(result)) is not None
    assert transfer_species.report_tables(stage.cfg, ["aotgan"]) == []

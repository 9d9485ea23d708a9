"""Stage 03's plumbing: where a classifier's weights come from, the watched images, the tables."""
import numpy as np
import pytest
import torch

from tests.test_torchsets import split_data
from zfutils import config, paths
from zfutils.data.torchsets import ClassificationSet
from zfutils.models import get
from zfutils.stages import finetune_classifier
from zfutils.train import cam_watch, classifier_setup


def test_initial_state_by_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke", "aotgan", {"classify.init": "random"})
    assert classifier_setup.initial_state(cfg, get("aotgan")) == (None, {"init": "random"})
    cfg = config.resolve("smoke", "aotgan")  # auto: the stage-02 checkpoint, which is missing here
    with pytest.raises(FileNotFoundError, match="run stage 02 for aotgan first"):
        classifier_setup.initial_state(cfg, get("aotgan"))
    best = paths.stage_dir("smoke", "02_inpaint_patterns", "aotgan") / "checkpoints" / "best.pt"
    best.parent.mkdir(parents=True)
    generator = get("aotgan").build_generator(width=0.125, blocks=1)
    torch.save({"generator": generator.state_dict()}, best)
    state, record = classifier_setup.initial_state(cfg, get("aotgan"))
    assert record["init"] == "inpainting" and set(state) == set(generator.state_dict())
    with pytest.raises(FileNotFoundError):  # explicitly asked-for official weights must exist
        classifier_setup.initial_state(config.resolve("smoke", "aotgan", {"classify.init": "pretrained",
                                                                        "model.pretrained": str(tmp_path / "G.pt")}),
                                     get("aotgan"))


def test_baseline_without_imagenet_weights_starts_random_and_says_why(tmp_path, monkeypatch):
    import zfutils.pretrained as pretrained

    monkeypatch.setattr(pretrained, "cache_dir", lambda: tmp_path / "empty")
    state, record = classifier_setup.initial_state(config.resolve("smoke", "efficientnet"), get("efficientnet"))
    assert state is None and record["init"] == "random" and "efficientnet_b0" in record["why"]


def test_cam_watch_set_spreads_over_identities(tmp_path):
    data = split_data(tmp_path, per_session=6)
    val = ClassificationSet(data, ("train", "val", "test"))
    watch = cam_watch.cam_watch_set(val, 3)
    assert sorted(val.classes[int(k)] for k in watch["label"]) == ["fish_0", "fish_1", "fish_2"]
    assert watch["image"].shape[0] == 3 and watch["pattern"].dtype == torch.bool


def test_tables_from_results():
    results = {m: {"init": {"init": "random"}, "best": {"best_epoch": 2},
                   "test": {"accuracy": 0.5, "macro_recall": 0.4, "macro_f1": 0.3},
                   "retrieval": {"test": {"top1": 0.9, "top5": 1.0, "mAP": 0.8, "n_queries": 10, "protocol": "gallery"},
                                 "open": {"top1": 0.5, "top5": 0.9, "mAP": 0.6, "n_queries": 7, "protocol": "loo"}}}
               for m in ("shallow", "deep")}
    table = finetune_classifier.test_table(results, "lama", chance=1 / 6)
    assert table.loc[("lama", "deep"), "accuracy"] == 0.5 and np.isclose(table["chance"].iloc[0], 1 / 6)
    retrieval = finetune_classifier.retrieval_table(results, "lama")
    assert retrieval.loc[("lama", "shallow", "open (unseen)"), "n_queries"] == 7
    assert len(retrieval) == 4


def test_cam_watcher_saves_cams_overlays_and_focus_shares(tmp_path):
    data = split_data(tmp_path, size=32)
    val = ClassificationSet(data, ("train", "val", "test"))
    backbone = get("aotgan")
    from zfutils.models.classifier import Classifier

    model = Classifier(backbone=backbone, generator=backbone.build_generator(width=0.125, blocks=1), n_classes=3,
                       embed_dim=backbone.embed_dim(0.125))
    watcher = cam_watch.CamWatcher(cam_watch.cam_watch_set(val, 3), tmp_path)
    shares = watcher(1, model)
    assert set(shares) >= {"cam_pattern", "cam_fish_outside_pattern", "cam_background"}
    finite = [v for k, v in shares.items() if k != "cam_n_empty" and np.isfinite(v)]
    assert not finite or abs(sum(finite) - 1) < 1e-5
    assert (tmp_path / "cams" / "epoch_001.png").is_file()
    with np.load(tmp_path / "cams.npz") as saved:
        assert saved["epoch_001"].shape == (3, 32, 32)
    resumed = cam_watch.CamWatcher(watcher.watch, tmp_path)  # trained elsewhere (launch, a resumed run)
    resumed.restore(2)
    assert list(resumed.cams) == [1] and np.allclose(resumed.cams[1], watcher.cams[1], atol=1e-3)


def test_head_comparison_trains_each_pooling_per_seed_and_reuses_the_main_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    data = split_data(tmp_path, size=32, per_session=4)
    best = paths.stage_dir("smoke", "02_inpaint_patterns", "aotgan") / "checkpoints" / "best.pt"
    best.parent.mkdir(parents=True)  # the configured start: stage 02's checkpoint, whatever the training seed
    torch.save({"generator": get("aotgan").build_generator(width=0.125, blocks=1).state_dict()}, best)
    cfg = config.resolve("smoke", "aotgan", {"data.image_size": 32, "classify.epochs": 1,
                                             "classify.head_comparison.poolings": ["avg"],
                                             "classify.head_comparison.modes": ["shallow"],
                                             "classify.head_comparison.seeds": [0, 1]})
    main = {"shallow": {"test": {"accuracy": 0.123}}}
    rows = finetune_classifier.head_comparison(cfg, data, tmp_path / "stage", "cpu", main)
    assert [(r["pooling"], r["mode"], r["seed"], r["main_run"]) for r in rows] == [
        ("flatten", "shallow", 0, True), ("flatten", "shallow", 1, False),
        ("avg", "shallow", 0, False), ("avg", "shallow", 1, False)]
    assert rows[0]["accuracy"] == 0.123
    n_test = len(ClassificationSet(data, "test"))
    assert all(r["n_test"] == n_test and 0 <= r["accuracy"] <= 1 for r in rows)
    runs = sorted(p.name for p in (tmp_path / "stage" / "head_comparison").iterdir())
    assert runs == ["avg-shallow-seed0", "avg-shallow-seed1", "flatten-shallow-seed1"]
    log = (tmp_path / "stage" / "head_comparison" / "avg-shallow-seed0" / "train_log.jsonl").read_text()
    again = finetune_classifier.head_comparison(cfg, data, tmp_path / "stage", "cpu", main)  # finished runs resume at their end
    assert again == rows
    assert (tmp_path / "stage" / "head_comparison" / "avg-shallow-seed0" / "train_log.jsonl").read_text() == log
    assert finetune_classifier.pooling_label("flatten", 8) == "flatten 8x8" and finetune_classifier.pooling_label("avg", 8) == "avg"


def test_random_start_control_trains_each_mode_from_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    data = split_data(tmp_path, size=32, per_session=4)
    cfg = config.resolve("smoke", "aotgan", {"data.image_size": 32, "classify.epochs": 1})  # init auto: stage 02's
    calls = []
    real = classifier_setup.initial_state
    monkeypatch.setattr(classifier_setup, "initial_state", lambda c, b: calls.append(c["classify"]["init"]) or real(c, b))
    out = finetune_classifier.random_start_control(cfg, data, tmp_path / "stage", "cpu")
    assert calls == ["random", "random"]  # no stage-02 checkpoint is needed, none is read
    n_test = len(ClassificationSet(data, "test"))
    assert set(out) == {"shallow", "deep"} and all(r["n_test"] == n_test and 0 <= r["accuracy"] <= 1 for r in out.values())
    assert all((tmp_path / "stage" / "random_start" / m / "checkpoints" / "best.pt").is_file() for m in out)


def test_area_shares_are_what_a_uniform_map_gives(tmp_path):
    data = split_data(tmp_path, size=32)
    watch = cam_watch.cam_watch_set(ClassificationSet(data, ("train", "val", "test")), 3)
    areas = cam_watch.CamWatcher(watch, tmp_path).area_shares()
    fish, pattern = watch["fish"][:, 0].numpy() > 0.5, watch["pattern"][:, 0].numpy() > 0.5
    assert np.isclose(areas["pattern"], pattern.mean(axis=(1, 2)).mean())
    assert np.isclose(areas["background"], (~fish & ~pattern).mean(axis=(1, 2)).mean())
    assert np.isclose(sum(areas.values()), 1.0)

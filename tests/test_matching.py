"""Local-feature matching methods as backbones: registered without a network, evaluated by
matching in stage 03's and 04's result shapes."""
import numpy as np
import pytest
import torch

from tests.test_torchsets import split_data
from zfutils import config, matching, models
from zfutils.data.ablation import ablation_sets, select_ablation_rows
from zfutils.data.build import prepare_dataset


def test_matchers_are_registered_without_a_network():
    for name in ("sift", "orb"):
        backbone = models.get(name)
        assert backbone.family == "matching" and backbone.matcher == {"method": name}
        with pytest.raises(ValueError, match="local-feature matching method"):
            backbone.build_generator()
        assert matching.is_matcher(name) and not matching.is_matcher("aotgan")


def test_predict_takes_the_best_gallery_image_per_individual_and_breaks_ties_at_random():
    similarity = np.array([[0, 9, 3, 0], [0, 0, 0, 0], [5, 0, 0, 6]], float)
    labels = np.array([0, 1, 1, 2])
    pred = matching.predict(similarity, labels, 3, seed=0)
    assert pred[0] == 1 and pred[2] == 2
    ties = [matching.predict(np.zeros((200, 4)), labels, 3, seed=s) for s in (0, 1)]
    assert set(np.unique(ties[0])) == {0, 1, 2} and not np.array_equal(ties[0], ties[1])


def test_focus_map_lies_on_the_keypoints_of_the_verified_matches():
    rng = np.random.default_rng(0)
    texture = (rng.random((16, 16)) > 0.5).astype(np.float32)
    image = torch.from_numpy(np.kron(texture, np.ones((4, 4), np.float32)))[None].repeat(3, 1, 1)
    fish = torch.zeros(1, 64, 64, dtype=torch.bool)
    fish[:, 16:48, 8:56] = True
    item = {"image": image * fish, "fish": fish, "pattern": fish, "label": torch.tensor(0)}
    index = matching.make_index(config.resolve("smoke", "sift"))
    maps = matching.focus_maps(index, [item], [dict(item)], lambda it: it["fish"][0].numpy(), sigma=2.0)
    assert maps.shape == (1, 64, 64) and maps.max() == pytest.approx(1.0)
    assert maps[0][~fish[0].numpy()].sum() < 0.05 * maps[0].sum()  # the evidence lies on the fish
    blank = dict(item, image=torch.zeros_like(image))
    assert matching.focus_maps(index, [blank], [dict(item)], lambda it: it["fish"][0].numpy(), 2.0).max() == 0


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    import os

    os.environ["ZF_WORKDIR"] = str(tmp_path_factory.mktemp("match"))
    # the frames, not aligned fish: aligned, every fish's pattern region has nearly one outline, and
    # in the pattern-only condition SIFT matches that outline across individuals (smoke: 0.15, frames 0.45)
    cfg = config.resolve("smoke", "sift", {"data.align": False})
    return cfg, prepare_dataset(cfg)


def test_stage03_evaluation_has_the_shape_of_a_trained_classifier(smoke_data):
    cfg, data = smoke_data
    result = matching.evaluate(cfg, data)
    assert set(result) >= {"init", "best", "test", "classes", "history", "retrieval", "watcher", "cost"}
    assert result["init"]["init"] == "none" and result["best"]["best_epoch"] is None
    n = len(result["classes"])
    assert np.array(result["test"]["confusion"]).shape == (n, n)
    assert result["test"]["accuracy"] > 1.5 / n  # the pattern identifies a synthetic fish; chance is 1/n
    assert result["retrieval"]["open"]["mAP"] > 1.5 / n and result["retrieval"]["open"]["protocol"] == "loo"
    assert result["retrieval"]["test"]["n_queries"] == np.sum(result["test"]["confusion"])  # every test image asks
    shares = [result["history"][0][k] for k in ("cam_pattern", "cam_fish_outside_pattern", "cam_background")]
    assert sum(shares) == pytest.approx(1.0)
    assert result["history"][0]["cam_background"] < shares[0] + shares[1]  # keypoints on the fish; splats spill a little
    assert result["watcher"].cams[0].shape[0] == len(result["watcher"].watch["label"])
    profiles = result["profiles"]["test"]  # the clustering stage's embedding of a matcher
    assert profiles.shape == (n_test := int(np.sum(result["test"]["confusion"])), len(profiles[0])) and n_test > 0
    norms = np.linalg.norm(profiles, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    assert np.all(np.diag(result["profiles"]["open"]) == 0)  # no self-matches among the held-out images
    assert result["cost"]["seconds_per_query"] > 0


def test_stage04_condition_keeps_keypoints_in_the_kept_region(smoke_data):
    cfg, data = smoke_data
    a = cfg["ablation"]
    rows = select_ablation_rows(data.meta, per_individual=a["per_individual"], seed=0,
                                ratios=cfg["split"]["classify_ratios"], rule="session", source=a["source"])
    fill = models.get("sift").missing_fill
    pattern = matching.ablate(cfg, ablation_sets(data, rows, "pattern_only", fill), "pattern_only")
    background = matching.ablate(cfg, ablation_sets(data, rows, "background_only", fill), "background_only")
    chance = 1 / data.meta["identity"].nunique()
    assert pattern["accuracy"] > 1.5 * chance and pattern["accuracy"] > background["accuracy"]


def test_a_mask_region_without_masks_is_one_clear_error(smoke_data):
    cfg, data = smoke_data
    with pytest.raises(ValueError, match="has no masks"):
        matching.check_region(cfg, type("NoMasks", (), {"has_masks": False, "root": data.root})())
    with pytest.raises(ValueError, match="unknown matching.region"):
        matching.check_region({**cfg, "matching": {**cfg["matching"], "region": "fins"}}, data)

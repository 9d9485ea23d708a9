"""Local-feature re-identification: SIFT finds the right fish across sessions on synthetic
zebrafish, geometric verification separates a warped copy from an unrelated image, images
without keypoints fail clearly alone and score 0 in a batch, and retrieval metrics from a
similarity matrix are those of zfutils.retrieval."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from zfutils import localfeatures as lf
from zfutils.data.format import DatasetWriter, read_dataset
from zfutils.data.synth import SynthSpec, iter_samples
from zfutils.retrieval import query_ranks, retrieval_metrics

# 6 fish x 8 images over 4 sessions at the quick preset's 128 px: 2 images per fish and session,
# so each query has 6 positives in other sessions (its same-session twin is excluded) and 40
# negatives; a random ranking finds a true match first for about 6/46 = 0.13 of the queries.
SPEC = SynthSpec(individuals=6, per_individual=8, sessions=4, image_size=128)


@pytest.fixture(scope="module")
def fish():
    return list(iter_samples(SPEC))


@pytest.fixture(scope="module")
def scored(fish):
    """SIFT (RootSIFT, mirrored queries, affine RANSAC) on the pattern mask, every image against all."""
    ids, sessions = [s["identity"] for s in fish], [s["session"] for s in fish]
    images, masks, names = [s["image"] for s in fish], [s["pattern_mask"] for s in fish], [s["image_id"] for s in fish]
    index = lf.LocalFeatureIndex(progress=False).add(images, ids, masks, names)
    scores = index.score(images, masks, names, skip=lf.excluded_pairs(ids, sessions))
    return index, scores, ids, sessions


def texture(seed: int, size: int = 128) -> np.ndarray:
    """Smoothed noise: blobs everywhere, as SIFT likes them."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return np.repeat((img * 255).astype(np.uint8)[..., None], 3, axis=2)


def inliers(a, b, **kw) -> int:
    return lf.match(a.descriptors, a.keypoints, b.descriptors, b.keypoints, **kw)


def test_sift_finds_the_same_fish_in_other_sessions(scored):
    index, scores, ids, sessions = scored
    m = lf.similarity_retrieval_metrics(scores.similarity, ids, sessions, ks=(1, 5))
    print(f"\nSIFT on the pattern, 48 queries: {m}; cost {index.cost(scores)}")
    assert m["n_queries"] == 48 and m["n_skipped"] == 0
    assert m["top1"] >= 0.6 and m["top5"] >= 0.9 and m["mAP"] >= 0.5  # measured 0.90, 1.00, 0.79; chance 0.13
    # the same fish scores higher than the others on average
    same = np.equal.outer(ids, ids) & ~lf.excluded_pairs(ids, sessions)
    assert scores.similarity[same].mean() > 2 * scores.similarity[~np.equal.outer(ids, ids)].mean()
    # image-to-individual scores: the best of each fish's images; the winner is mostly the right fish
    per_fish, names = index.individual_scores(scores.similarity)
    assert per_fish.shape == (48, 6) and names == sorted(set(ids))
    assert np.mean(np.asarray(names)[per_fish.argmax(axis=1)] == np.asarray(ids)) >= 0.6


def test_cost_is_measured(scored):
    index, scores, _, _ = scored
    cost = index.cost(scores)
    assert cost["keypoints_per_gallery_image"] > 20 and cost["seconds_per_query"] > 0
    assert cost["gallery_no_keypoints"] == cost["query_no_keypoints"] == 0


def test_blank_image_raises_alone_and_scores_zero_in_a_batch():
    blank = np.full((128, 128, 3), 128, np.uint8)
    with pytest.raises(lf.NoKeypointsError, match="blank.png"):
        lf.extract(blank, name="blank.png")
    with pytest.raises(lf.NoKeypointsError, match="region"):
        lf.extract(texture(0), np.zeros((128, 128), bool))
    index = lf.LocalFeatureIndex(progress=False).add([texture(0), blank], ["a", "b"], names=["tex", "blank"])
    scores = index.score([texture(0), blank], names=["tex", "blank"])
    assert scores.similarity[0, 0] > 50 and scores.similarity[0, 1] == 0 and (scores.similarity[1] == 0).all()
    assert scores.no_keypoints == ["blank"] and scores.keypoints[1] == -1
    cost = index.cost(scores)
    assert cost["gallery_no_keypoints"] == 1 and cost["query_no_keypoints"] == 1


@pytest.mark.parametrize("upsample", ["auto", 1, 3])
def test_region_keeps_every_keypoint_inside_the_mask(fish, upsample):
    sample = fish[0]
    for image, mask in ((sample["image"], sample["pattern_mask"]), (sample["image"], sample["fish_mask"]),
                        (texture(1), np.add.outer(np.arange(128), np.arange(128)) < 100)):
        feats = lf.extract(image, mask, upsample=upsample)
        col, row = np.rint(feats.keypoints).astype(int).T
        assert len(feats.keypoints) > 0 and mask[row, col].all()
        assert len(feats.keypoints) < len(lf.extract(image, upsample=upsample).keypoints)


def test_affine_copy_gives_many_inliers_unrelated_image_few():
    a = texture(0)
    warp = cv2.getRotationMatrix2D((64, 64), 12, 0.9)
    warp[0, 1] += 0.08  # a little shear
    copy = cv2.warpAffine(a, warp, (128, 128), borderMode=cv2.BORDER_REFLECT)
    fa, fc = lf.extract(a), lf.extract(copy)
    assert fa.descriptors.shape[1] == 128 and fa.descriptors.dtype == np.float32
    assert fa.keypoints.shape[1] == 2 and fa.keypoints.dtype == np.float32
    assert inliers(fa, fc) > 100  # measured 301
    for seed in range(1, 5):
        assert inliers(fa, lf.extract(texture(seed)), ratio=0.8) <= 5  # measured 0
    assert inliers(fa, fc, model="homography") > 100 and inliers(fa, fc, model="partial_affine") < inliers(fa, fc)
    orb_a, orb_c = lf.extract(a, method="orb"), lf.extract(copy, method="orb")
    assert orb_a.descriptors.dtype == np.uint8 and inliers(orb_a, orb_c) > 30


def test_a_mirrored_fish_is_matched_only_with_mirror():
    a = texture(2)
    mirrored = np.ascontiguousarray(a[:, ::-1])
    with_mirror = lf.LocalFeatureIndex(progress=False).add([a], ["a"]).score([mirrored]).similarity[0, 0]
    without = lf.LocalFeatureIndex(mirror=False, progress=False).add([a], ["a"]).score([mirrored]).similarity[0, 0]
    assert with_mirror > 100 and without <= 5


def test_inputs_in_every_convention_give_the_same_features():
    import torch

    a = texture(3)
    ref = lf.extract(a)
    for other in (a.astype(np.float32) / 255, torch.from_numpy(a).permute(2, 0, 1).float() / 255, a[..., 0]):
        got = lf.extract(other)
        np.testing.assert_allclose(got.keypoints, ref.keypoints)
        np.testing.assert_allclose(got.descriptors, ref.descriptors)
    with pytest.raises(ValueError, match="shape"):
        lf.extract(np.zeros((4, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lf.extract(a.astype(np.float32))


def test_unknown_method_or_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="sift, orb") as err:
        lf.extract(texture(0), method="lightglue")
    assert "weights" in str(err.value)
    with pytest.raises(ValueError, match="sift, orb"):
        lf.LocalFeatureIndex(method="disk")
    with pytest.raises(ValueError, match="affine"):
        lf.LocalFeatureIndex(model="fundamental")


@pytest.mark.parametrize("with_sessions, with_queries", [(False, False), (True, False), (True, True)])
def test_similarity_metrics_are_those_of_retrieval_on_embeddings(with_sessions, with_queries):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    emb[10:15] = emb[9]  # exact ties: they must go against the query in both
    ids = rng.integers(0, 5, 40).astype(str)
    sessions = rng.integers(0, 3, 40) if with_sessions else None
    queries = rng.random(40) < 0.5 if with_queries else None
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    asking = np.flatnonzero(queries) if with_queries else np.arange(40)
    similarity = unit[asking] @ unit.T  # what retrieval computes for cosine
    first, ap = query_ranks(emb, ids, sessions, queries=queries)
    got_first, got_ap = lf.similarity_query_ranks(similarity, ids, sessions, queries)
    np.testing.assert_array_equal(got_first, first)
    np.testing.assert_allclose(got_ap, ap)
    expected = retrieval_metrics(emb, ids, sessions, ks=(1, 3), queries=queries)
    got = lf.similarity_retrieval_metrics(similarity, ids, sessions, ks=(1, 3), queries=queries)
    assert got == pytest.approx(expected)
    if with_queries:  # a full N x N matrix is accepted too, its query rows taken
        full = lf.similarity_retrieval_metrics(unit @ unit.T, ids, sessions, ks=(1, 3), queries=queries)
        assert full == pytest.approx(expected)
    with pytest.raises(ValueError, match="queries x"):
        lf.similarity_query_ranks(similarity[:, :-1], ids, sessions, queries)


def test_retrieval_on_a_stored_dataset_matches_the_in_memory_scores(fish, scored, tmp_path):
    _, scores, ids, sessions = scored
    with DatasetWriter(tmp_path / "synth") as writer:
        for s in fish:
            writer.add(s["image_id"], s["image"], s["fish_mask"], s["pattern_mask"], identity=s["identity"],
                       session=s["session"], frame=s["frame"], source="synth")
        data = read_dataset(writer.commit({"source": "synth", "image_size": 128, "masks": "exact"}))
    queries = np.arange(len(fish)) % 3 == 0
    metrics, got = lf.retrieval_on_dataset(data, data.meta, queries=queries, region="pattern", progress=False)
    np.testing.assert_array_equal(got.similarity, scores.similarity[queries])  # PNG round trip is lossless
    expected = lf.similarity_retrieval_metrics(scores.similarity, ids, sessions, queries=queries)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert metrics["queries"] == queries.sum() and metrics["gallery_images"] == len(fish)

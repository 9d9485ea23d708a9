import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.cluster import KMeans

from zfutils import cluster


def blobs(n_ids=4, per_id=15, dim=8, spread=0.1, seed=0):
    """Identities as tight Gaussian blobs around far-apart centres, with string labels as in the
    .npz files."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (n_ids, dim))
    x = np.concatenate([c + rng.normal(0, spread, (per_id, dim)) for c in centres])
    return x, np.repeat([f"fish_{i}" for i in range(n_ids)], per_id)


def test_separable_blobs_score_perfectly_and_agree_over_seeds():
    x, ids = blobs()
    s = cluster.cluster_scores(x, ids, seeds=(0, 1, 2))
    assert s["k"] == 4 and s["n"] == 60 and s["seeds"] == (0, 1, 2) and s["note"] == ""
    assert s["ari"] == pytest.approx(1.0) and s["ami"] == pytest.approx(1.0) and s["nmi"] == pytest.approx(1.0)
    assert s["mi"] == pytest.approx(np.log(4))  # nats, balanced identities
    assert s["silhouette"] > 0.9 and s["davies_bouldin"] < 0.2 and s["calinski_harabasz"] > 1000
    assert all(s[f"{m}_std"] == pytest.approx(0.0, abs=1e-9) for m in cluster.METRICS)
    assert s["silhouette_true"] == pytest.approx(s["silhouette"])


def test_random_labels_give_chance_agreement():
    x, _ = blobs(n_ids=4, per_id=30)
    ids = np.random.default_rng(1).integers(0, 4, len(x))
    s = cluster.cluster_scores(x, ids, seeds=(0,))
    assert abs(s["ari"]) < 0.1 and abs(s["ami"]) < 0.1
    assert s["silhouette"] > 0.9  # k-means still finds the blobs ...
    assert s["silhouette_true"] < 0.1  # ... but the identities do not separate


def test_values_equal_scikit_learn_on_the_same_partition():
    x, ids = blobs(n_ids=3, per_id=12, spread=15.0, seed=3)  # overlapping: imperfect scores
    s = cluster.cluster_scores(x, ids, seeds=(7,), n_init=3, scaling="none")
    labels = KMeans(n_clusters=3, init="k-means++", n_init=3, random_state=7).fit_predict(x)
    expected = {"silhouette": skm.silhouette_score(x, labels), "davies_bouldin": skm.davies_bouldin_score(x, labels),
                "calinski_harabasz": skm.calinski_harabasz_score(x, labels), "ari": skm.adjusted_rand_score(ids, labels),
                "mi": skm.mutual_info_score(ids, labels), "ami": skm.adjusted_mutual_info_score(ids, labels),
                "nmi": skm.normalized_mutual_info_score(ids, labels)}
    assert 0 < expected["ari"] < 1
    for m, v in expected.items():
        assert s[m] == pytest.approx(v, rel=1e-9), m
    assert s["davies_bouldin_true"] == pytest.approx(skm.davies_bouldin_score(x, ids))
    assert s["per_seed"][0]["seed"] == 7


def test_k_overrides_the_number_of_identities():
    x, ids = blobs(n_ids=4)
    s = cluster.cluster_scores(x, ids, k=2, seeds=(0,))
    assert s["k"] == 2 and s["n_identities"] == 4 and s["ari"] < 1


@pytest.mark.parametrize("case", ["identical", "k_ge_n", "one_identity", "fewer_distinct_than_k"])
def test_degenerate_input_gives_nan_and_a_note(case):
    x, ids = blobs(n_ids=3, per_id=4)
    k = None
    if case == "identical":
        x = np.ones_like(x)
    elif case == "k_ge_n":
        k = len(x)
    elif case == "one_identity":
        ids = np.full(len(x), "fish_0")
    else:
        x[:] = x[0]
        x[-1] += 1.0  # two distinct points for three clusters
    s = cluster.cluster_scores(x, ids, k=k, seeds=(0, 1))
    assert s["note"] != ""
    assert np.isnan(s["silhouette"]) and np.isnan(s["ari"]) and np.isnan(s["mi_std"])
    if case in ("identical", "one_identity"):
        assert np.isnan(s["silhouette_true"])


def test_mismatched_identities_are_an_error():
    x, ids = blobs()
    with pytest.raises(ValueError, match="identit"):
        cluster.cluster_scores(x, ids[:-1])


def test_scaling_options():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (30, 5)) * np.array([1e-3, 1, 10, 1e3, 1e5])
    std = cluster.prepare(x, "standard")
    assert np.allclose(std.mean(0), 0) and np.allclose(std.std(0), 1)
    assert np.allclose(np.linalg.norm(cluster.prepare(x, "l2"), axis=1), 1)
    raw = cluster.prepare(x, "none")
    assert np.array_equal(raw, x) and raw is not x
    with pytest.raises(ValueError, match="standard, l2, none"):
        cluster.prepare(x, "minmax")
    with pytest.raises(ValueError, match="NaN"):
        cluster.prepare(np.full((3, 2), np.nan))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_project_gives_finite_2d_points(method):
    x, _ = blobs(n_ids=4, per_id=5)
    p = cluster.project(x, method)
    assert p.shape == (20, 2) and np.isfinite(p).all()
    assert np.allclose(p, cluster.project(x, method))  # seeded
    small = cluster.project(x[:4], method)  # perplexity shrinks with N
    assert small.shape == (4, 2) and np.isfinite(small).all()


def test_project_umap_on_20_points():  # the one UMAP call: numba compiles it (~15 s)
    x, _ = blobs(n_ids=4, per_id=5)
    p = cluster.project(x, "umap", seed=0)
    assert p.shape == (20, 2) and np.isfinite(p).all()


def test_project_rejects_unknown_methods_and_tiny_inputs():
    x, _ = blobs()
    with pytest.raises(ValueError, match="pca, tsne, umap"):
        cluster.project(x, "mds")
    with pytest.raises(ValueError, match="at least 4"):
        cluster.project(x[:3], "pca")


def test_table4_rows_one_row_per_encoder():
    good, ids = blobs(seed=0)
    noisy = good + np.random.default_rng(2).normal(0, 8, good.shape)
    t = cluster.table4_rows({"aotgan": (noisy, ids), "ref-aotgan": (good, ids)}, seeds=(0, 1), n_init=2)
    assert isinstance(t, pd.DataFrame) and list(t.index) == ["aotgan", "ref-aotgan"] and t.index.name == "encoder"
    assert t.shape[0] == 2
    for m in cluster.METRICS:
        assert m in t.columns and f"{m}_std" in t.columns and m in cluster.DIRECTION
    assert t.loc["ref-aotgan", "ari"] == pytest.approx(1.0) and t.loc["aotgan", "ari"] < 1
    assert set(cluster.DIRECTION.values()) == {"higher", "lower"} and cluster.DIRECTION["davies_bouldin"] == "lower"


def test_long_embeddings_are_rotated_into_the_span_of_the_images_with_every_distance_kept():
    """A flattened feature map is far longer than the number of images: the scores, k-means and
    projections run on N coordinates with the same pairwise distances, and give what they give
    on the full vectors."""
    from scipy.spatial.distance import pdist

    x, ids = blobs(n_ids=3, per_id=8, dim=500, spread=3.0)
    original = x.copy()
    reduced = cluster.distance_preserving(x)
    assert reduced.shape == (24, 23)  # the centred rows span N - 1 dimensions
    assert np.allclose(pdist(reduced), pdist(x), rtol=1e-9, atol=1e-9)
    assert np.array_equal(x, original)
    assert cluster.distance_preserving(x[:, :10]).shape == (24, 10)  # no longer than N: kept as it is
    scaled = (x - x.mean(0)) / x.std(0)
    assert np.allclose(pdist(cluster.prepare(x, "standard")), pdist(scaled))
    scores = cluster.cluster_scores(x, ids, seeds=(0,))
    labels = KMeans(n_clusters=3, init="k-means++", n_init=10, random_state=0).fit_predict(scaled)
    assert scores["dim"] == 500
    assert np.isclose(scores["silhouette"], skm.silhouette_score(scaled, labels))
    assert np.isclose(scores["calinski_harabasz"], skm.calinski_harabasz_score(scaled, labels))
    assert np.isclose(scores["ari"], skm.adjusted_rand_score(ids, labels))
    pca_full = cluster.project(x, "pca")
    from sklearn.decomposition import PCA

    direct = PCA(n_components=2).fit_transform(scaled)
    assert np.allclose(np.abs(pca_full), np.abs(direct), atol=1e-6)  # the same plane, up to each axis' sign
    same = cluster.distance_preserving(np.ones((4, 9)))
    assert same.shape == (4, 1) and not same.any()

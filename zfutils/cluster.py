"""Embedding clustering, as the study's section 5.4: 2-D projections (PCA, t-SNE, UMAP) to look
at, and k-means scores for its Table 4.

Reading of the study: "embeddings were clustered through the k-means algorithm with [k lost in
the text], and k-means++ initialization. After clustering, the Silhouette Score, Davies-Bouldin
Index, Calinski-Harabasz Index, Adjusted Rand Index, and Mutual Information were computed."
So all five columns of Table 4 (AdjRand, MutInfo, Silhouette, daviesBouldin, calinskiHarabasz)
describe the k-means partition: `ari`, `mi`, `silhouette`, `davies_bouldin`, `calinski_harabasz`
here. k is taken as the number of identities (the lost value; the natural choice when scoring
against identities). MutInfo is read as unnormalised mutual information in nats (scikit-learn's
`mutual_info_score`), consistent with its values (0.28 to 0.57, below ln k); AMI and NMI are
added since raw MI grows with k and cannot be compared across data sets. The study reports one
number per encoder, neither seeds nor scaling; here k-means runs once per seed (mean and
population std over seeds) and the `*_true` columns score the identities themselves as the
partition, which tells an encoder that separates identities from a k-means run that missed it.

Long embeddings (a flattened feature map: up to a million numbers per image at the study's size)
are first rotated into the span of the N images (`distance_preserving`): N coordinates whose
pairwise distances are the original ones, so k-means, the scores and the projections compute
the same thing at a fraction of the cost."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.preprocessing import StandardScaler, normalize

SCALINGS = ("standard", "l2", "none")
PROJECTIONS = ("pca", "tsne", "umap")
INTERNAL = ("silhouette", "davies_bouldin", "calinski_harabasz")
EXTERNAL = ("ari", "mi", "ami", "nmi")
METRICS = INTERNAL + EXTERNAL
DIRECTION = {"silhouette": "higher", "davies_bouldin": "lower", "calinski_harabasz": "higher",
             "ari": "higher", "mi": "higher", "ami": "higher", "nmi": "higher"}


def prepare(embeddings, scaling: str = "standard") -> np.ndarray:
    """Float64 embeddings, rescaled for Euclidean k-means and projections; longer than N, they
    come back as N distance-preserving coordinates (`distance_preserving`).

    "standard" (per-feature zero mean, unit variance) is the default because k-means, silhouette
    and the projections use Euclidean distance, in which a few channels with variance orders of
    magnitude above the rest would decide alone (encoders differ here; a uniform scale factor
    alone would not matter, every score below is invariant to it). "l2" puts every embedding on
    the unit sphere, as cosine retrieval sees them. "none" keeps the raw features."""
    x = np.array(embeddings, dtype=np.float64)  # a copy: scaling works in place
    if x.ndim != 2:
        raise ValueError(f"embeddings must be N x D, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"embeddings hold {int((~np.isfinite(x)).sum())} NaN or infinite values; "
                         "check the encoder output")
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; known: {', '.join(SCALINGS)}")
    if len(x) and scaling == "standard":
        x = StandardScaler(copy=False).fit_transform(x)
    elif len(x) and scaling == "l2":
        x = normalize(x, copy=False)
    return distance_preserving(x)


def distance_preserving(x: np.ndarray) -> np.ndarray:
    """N x D -> N x min(N, D) coordinates with the same pairwise Euclidean distances (and so the
    same k-means partitions, cluster scores, t-SNE and UMAP inputs, and PCA up to sign): the
    centred rows in the eigenbasis of their N x N Gram matrix, an exact PCA that keeps every
    component. Embeddings with D <= N come back as they are."""
    n, d = x.shape
    if d <= n:
        return x
    centred = x - x.mean(axis=0)
    eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)
    keep = eigenvalues > eigenvalues.max(initial=0.0) * 1e-12  # the centred rows span at most N - 1 dimensions
    coords = vectors[:, keep] * np.sqrt(eigenvalues[keep])
    return np.ascontiguousarray(coords[:, ::-1]) if coords.shape[1] else np.zeros((n, 1))


def project(embeddings, method: str, seed: int = 0, *, scaling: str = "standard") -> np.ndarray:
    """N x 2 coordinates for a scatter plot, after `prepare(embeddings, scaling)` (the same space
    the scores see; pass scaling="none" for embeddings prepared already). t-SNE's perplexity and
    UMAP's n_neighbors shrink with N so a handful of points still works."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; known: {', '.join(PROJECTIONS)}")
    x = prepare(embeddings, scaling)
    n, d = x.shape
    if n < 4:
        raise ValueError(f"{method} needs at least 4 embeddings to place in 2-D, got {n}")
    if d < 2:
        raise ValueError(f"{method} needs at least 2 features to reduce to 2-D, got {d}")
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        return TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca",
                    random_state=seed).fit_transform(x)
    import umap  # imported here: slow to import, and its first fit compiles with numba (~15 s)

    return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1),
                     n_jobs=1).fit_transform(x)


def _internal(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Silhouette, Davies-Bouldin, Calinski-Harabasz of one partition; NaN where undefined
    (scikit-learn raises unless 2 <= clusters <= N - 1)."""
    if not 2 <= len(np.unique(labels)) <= len(x) - 1:
        return dict.fromkeys(INTERNAL, np.nan)
    return {"silhouette": float(skm.silhouette_score(x, labels)),
            "davies_bouldin": float(skm.davies_bouldin_score(x, labels)),
            "calinski_harabasz": float(skm.calinski_harabasz_score(x, labels))}


def _external(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Agreement of k-means clusters with identities; MI in nats."""
    return {"ari": float(skm.adjusted_rand_score(truth, labels)),
            "mi": float(skm.mutual_info_score(truth, labels)),
            "ami": float(skm.adjusted_mutual_info_score(truth, labels)),
            "nmi": float(skm.normalized_mutual_info_score(truth, labels))}


def cluster_scores(embeddings, identities, k: int | None = None, seeds=(0, 1, 2, 3, 4),
                   n_init: int = 10, scaling: str = "standard") -> dict:
    """k-means (k-means++, k = number of identities unless given) once per seed, scored as the
    study's Table 4 (see the module docstring): for each metric its mean over seeds and `_std`
    (population std), `*_true` for the internal metrics of the identities as the partition, and
    `k`, `n`, `n_identities`, `seeds`, `scaling`, `per_seed` (one dict per seed) and `note`.

    Degenerate inputs (all embeddings equal, fewer distinct embeddings than k, k < 2, k >= N,
    a single identity) give NaN for what is undefined and say why in `note` ("" otherwise)."""
    x = prepare(embeddings, scaling)
    truth = np.unique(np.asarray(identities).ravel(), return_inverse=True)[1]
    n = len(x)
    if n == 0 or len(truth) != n:
        raise ValueError(f"need one identity per embedding and at least one embedding; got {n} "
                         f"embeddings and {len(truth)} identities")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds is empty; give at least one k-means seed")
    n_ids = int(truth.max()) + 1
    k = n_ids if k is None else int(k)
    n_distinct = len(np.unique(x, axis=0))
    notes = []
    if n_distinct < 2:
        notes.append("all embeddings are identical (after scaling): no partition has structure")
    if n_ids < 2:
        notes.append("a single identity: internal metrics of the true partition are undefined")
    if not 2 <= k < n:
        notes.append(f"k={k} with N={n}: k-means needs 2 <= k < N, its metrics are NaN")
    elif n_distinct < k:
        notes.append(f"only {n_distinct} distinct embeddings for k={k} clusters: k-means metrics are NaN")

    true_internal = _internal(x, truth) if n_distinct >= 2 else dict.fromkeys(INTERNAL, np.nan)
    per_seed = []
    if 2 <= k < n and n_distinct >= k:
        for seed in seeds:
            labels = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed).fit_predict(x)
            per_seed.append({"seed": seed, **_internal(x, labels), **_external(truth, labels)})
    else:
        per_seed = [{"seed": seed, **dict.fromkeys(METRICS, np.nan)} for seed in seeds]

    out: dict = {}
    for m in METRICS:
        values = np.array([row[m] for row in per_seed], dtype=np.float64)
        out[m] = float(values.mean())
        out[f"{m}_std"] = float(values.std())
    out.update({f"{m}_true": true_internal[m] for m in INTERNAL})
    out.update(k=k, n=n, n_identities=n_ids, seeds=seeds, scaling=scaling, per_seed=per_seed,
               dim=int(np.shape(embeddings)[1]), note="; ".join(notes))
    return out


def table4_rows(named: dict, **kw) -> pd.DataFrame:
    """One row per encoder name (e.g. "aotgan", "ref-aotgan") from {name: (embeddings,
    identities)}: mean and std of every metric, the `*_true` metrics, k, n and note. `kw` goes
    to `cluster_scores`. The caller formats it into the study's Table 4 (DIRECTION says which
    way is better)."""
    columns = [c for m in METRICS for c in (m, f"{m}_std")] + [f"{m}_true" for m in INTERNAL]
    columns += ["k", "n", "n_identities", "dim", "note"]
    rows = {}
    for name, (embeddings, identities) in named.items():
        scores = cluster_scores(embeddings, identities, **kw)
        rows[name] = {c: scores[c] for c in columns}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    frame.index.name = "encoder"
    return frame

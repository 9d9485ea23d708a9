"""Re-identification by retrieval, as MiewID and wildlife-tools report it: every image in turn is a
query against all the others (leave-one-out), scored by CMC top-k and mean average precision.

Frames of one recording are near duplicates, so with `sessions` given, images of the query's own
identity and session leave its gallery (other fish of that session stay, as negatives); a query
with no positive left is skipped and counted. Ties in score are broken against the query
(negatives before positives, then by index), so a collapsed encoder scores near zero instead of
riding on the order of the files.

`queries` (a boolean mask) restricts which images ask: the usual re-identification protocol, in
which test images query a gallery of every other image (the reference images of known
individuals among them).

With sessions, the metrics also say what an embedding encodes besides identity:
`top1_same_session` is the share of queries whose nearest gallery image comes from the query's
own recording session (necessarily another individual, since the query's own session-mates
left the gallery), beside `same_session_chance`, the share a ranking blind to sessions would
give (the session's share of each query's gallery, averaged). An encoder that finds the tank,
the light or the background instead of the fish scores far above its chance; top-1 below
1 / individuals with this share high says exactly that."""
from __future__ import annotations

import numpy as np

METRICS = ("cosine", "euclidean")


def query_ranks(embeddings, identities, sessions=None, metric: str = "cosine",
                chunk_elements: int = 2**20, queries=None) -> tuple[np.ndarray, np.ndarray]:
    """Per query (every image, or those `queries` marks): the 0-based rank of its first true
    match and its average precision (mean precision at the ranks of its positives); -1 and NaN
    for a skipped query."""
    first, ap, _, _ = _query_stats(embeddings, identities, sessions, metric, chunk_elements, queries)
    return first, ap


def _query_stats(embeddings, identities, sessions, metric, chunk_elements, queries):
    """query_ranks' ranks and average precisions, and session_neighbours' two arrays (None
    without sessions), from one pass over the scores."""
    emb, ids, sess = _check(embeddings, identities, sessions, metric)
    n = len(emb)
    asking = np.arange(n) if queries is None else np.flatnonzero(np.asarray(queries, dtype=bool))
    if queries is not None and len(np.asarray(queries)) != n:
        raise ValueError(f"queries marks {len(np.asarray(queries))} images, embeddings hold {n}")
    if metric == "cosine":
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sq = (emb**2).sum(axis=1)
    first, ap = np.full(len(asking), -1, dtype=np.int64), np.full(len(asking), np.nan)
    same, chance = (None, None) if sess is None else (np.full(len(asking), np.nan), np.full(len(asking), np.nan))
    cols = np.arange(n)
    step = max(1, chunk_elements // max(n, 1))
    for start in range(0, len(asking), step):
        q = asking[start:start + step]
        rows = np.arange(start, start + len(q))
        score = emb[q] @ emb.T
        if metric == "euclidean":
            score = 2 * score - sq[q, None] - sq[None, :]  # minus the squared distance
        positive = ids[q, None] == ids[None, :]
        excluded = q[:, None] == cols[None, :]
        if sess is not None:
            excluded |= positive & (sess[q, None] == sess[None, :])
            same[rows], chance[rows] = session_neighbours(score, excluded, sess[q], sess)
        first[rows], ap[rows] = ranks_from_scores(score, positive & ~excluded, excluded)
    return first, ap, same, chance


def session_neighbours(score: np.ndarray, excluded: np.ndarray, query_sessions, gallery_sessions
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per query row of `score` (query x gallery, higher = more alike; `excluded` pairs are not
    in the gallery): 1.0 where its nearest gallery image shares its session, else 0.0, and the
    share of its gallery from its session; NaN for both where its gallery is empty. Ties go to
    the lower column index."""
    own = np.asarray(query_sessions)[:, None] == np.asarray(gallery_sessions)[None, :]
    allowed = ~excluded
    size = allowed.sum(axis=1)
    nearest = np.where(allowed, score, -np.inf).argmax(axis=1)
    same = own[np.arange(len(score)), nearest].astype(np.float64)
    chance = (own & allowed).sum(axis=1) / np.maximum(size, 1)
    same[size == 0], chance[size == 0] = np.nan, np.nan
    return same, chance


def summarize_sessions(same: np.ndarray, chance: np.ndarray, first: np.ndarray) -> dict:
    """`top1_same_session` and `same_session_chance` over the queries that top-k scores (those
    with a positive left, `first` >= 0), so both describe the same queries."""
    kept = (np.asarray(first) >= 0) & ~np.isnan(same)
    return {"top1_same_session": _mean(same[kept]), "same_session_chance": _mean(chance[kept])}


def ranks_from_scores(score: np.ndarray, positive: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query row of `score` (query x gallery, higher = more alike): the rank of its first
    positive and its average precision; -1 and NaN where no positive is left. Excluded pairs
    rank last; a tie puts negatives before positives, then the column index settles it."""
    n = score.shape[1]
    order = np.lexsort((positive, -score, excluded), axis=-1)  # primary key last
    hit = np.take_along_axis(positive, order, axis=1)
    n_pos = hit.sum(axis=1)
    precision = np.cumsum(hit, axis=1) / np.arange(1, n + 1)
    kept = n_pos > 0
    first, ap = np.full(len(score), -1, dtype=np.int64), np.full(len(score), np.nan)
    first[kept] = hit[kept].argmax(axis=1)
    ap[kept] = (precision * hit).sum(axis=1)[kept] / n_pos[kept]
    return first, ap


def retrieval_metrics(embeddings, identities, sessions=None, ks=(1, 5), metric: str = "cosine",
                      queries=None) -> dict:
    """`top{k}` for each k (share of queries with a true match among their k nearest), `mAP`,
    `n_queries` (queries scored) and `n_skipped` (queries left without a positive); with
    sessions also `top1_same_session` and `same_session_chance` (see the module docstring)."""
    first, ap, same, chance = _query_stats(embeddings, identities, sessions, metric, 2**20, queries)
    out = summarize_ranks(first, ap, ks)
    return out if same is None else {**out, **summarize_sessions(same, chance, first)}


def summarize_ranks(first: np.ndarray, ap: np.ndarray, ks=(1, 5)) -> dict:
    """top-k, mAP and query counts from the per-query ranks and average precisions."""
    kept = first >= 0
    out = {f"top{k}": _mean(first[kept] < k) for k in ks}
    out.update(mAP=_mean(ap[kept]), n_queries=int(kept.sum()), n_skipped=int((~kept).sum()))
    return out


def cmc_curve(embeddings, identities, sessions=None, max_rank: int = 20, metric: str = "cosine") -> np.ndarray:
    """CMC at ranks 1..max_rank (entry k-1 is top-k), over the queries that are not skipped."""
    first, _ = query_ranks(embeddings, identities, sessions, metric)
    first = first[first >= 0]
    if len(first) == 0:
        return np.full(max_rank, np.nan)
    return (first[:, None] < np.arange(1, max_rank + 1)[None, :]).mean(axis=0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _check(embeddings, identities, sessions, metric):
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be N x D, got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings hold NaN or inf; the encoder diverged or the file is corrupt")
    ids = np.unique(np.asarray(identities), return_inverse=True)[1].ravel()
    if len(ids) != len(emb):
        raise ValueError(f"{len(ids)} identities for {len(emb)} embeddings")
    sess = None
    if sessions is not None:
        sess = np.unique(np.asarray(sessions), return_inverse=True)[1].ravel()
        if len(sess) != len(emb):
            raise ValueError(f"{len(sess)} sessions for {len(emb)} embeddings")
    return emb, ids, sess

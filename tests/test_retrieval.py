import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from zfutils.retrieval import cmc_curve, query_ranks, retrieval_metrics, session_neighbours, summarize_sessions

# Six points on a line at 0, 1, 3, 4, 7, 10, ranked by euclidean distance (integers: ties are exact).
X = np.array([[0.0], [1.0], [3.0], [4.0], [7.0], [10.0]])
IDS = ["A", "A", "B", "A", "B", "B"]
# Ranked galleries (nearest first; * = same identity) and AP = mean precision at the positives:
#   q0 A: 1* 2 3* 4 5                  first hit rank 1, AP (1/1 + 2/3)/2 = 5/6
#   q1 A: 0* 2 3* 4 5                  rank 1, AP 5/6
#   q2 B: 3 1 0 4* 5*                  rank 4, AP (1/4 + 2/5)/2 = 13/40
#   q3 A: 2 | 4 1* (tie at 3) | 0* 5  rank 3, AP (1/3 + 2/4)/2 = 5/12   (tie: negative first)
#   q4 B: 3 5* (tie at 3) | 2* 1 0    rank 2, AP (1/2 + 2/3)/2 = 7/12   (tie: negative first)
#   q5 B: 4* 3 2* 1 0                  rank 1, AP 5/6
# top1 = 3/6, top3 = 5/6, top5 = 6/6, mAP = (5/6*3 + 13/40 + 5/12 + 7/12)/6 = 3.825/6
FIRST = [0, 0, 3, 2, 1, 0]
AP = [5 / 6, 5 / 6, 13 / 40, 5 / 12, 7 / 12, 5 / 6]

# Sessions: A is filmed in s1 (0, 1) and s2 (3); all of B in s2.
SESSIONS = ["s1", "s1", "s2", "s2", "s2", "s2"]
#   q0: 1 leaves (same fish, same session): 2 3* 4 5  -> rank 2, AP 1/2
#   q1: 0 leaves:                           2 3* 4 5  -> rank 2, AP 1/2
#   q3: keeps 0 and 1 (other session) and B of its own session as negatives -> as before, AP 5/12
#   q2, q4, q5: every other B shares their session -> skipped (3 of them)
# top1 = 0/3, top3 = 3/3, mAP = (1/2 + 1/2 + 5/12)/3 = 17/36
# Nearest gallery image and its session (the scored queries 0, 1, 3):
#   q0, q1 (s1): gallery 2 3 4 5, all s2; nearest 2 (s2)   -> not own session, chance 0/4
#   q3 (s2):     gallery 0 1 2 4 5 (s1 s1 s2 s2 s2); nearest 2 (s2) -> own session, chance 3/5
# top1_same_session = 1/3, same_session_chance = (0 + 0 + 3/5)/3 = 1/5


def test_hand_computed_line_without_sessions():
    first, ap = query_ranks(X, IDS, metric="euclidean")
    assert first.tolist() == FIRST and ap == pytest.approx(AP)
    m = retrieval_metrics(X, IDS, ks=(1, 3, 5), metric="euclidean")
    assert m == pytest.approx({"top1": 0.5, "top3": 5 / 6, "top5": 1.0, "mAP": 3.825 / 6,
                               "n_queries": 6, "n_skipped": 0})
    assert cmc_curve(X, IDS, max_rank=5, metric="euclidean") == pytest.approx([3 / 6, 4 / 6, 5 / 6, 1, 1])


def test_hand_computed_line_with_sessions():
    first, ap = query_ranks(X, IDS, SESSIONS, metric="euclidean")
    assert first.tolist() == [1, 1, -1, 2, -1, -1]
    assert ap[[0, 1, 3]] == pytest.approx([1 / 2, 1 / 2, 5 / 12]) and np.isnan(ap[[2, 4, 5]]).all()
    m = retrieval_metrics(X, IDS, SESSIONS, ks=(1, 3), metric="euclidean")
    assert m == pytest.approx({"top1": 0.0, "top3": 1.0, "mAP": 17 / 36, "n_queries": 3, "n_skipped": 3,
                               "top1_same_session": 1 / 3, "same_session_chance": 1 / 5})
    assert cmc_curve(X, IDS, SESSIONS, max_rank=3, metric="euclidean") == pytest.approx([0, 2 / 3, 1])


def test_ties_go_against_the_query():
    # A collapsed encoder (one vector for all) must not score by the order of the files: with ties
    # settled by index, queries 0 and 2 would find their partner first (top1 1/2).
    m = retrieval_metrics(np.ones((4, 8)), ["A", "A", "B", "B"])
    assert m["top1"] == 0.0 and m["mAP"] == pytest.approx(1 / 3)


def test_identity_seen_once_is_skipped_and_no_queries_give_nan():
    m = retrieval_metrics(np.r_[X, [[20.0]]], IDS + ["C"], metric="euclidean")
    assert m["n_queries"] == 6 and m["n_skipped"] == 1 and m["mAP"] == pytest.approx(3.825 / 6)
    empty = retrieval_metrics(X, list("abcdef"))
    assert empty["n_queries"] == 0 and np.isnan(empty["top1"]) and np.isnan(empty["mAP"])
    assert np.isnan(cmc_curve(X, list("abcdef"), max_rank=3)).all()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_brute_force_and_sklearn_ap(metric):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 5)) + np.repeat(rng.normal(size=(12, 5)), 5, axis=0)
    ids = np.repeat(np.arange(12), 5)
    sessions = rng.integers(0, 3, 60)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    first, ap = query_ranks(emb, ids, sessions, metric=metric, chunk_elements=500)  # 8 rows per chunk
    for q in range(60):
        gallery = (np.arange(60) != q) & ~((ids == ids[q]) & (sessions == sessions[q]))
        score = unit[gallery] @ unit[q] if metric == "cosine" else -np.linalg.norm(emb[gallery] - emb[q], axis=1)
        relevant = ids[gallery] == ids[q]
        if not relevant.any():
            assert first[q] == -1 and np.isnan(ap[q])
            continue
        assert ap[q] == pytest.approx(average_precision_score(relevant, score))
        assert first[q] == np.argmax(relevant[np.argsort(-score)])
    assert (first == -1).sum() > 0  # the example does exercise skipping


def test_cosine_ignores_scale_and_bad_input_is_rejected():
    rng = np.random.default_rng(1)
    emb, ids = rng.normal(size=(20, 4)), np.repeat(np.arange(5), 4)
    scaled = emb * rng.uniform(0.1, 10, (20, 1))
    assert retrieval_metrics(emb, ids) == retrieval_metrics(scaled, ids)
    assert retrieval_metrics(emb, ids, metric="euclidean") != retrieval_metrics(scaled, ids, metric="euclidean")
    with pytest.raises(ValueError, match="known: cosine, euclidean"):
        retrieval_metrics(emb, ids, metric="manhattan")
    with pytest.raises(ValueError, match="19 identities for 20"):
        retrieval_metrics(emb, ids[:-1])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full((3, 2), np.nan), [0, 0, 1])


def test_queries_mask_asks_only_the_marked_images():
    import numpy as np

    from zfutils.retrieval import retrieval_metrics

    # two fish on a line; only images 0 and 3 ask, everything else is gallery
    emb = np.array([[0.0], [0.1], [0.2], [1.0], [1.1], [5.0]])
    ids = np.array(["a", "a", "b", "b", "b", "a"])
    out = retrieval_metrics(emb, ids, ks=(1,), metric="euclidean", queries=np.array([1, 0, 0, 1, 0, 0], bool))
    # query 0 (a): nearest 0.1 (a) -> hit; query 3 (b): nearest 1.1 (b) -> hit
    assert out["n_queries"] == 2 and out["top1"] == 1.0
    # query 0 ranks 0.1(a) 0.2(b) 1.0(b) 1.1(b) 5.0(a): AP = (1/1 + 2/5) / 2 = 0.7
    # query 3 ranks 1.1(b) 0.2(b) 0.1(a) 0.0(a) 5.0(a): AP = (1/1 + 2/2) / 2 = 1
    assert abs(out["mAP"] - (0.7 + 1.0) / 2) < 1e-12


def test_session_neighbours_by_hand():
    # Rows: queries in sessions a, b, a; columns: gallery sessions a a b b. Query 0 may not see
    # column 0; query 2 sees nothing.
    score = np.array([[9.0, 1.0, 2.0, 0.5], [0.0, 3.0, 1.0, 3.0], [1.0, 2.0, 3.0, 4.0]])
    excluded = np.array([[True, False, False, False], [False] * 4, [True] * 4])
    same, chance = session_neighbours(score, excluded, ["a", "b", "a"], ["a", "a", "b", "b"])
    # q0: nearest allowed is column 2 (b): not its session; its gallery 1 2 3 holds one of a.
    # q1: columns 1 and 3 tie at 3.0, the lower index (1, session a) wins: not its session; 2 of 4 in b.
    assert same[:2].tolist() == [0.0, 0.0] and chance[:2] == pytest.approx([1 / 3, 2 / 4])
    assert np.isnan(same[2]) and np.isnan(chance[2])
    assert summarize_sessions(same, chance, np.array([0, 3, 0])) == pytest.approx(
        {"top1_same_session": 0.0, "same_session_chance": (1 / 3 + 1 / 2) / 2})


def test_session_encoder_scores_its_session():
    # Embeddings that hold only the session: every scored query's nearest image is a session-mate.
    rng = np.random.default_rng(0)
    sessions = np.repeat(np.arange(4), 6)
    ids = np.tile(np.arange(3), 8)
    emb = np.eye(4)[sessions] + 1e-3 * rng.normal(size=(24, 4))
    m = retrieval_metrics(emb, ids, sessions)
    assert m["top1_same_session"] == 1.0 and m["top1"] == 0.0
    # each fish is twice in a session: the query and its session twin leave, 4 session-mates among 22 stay
    assert m["same_session_chance"] == pytest.approx(4 / 22)

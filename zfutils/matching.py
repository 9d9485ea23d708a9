"""Stages 03 and 04 for the local-feature matching methods (registry family `matching`, e.g.
SIFT): nothing trains. A query's individual is the one whose gallery images it matches best
(most geometrically verified matches); retrieval ranks gallery images by that count, with
zfutils.retrieval's exclusion and tie rules. A matcher's counterpart of Grad-CAM is the map of
its inliers' keypoints on the watched images (against the best gallery image of the true
individual, as Grad-CAM explains the true class), scored with the same pattern / fish /
background shares. Results have the shape of stage 03's and 04's, so notebooks, figures and
the report take them as they are. For clustering, a matcher's embedding of an image is its
profile of verified-match counts against a fixed set of images (a similarity-space
representation), so stage 05 treats it like a network's."""
from __future__ import annotations

import numpy as np
import pandas as pd

from zfutils import config
from zfutils.data.ablation import kept_region
from zfutils.cam import cam_mass_shares
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.localfeatures import LocalFeatureIndex, match_inliers, similarity_retrieval_metrics
from zfutils.metrics import classification_metrics, confusion
from zfutils.models import get
from zfutils.train.cam_watch import cam_watch_set

REGIONS = ("fish", "pattern", "all")
MODE = "matching"  # the one "mode" of a method without training


def is_matcher(backbone_name: str) -> bool:
    return get(backbone_name).matcher is not None


def make_index(cfg: dict) -> LocalFeatureIndex:
    """The configured backbone's matcher with the `matching` settings."""
    m = cfg["matching"]
    return LocalFeatureIndex(**get(cfg["backbone"]["name"]).matcher, ratio=m["ratio"],
                             max_keypoints=m["max_keypoints"], mirror=m["mirror"])


def _region(item: dict, region: str) -> np.ndarray | None:
    return None if region == "all" else item[region][0].numpy().astype(bool)


def check_region(cfg: dict, data: StoredDataset) -> str:
    region = cfg["matching"]["region"]
    if region not in REGIONS:
        raise ValueError(f"unknown matching.region '{region}'; known: {', '.join(REGIONS)}")
    if region != "all" and not data.has_masks:
        raise ValueError(f"matching.region is '{region}' but the data set at {data.root} has no masks; set "
                         "matching.region: all, or rebuild the data with data.masks: estimate")
    return region


def _image(item: dict) -> np.ndarray:
    return item["image"].permute(1, 2, 0).numpy()


def score_items(index: LocalFeatureIndex, gallery: list[dict], queries: list[dict], region_of) -> np.ndarray:
    """Queries x gallery inlier counts; `region_of(item)` is the mask keypoints must lie in (or None)."""
    index.gallery, index.identities, index.names = [], [], []
    index.add([_image(it) for it in gallery], [int(it["label"]) for it in gallery],
              [region_of(it) for it in gallery], [f"gallery {k}" for k in range(len(gallery))])
    return index.score([_image(it) for it in queries], [region_of(it) for it in queries],
                       [f"query {k}" for k in range(len(queries))])


def profiles(similarity: np.ndarray) -> np.ndarray:
    """Each query's embedding: its match counts against the same fixed images (Pekalska and
    Duin's dissimilarity representation), L2-normalised; k-means, Silhouette and the 2-D views
    then treat a matcher like a network. A query that matched nothing stays all zero."""
    s = np.asarray(similarity, np.float32)
    return s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)


def predict(similarity: np.ndarray, gallery_labels: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Each query's individual: the best count over that individual's gallery images; ties (often
    all zero: nothing matched) broken at random with `seed`, never towards the first class."""
    best = np.full((len(similarity), n_classes), -1.0)
    for c in range(n_classes):
        if (gallery_labels == c).any():
            best[:, c] = similarity[:, gallery_labels == c].max(axis=1)
    jitter = np.random.default_rng(seed).random(best.shape) * 0.5  # counts are integers: breaks ties only
    return (best + jitter).argmax(axis=1)


def focus_maps(index: LocalFeatureIndex, watch: list[dict], gallery: list[dict], region_of, sigma: float) -> np.ndarray:
    """N x H x W maps of where each watched image's inliers lie, against the gallery image of its
    own individual that it matches best (Gaussian splats of `sigma` px at 128 px, scaled with
    the image, so that the shares do not depend on the resolution)."""
    maps = []
    for item in watch:
        h, w = item["image"].shape[-2:]
        spread = sigma * w / 128
        views = [(index.features(_image(item), region_of(item)), False)]
        if index.mirror:
            mirrored = {k: (v.flip(-1) if k in ("image", "fish", "pattern") else v) for k, v in item.items()}
            views.append((index.features(_image(mirrored), region_of(mirrored)), True))
        best = np.zeros((0, 2), np.float32)
        for other in [g for g in gallery if int(g["label"]) == int(item["label"])]:
            target = index.features(_image(other), region_of(other))
            for view, flipped in views:
                if view is None or target is None:
                    continue
                points = match_inliers(view.descriptors, view.keypoints, target.descriptors, target.keypoints,
                                       ratio=index.ratio, ransac_threshold=index.ransac_threshold, model=index.model)
                if len(points) > len(best):
                    best = points.copy()
                    if flipped:
                        best[:, 0] = w - 1 - best[:, 0]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        heat = np.zeros((h, w), np.float32)
        for x, y in best:
            heat += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * spread**2))
        maps.append(heat / heat.max() if heat.max() > 0 else heat)
    return np.stack(maps) if maps else np.zeros((0, 1, 1), np.float32)


class FocusWatch:
    """What stage 03's notebook reads from a watcher: the watched images and their maps per
    "epoch" (one: 0, nothing trains)."""

    def __init__(self, watch: dict, maps: np.ndarray):
        self.watch, self.cams = watch, {0: maps}


def evaluate(cfg: dict, data: StoredDataset) -> dict:
    """Stage 03 for a matcher: one result in stage 03's shape (test metrics and confusion of the
    nearest individual, validation accuracy, retrieval on the test split and on held-out
    individuals, the inlier-focus shares, the cost per query)."""
    region = check_region(cfg, data)
    region_of = lambda item: _region(item, region)  # noqa: E731
    sets = {s: ClassificationSet(data, s) for s in ("train", "val", "test")}
    n_classes, seed = len(sets["train"].classes), config.training_seed(cfg)
    items = {s: [sets[s][i] for i in range(len(sets[s]))] for s in sets}
    index = make_index(cfg)
    gallery = items["train"] + items["val"]
    everything = gallery + items["test"]
    # test images against every classification image: classification looks at train + val,
    # retrieval at all of them (its rules drop the query itself and its session's near duplicates)
    scores = score_items(index, everything, items["test"], region_of)
    labels = np.array([int(it["label"]) for it in everything])
    truth = labels[len(gallery):]
    pred = predict(scores.similarity[:, :len(gallery)], labels[:len(gallery)], n_classes, seed)
    test = {**classification_metrics(truth, pred, n_classes), "confusion": confusion(truth, pred, n_classes).tolist()}
    cost = index.cost(scores)
    rows = pd.concat([sets[s].rows for s in ("train", "val", "test")], ignore_index=True)
    queries = np.r_[np.zeros(len(gallery), bool), np.ones(len(items["test"]), bool)]
    ks = tuple(cfg["classify"]["retrieval_ks"])
    retrieval_test = similarity_retrieval_metrics(scores.similarity, rows["identity"].to_numpy(),
                                                  rows["session"].to_numpy(), ks, queries)
    val_scores = score_items(index, items["train"], items["val"], region_of)
    train_labels = np.array([int(it["label"]) for it in items["train"]])
    val_truth = np.array([int(it["label"]) for it in items["val"]])
    val = classification_metrics(val_truth, predict(val_scores.similarity, train_labels, n_classes, seed), n_classes)
    open_metrics, open_similarity = open_retrieval(cfg, data, region)
    watch = cam_watch_set(sets["val"], cfg["classify"]["cam_images"])
    watched = [{"image": watch["image"][k], "fish": watch["fish"][k], "pattern": watch["pattern"][k],
                "label": watch["label"][k]} for k in range(len(watch["label"]))]
    maps = focus_maps(index, watched, items["train"], region_of, cfg["matching"]["focus_sigma"])
    shares = cam_mass_shares(maps, watch["fish"][:, 0].numpy(), watch["pattern"][:, 0].numpy())
    history = [{"kind": "epoch", "epoch": 0, "iteration": 0, "mode": MODE, "train_loss": float("nan"),
                **{f"val_{k}": v for k, v in val.items()},
                **{f"cam_{k.removeprefix('mean_')}": float(v) for k, v in shares.items() if np.ndim(v) == 0}}]
    return {"init": {"init": "none", "why": f"{index.method} matching learns nothing; keypoints on: {region}"},
            "best": {"best_epoch": None, "best_val_accuracy": val["accuracy"], "epochs": 0, "iterations": 0},
            "test": test, "classes": sets["train"].classes, "history": history, "cost": cost,
            "retrieval": {"test": {**retrieval_test, "protocol": "gallery"}, "open": open_metrics},
            "profiles": {"test": profiles(scores.similarity[:, :len(gallery)]),  # against the train + val images
                         "open": profiles(open_similarity)},                     # against each other
            "watcher": FocusWatch(watch, maps), "trainer": None}


def test_accuracy(cfg: dict, data: StoredDataset, column: str) -> float | None:
    """Test accuracy of the nearest individual under split `column` (the leakage check's other
    split); None when the data allowed no such split."""
    if not data.meta[column].isin(["train"]).any():
        return None
    region = check_region(cfg, data)
    sets = {s: ClassificationSet(data, s, column=column) for s in ("train", "val", "test")}
    gallery = [sets[s][i] for s in ("train", "val") for i in range(len(sets[s]))]
    queries = [sets["test"][i] for i in range(len(sets["test"]))]
    scores = score_items(make_index(cfg), gallery, queries, lambda item: _region(item, region))
    labels = np.array([int(it["label"]) for it in gallery])
    truth = np.array([int(it["label"]) for it in queries])
    n_classes = len(sets["train"].classes)
    pred = predict(scores.similarity, labels, n_classes, config.training_seed(cfg))
    return classification_metrics(truth, pred, n_classes)["accuracy"]


def open_retrieval(cfg: dict, data: StoredDataset, region: str) -> tuple[dict, np.ndarray]:
    """Held-out individuals (the open split's test images) query each other, leave-one-out;
    returns the metrics and their similarity matrix (self-matches zeroed)."""
    rows = ClassificationSet(data, "test", column="split_open")
    if len(rows) < 2:
        return {"n_queries": 0, "protocol": "loo"}, np.zeros((len(rows), len(rows)), np.float32)
    items = [rows[i] for i in range(len(rows))]
    index = make_index(cfg)
    scores = score_items(index, items, items, lambda item: _region(item, region))
    out = similarity_retrieval_metrics(scores.similarity, rows.rows["identity"].to_numpy(),
                                       rows.rows["session"].to_numpy(), tuple(cfg["classify"]["retrieval_ks"]))
    similarity = scores.similarity.copy()
    np.fill_diagonal(similarity, 0)
    return {**out, "protocol": "loo"}, similarity


def ablate(cfg: dict, sets: dict, condition: str) -> dict:
    """Stage 04 for a matcher under one condition: test images against the train + val gallery,
    keypoints only where the condition keeps pixels (the removed regions are filled as well)."""
    region_of = lambda item: kept_region(condition, item["fish"], item["pattern"])[0].numpy()  # noqa: E731
    gallery = [sets[s][i] for s in ("train", "val") for i in range(len(sets[s]))]
    queries = [sets["test"][i] for i in range(len(sets["test"]))]
    n_classes = len(sets["train"].classes)
    scores = score_items(make_index(cfg), gallery, queries, region_of)
    labels = np.array([int(it["label"]) for it in gallery])
    truth = np.array([int(it["label"]) for it in queries])
    pred = predict(scores.similarity, labels, n_classes, config.training_seed(cfg))
    return {**classification_metrics(truth, pred, n_classes), "seconds_per_query": scores.seconds_per_query}

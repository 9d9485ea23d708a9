"""Re-identification by local-feature matching, the classical alternative to learned embeddings
(as in I3S/HotSpotter-style wildlife re-identification): keypoints and descriptors of each image
(SIFT, RootSIFT by default, or ORB), Lowe's ratio test on 2-nearest-neighbour matches, and the
number of matches that one geometric model explains (RANSAC) as the similarity of two images.

Geometry. A fish bends and turns, so no single planar homography maps one image of it onto
another; a full affine model (6 degrees of freedom, 3 points) covers translation, rotation,
scale and the shear of a foreshortened or gently bent body; a partial affine (similarity) model
cannot follow foreshortening, and a homography (8, 4 points) adds perspective that a fish beside
the glass barely shows, costs more and lets more chance matches agree. Measured, affine was
ahead of both, by less than the noise of 120 queries in top-1. A fish seen facing the other way
is a mirror image, which no descriptor matches, so queries are also matched mirrored
(`mirror=True`) and the better of the two counts.

Settings were measured on synthetic zebrafish (10 fish x 12 images over 4 sessions, seed 1, every
image querying the others, same-fish same-session images left out, keypoints on the pattern mask;
top-1 / mAP at 128 px; chance about 0.08): defaults 0.95 / 0.80 (0.91 / 0.80 at 256 px; on the
whole fish 0.94 / 0.74); partial affine 0.92 / 0.79, homography 0.93 / 0.78 and slower; Lowe's
ratio 0.8 0.92 / 0.77; plain SIFT 0.91 / 0.74; no mirrored queries 0.89 / 0.44; no upsampling of
the 128 px crop 27 instead of 83 keypoints, 0.71 / 0.52; OpenCV's SIFT edge threshold 10 instead
of 100, 21 keypoints, 0.41 / 0.30; ORB 0.81 / 0.61.

Learned detectors and matchers (DISK, ALIKED, LightGlue: kornia 0.9.0 and OpenCV 5's `DISK_create`,
`ALIKED_create`, `LightGlueMatcher_create`) need weight files that no installable package ships;
they are downloaded at run time, which this project cannot do, so only weight-free methods exist.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple

import cv2
import numpy as np
from tqdm.auto import tqdm

from zfutils.retrieval import ranks_from_scores, session_neighbours, summarize_ranks, summarize_sessions

METHODS = ("sift", "orb")
#: geometric model -> minimal sample size (points) of its RANSAC
MODELS = {"affine": 3, "partial_affine": 2, "homography": 4}
#: images whose short side is below this are upsampled for detection (see `upsample_factor`)
UPSAMPLE_TO = 256
#: SIFT's edge-response limit: Lowe's 10 drops most keypoints on stripes, which are edges
EDGE_THRESHOLD = 100.0
#: Lowe's ratio test: 0.7 rejected more false matches between similar stripes than 0.8 (measured)
RATIO = 0.7
#: RANSAC inlier distance in pixels of the input image (2 to 5 px measured alike at 128 and 256 px)
RANSAC_THRESHOLD = 3.0
LEARNED_NOTE = ("learned detectors/matchers (DISK, ALIKED, LightGlue, SuperPoint) are not offered: "
                "their weights are downloaded at run time and no package ships them offline")


class NoKeypointsError(ValueError):
    """The detector found no keypoint in an image (uniform, too small, or its region is empty)."""


class Features(NamedTuple):
    """Keypoints (N x 2 float32, x y in the input image's pixels) and descriptors (N x 128
    float32 for SIFT/RootSIFT, N x 32 uint8 for ORB)."""
    keypoints: np.ndarray
    descriptors: np.ndarray


def to_gray(image) -> np.ndarray:
    """uint8 grayscale from an RGB image: HxWx3 uint8 or float in [0, 1], HxW, or a CHW tensor in [0, 1]."""
    if hasattr(image, "detach"):  # a torch tensor, without importing torch here
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = np.moveaxis(image, 0, -1)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise ValueError(f"expected an RGB image (HxWx3, or a CHW tensor) or a grayscale one, got shape {image.shape}")
    if image.dtype != np.uint8:
        if image.size and float(np.nanmax(image)) > 1.001:
            raise ValueError(f"a float image must hold values in [0, 1], got a maximum of {np.nanmax(image):.3g}; "
                             "divide by 255 or pass uint8")
        image = np.clip(np.rint(image.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def upsample_factor(shape: tuple[int, ...], upsample: float | str = "auto") -> float:
    """`auto`: enlarge images whose short side is under UPSAMPLE_TO to it (a 128 px crop
    doubles); a number is used as it is."""
    if upsample == "auto":
        return max(1.0, UPSAMPLE_TO / min(shape[:2]))
    if isinstance(upsample, str) or upsample <= 0:
        raise ValueError(f"upsample must be 'auto' or a positive number, got {upsample!r}")
    return float(upsample)


def _detector(method: str, max_keypoints: int, edge_threshold: float):
    if method == "sift":
        return cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=0.02, edgeThreshold=edge_threshold)
    if method == "orb":
        return cv2.ORB_create(nfeatures=max_keypoints, edgeThreshold=15, patchSize=15)
    raise ValueError(f"unknown local-feature method {method!r}; known: {', '.join(METHODS)} ({LEARNED_NOTE})")


def extract(image, region=None, *, max_keypoints: int = 500, method: str = "sift", root_sift: bool = True,
            upsample: float | str = "auto", edge_threshold: float = EDGE_THRESHOLD, name: str = "image") -> Features:
    """Keypoints and descriptors of one image, only inside the boolean `region` mask if given
    (the fish or its pattern: background structures would otherwise match across a session).
    RootSIFT (Arandjelovic & Zisserman 2012: L1-normalise, square root) and `edge_threshold`
    apply to SIFT only. Raises NoKeypointsError, naming `name`, when nothing is found."""
    gray = to_gray(image)
    h, w = gray.shape
    mask = None
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if region.shape != (h, w):
            raise ValueError(f"region of {name} is {region.shape[1]}x{region.shape[0]} but the image is {w}x{h}")
    factor = upsample_factor(gray.shape, upsample)
    if factor != 1:
        gray = cv2.resize(gray, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_CUBIC)
    if region is not None:
        mask = cv2.resize(region.astype(np.uint8) * 255, gray.shape[::-1], interpolation=cv2.INTER_NEAREST)
    points, desc = _detector(method, max_keypoints, edge_threshold).detectAndCompute(gray, mask)
    xy = np.array([p.pt for p in points], np.float32).reshape(-1, 2) / np.float32(factor)
    if len(xy) and region is not None:  # the detector's mask is at the upsampled scale; rounding may leave it
        col, row = np.clip(np.rint(xy).astype(int), 0, [w - 1, h - 1]).T
        keep = region[row, col]
        xy, desc = xy[keep], desc[keep]
    if not len(xy):
        where = " inside its region" if region is not None else ""
        raise NoKeypointsError(f"{method} found no keypoints in {name} ({w}x{h}){where}: the image is uniform, "
                               "too small or its mask is empty; check it, give a larger region or upsample more")
    if method == "sift":
        desc = desc.astype(np.float32)
        if root_sift:
            desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12))
    return Features(xy, desc)


def _mirrored(image, region):
    gray = to_gray(image)[:, ::-1]
    return np.ascontiguousarray(gray), None if region is None else np.ascontiguousarray(np.asarray(region)[:, ::-1])


def match(desc_a, kp_a, desc_b, kp_b, *, ratio: float = RATIO, ransac_threshold: float = RANSAC_THRESHOLD,
          model: str = "affine", seed: int = 0) -> int:
    """The number of `match_inliers`."""
    return len(match_inliers(desc_a, kp_a, desc_b, kp_b, ratio=ratio, ransac_threshold=ransac_threshold,
                             model=model, seed=seed))


def match_inliers(desc_a, kp_a, desc_b, kp_b, *, ratio: float = RATIO, ransac_threshold: float = RANSAC_THRESHOLD,
                  model: str = "affine", seed: int = 0) -> np.ndarray:
    """Geometrically verified matches between two images: 2-NN matches from a to b (L2, or
    Hamming for binary ORB descriptors) that pass Lowe's ratio test, then the inliers of the
    `model` that RANSAC (`ransac_threshold` pixels, OpenCV's generator seeded with `seed`) fits
    to them. 0 when no more matches than the model's minimal sample remain, or when only its
    minimal sample supports the model (any random points fit that well). Returns the inliers'
    keypoints in image a (K x 2, x y): where the evidence lies."""
    none = np.zeros((0, 2), np.float32)
    if model not in MODELS:
        raise ValueError(f"unknown geometric model {model!r}; known: {', '.join(MODELS)}")
    minimal = MODELS[model]
    if len(desc_a) < 2 or len(desc_b) < 2:
        return none
    norm = cv2.NORM_HAMMING if np.asarray(desc_a).dtype == np.uint8 else cv2.NORM_L2
    pairs = cv2.BFMatcher(norm).knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) <= minimal:
        return none
    src = np.float32([kp_a[m.queryIdx] for m in good])
    dst = np.float32([kp_b[m.trainIdx] for m in good])
    cv2.setRNGSeed(seed)  # RANSAC draws from OpenCV's generator: fixed, a score does not depend on order
    if model == "homography":
        _, inliers = cv2.findHomography(src, dst, cv2.RANSAC, ransac_threshold, maxIters=2000)
    else:
        estimate = cv2.estimateAffine2D if model == "affine" else cv2.estimateAffinePartial2D
        _, inliers = estimate(src, dst, method=cv2.RANSAC, ransacReprojThreshold=ransac_threshold,
                              maxIters=2000, confidence=0.99, refineIters=10)
    if inliers is None or int(inliers.sum()) <= minimal:
        return none
    return src[inliers.ravel().astype(bool)]


class Scores(NamedTuple):
    """What `LocalFeatureIndex.score` measured: `similarity` (queries x gallery, inlier counts,
    0 for skipped pairs and images without keypoints), `keypoints` per query (-1: none found),
    `no_keypoints` (names of such queries) and `seconds_per_query` (extraction and matching)."""
    similarity: np.ndarray
    keypoints: np.ndarray
    no_keypoints: list
    seconds_per_query: float


@dataclass
class LocalFeatureIndex:
    """A gallery of images' local features with their identities; `score` matches queries
    against every gallery image. Images without keypoints score 0 and are counted, never raise.
    With `mirror`, each query is also matched mirrored (a fish facing the other way)."""
    method: str = "sift"
    max_keypoints: int = 500
    root_sift: bool = True
    upsample: float | str = "auto"
    ratio: float = RATIO
    ransac_threshold: float = RANSAC_THRESHOLD
    model: str = "affine"
    mirror: bool = True
    edge_threshold: float = EDGE_THRESHOLD
    progress: bool = True
    gallery: list = field(default_factory=list, repr=False)
    identities: list = field(default_factory=list, repr=False)
    names: list = field(default_factory=list, repr=False)
    extract_seconds: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        _detector(self.method, self.max_keypoints, self.edge_threshold)  # unknown methods fail here, not mid-run
        if self.model not in MODELS:
            raise ValueError(f"unknown geometric model {self.model!r}; known: {', '.join(MODELS)}")

    def features(self, image, region=None, name: str = "image") -> Features | None:
        """`extract` with this index's settings; None when the image has no keypoints."""
        try:
            return extract(image, region, max_keypoints=self.max_keypoints, method=self.method,
                           root_sift=self.root_sift, upsample=self.upsample, edge_threshold=self.edge_threshold,
                           name=name)
        except NoKeypointsError:
            return None

    def add(self, images, identities, regions=None, names=None) -> "LocalFeatureIndex":
        """Add gallery images (a sequence of images; regions: masks or None) with their identities."""
        images, regions, names = _batch(images, regions, names, start=len(self.names))
        if len(identities) != len(names):
            raise ValueError(f"{len(identities)} identities for {len(names)} gallery images")
        start = time.perf_counter()
        bar = tqdm(names, desc="gallery", unit="img", disable=not self.progress)
        for name, image, region in zip(bar, images, regions, strict=False):
            self.gallery.append(self.features(image, region, name))
        if len(self.gallery) != len(self.identities) + len(names):
            raise ValueError(f"{len(names)} names but fewer gallery images or regions came")
        self.extract_seconds += time.perf_counter() - start
        self.identities += [str(i) for i in identities]
        self.names += names
        return self

    def score(self, images, regions=None, names=None, *, skip=None) -> Scores:
        """Inliers of every query against every gallery image; `skip` (queries x gallery, bool)
        marks pairs not worth matching (the pairs retrieval excludes), which score 0."""
        images, regions, names = _batch(images, regions, names)
        sim = np.zeros((len(names), len(self.gallery)), np.float32)
        if skip is not None and np.shape(skip) != sim.shape:
            raise ValueError(f"skip is {np.shape(skip)}; expected {sim.shape} (queries x gallery)")
        keypoints, missing = np.full(len(names), -1), []
        start = time.perf_counter()
        bar = tqdm(names, desc=f"{self.method} match", unit="query", disable=not self.progress)
        for q, (name, image, region) in enumerate(zip(bar, images, regions)):
            views = [self.features(image, region, name)]
            if views[0] is None:
                missing.append(name)
                continue
            keypoints[q] = len(views[0].keypoints)
            if self.mirror:
                views.append(self.features(*_mirrored(image, region), name=f"{name} (mirrored)"))
            for g, target in enumerate(self.gallery):
                if target is None or (skip is not None and skip[q, g]):
                    continue
                sim[q, g] = max(self._match(v, target) for v in views if v is not None)
        seconds = (time.perf_counter() - start) / max(len(names), 1)
        return Scores(sim, keypoints, missing, seconds)

    def _match(self, a: Features, b: Features) -> int:
        return match(a.descriptors, a.keypoints, b.descriptors, b.keypoints, ratio=self.ratio,
                     ransac_threshold=self.ransac_threshold, model=self.model)

    def individual_scores(self, similarity) -> tuple[np.ndarray, list[str]]:
        """Queries x individuals: the best score among each individual's gallery images, and
        the individuals (sorted) that its columns stand for."""
        similarity = np.asarray(similarity)
        individuals = sorted(set(self.identities))
        ids = np.asarray(self.identities)
        out = np.stack([similarity[:, ids == name].max(axis=1) for name in individuals], axis=1)
        return out, individuals

    def cost(self, scores: Scores) -> dict:
        """Keypoints per image and seconds, for a cost table beside the accuracy."""
        found = [len(f.keypoints) for f in self.gallery if f is not None]
        asked = scores.keypoints[scores.keypoints >= 0]
        return {"method": self.method, "gallery_images": len(self.gallery), "queries": len(scores.keypoints),
                "keypoints_per_gallery_image": float(np.mean(found)) if found else 0.0,
                "keypoints_per_query": float(asked.mean()) if len(asked) else 0.0,
                "gallery_no_keypoints": sum(f is None for f in self.gallery),
                "query_no_keypoints": len(scores.no_keypoints),
                "gallery_seconds_per_image": self.extract_seconds / max(len(self.gallery), 1),
                "seconds_per_query": scores.seconds_per_query}


def _batch(images, regions, names, start: int = 0):
    """Images and regions may be lazy iterables (read one at a time) when `names` gives their number."""
    if names is None:
        images = list(images)
        names = [f"image {start + k}" for k in range(len(images))]
    names = [str(n) for n in names]
    for what, values in (("images", images), ("regions", regions)):
        if hasattr(values, "__len__") and len(values) != len(names):
            raise ValueError(f"{len(values)} {what} for {len(names)} names: give one per image")
    return images, repeat(None) if regions is None else regions, names


def retrieval_on_dataset(data, rows, *, queries=None, region: str | None = "pattern", ks=(1, 5),
                         **settings) -> tuple[dict, Scores]:
    """Retrieval as zfutils.embed.retrieval_on measures it, by local features: every row
    of `rows` (metadata rows of the StoredDataset `data`) is in the gallery, the rows `queries`
    marks (all by default) ask; `region` restricts keypoints to the `fish` or `pattern` mask.
    Returns the metrics with the cost, and the scores."""
    ids, sessions = rows["identity"].astype(str).to_numpy(), rows["session"].astype(str).to_numpy()
    image_ids = rows["image_id"].astype(str).tolist()
    asking = _asking(queries, len(rows))

    def regions(which):
        return None if region is None else (data.mask(image_ids[k], region) for k in which)

    index = LocalFeatureIndex(**settings)
    index.add((data.image(i) for i in image_ids), ids, regions(range(len(rows))), image_ids)
    scores = index.score((data.image(image_ids[k]) for k in asking), regions(asking), [image_ids[k] for k in asking],
                         skip=excluded_pairs(ids, sessions, queries))
    metrics = similarity_retrieval_metrics(scores.similarity, ids, sessions, ks, queries)
    return {**metrics, "region": region or "all", **index.cost(scores)}, scores


def excluded_pairs(identities, sessions=None, queries=None) -> np.ndarray:
    """Query x gallery mask of the pairs that zfutils.retrieval leaves out: the query itself, and
    with `sessions` the images of its own identity and session (near duplicates)."""
    ids, sess = _codes(identities), None if sessions is None else _codes(sessions)
    n = len(ids)
    asking = _asking(queries, n)
    cols = np.arange(n)
    excluded = asking[:, None] == cols[None, :]
    if sess is not None:
        if len(sess) != n:
            raise ValueError(f"{len(sess)} sessions for {n} identities")
        excluded |= (ids[asking, None] == ids[None, :]) & (sess[asking, None] == sess[None, :])
    return excluded


def similarity_query_ranks(similarity, identities, sessions=None, queries=None) -> tuple[np.ndarray, np.ndarray]:
    """zfutils.retrieval.query_ranks from a precomputed similarity (higher = more alike) instead
    of embeddings, with its exclusion and tie rules: `similarity` is N x N over all images, or
    (number of queries) x N with rows in the order of the images that `queries` marks."""
    score, positive, excluded, _ = _similarity_pairs(similarity, identities, sessions, queries)
    return ranks_from_scores(score, positive, excluded)


def _similarity_pairs(similarity, identities, sessions, queries):
    """The checked query x image scores, positive and excluded pairs, and the asking indices."""
    ids = _codes(identities)
    n = len(ids)
    asking = _asking(queries, n)
    score = np.asarray(similarity, dtype=np.float64)
    if score.shape == (n, n) and len(asking) != n:
        score = score[asking]
    if score.shape != (len(asking), n):
        raise ValueError(f"similarity is {score.shape}; expected {len(asking)} queries x {n} images")
    if not np.isfinite(score).all():
        raise ValueError("similarity holds NaN or inf")
    excluded = excluded_pairs(identities, sessions, queries)
    positive = (ids[asking, None] == ids[None, :]) & ~excluded
    return score, positive, excluded, asking


def similarity_retrieval_metrics(similarity, identities, sessions=None, ks=(1, 5), queries=None) -> dict:
    """zfutils.retrieval.retrieval_metrics (top-k, mAP, n_queries, n_skipped; with sessions the
    same-session share of top-1 neighbours and its chance) from a similarity."""
    score, positive, excluded, asking = _similarity_pairs(similarity, identities, sessions, queries)
    first, ap = ranks_from_scores(score, positive, excluded)
    out = summarize_ranks(first, ap, ks)
    if sessions is None:
        return out
    sess = _codes(sessions)
    return {**out, **summarize_sessions(*session_neighbours(score, excluded, sess[asking], sess), first)}


def _codes(labels) -> np.ndarray:
    return np.unique(np.asarray(labels), return_inverse=True)[1].ravel()


def _asking(queries, n: int) -> np.ndarray:
    if queries is None:
        return np.arange(n)
    queries = np.asarray(queries, dtype=bool)
    if len(queries) != n:
        raise ValueError(f"queries marks {len(queries)} images, identities hold {n}")
    return np.flatnonzero(queries)

"""Few images per individual, as the training-set-size study (stage 06) and few-shot transfer
(stage 07) use them: which images a run may train on, one classifier trained on them, and
nearest-individual matching by local features for methods without an encoder.

Training images come from the `train` part of the session split only (`split_session`): test
images then sit in other recording sessions, never beside near-duplicates of training frames.
A classifier is stage 03's (zfutils.train.classifier_setup.build_classifier, ClassifierTrainer, the `classify`
settings): in `shallow` mode a head on the frozen encoder's features, computed once per data set
(ClassifierTrainer.frozen_features) and reused by every size and seed; in `deep` mode everything
trains from the starting weights. A small training set has few batches per epoch, so a run
trains at least `min_steps` optimiser steps (more epochs), lest "few images" also mean "hardly
trained"; the best epoch is chosen on the session split's validation images, as in stage 03.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.models.registry import Backbone
from zfutils.train import batchnorm
from zfutils.train.augment import recipe
from zfutils.train.classifier_setup import build_classifier
from zfutils.train.classify import ClassifierTrainer, EmbeddedSet, holds_features

COLUMN = "split_session"
SPLITS = ("train", "val", "test")


def is_matching(cfg: dict) -> bool:
    """A local-feature matching method (backbone family `matching`): no encoder, nothing to train."""
    return cfg["backbone"]["family"] == "matching"


def _pool(rows: pd.DataFrame, column: str, split: str) -> np.ndarray:
    keep = rows[column].astype(str) == split
    if "task" in rows.columns:
        keep &= rows["task"] == "classify"
    return keep.to_numpy()


def available_per_individual(rows: pd.DataFrame, column: str = COLUMN, split: str = "train") -> int:
    """The fewest `split` images any individual of `rows` has under `column` (0: one has none)."""
    counts = rows.loc[_pool(rows, column, split), "identity"].astype(str).value_counts()
    identities = rows["identity"].astype(str).unique()
    return int(min(counts.get(i, 0) for i in identities)) if len(identities) else 0


def usable_sizes(requested, available: int) -> tuple[list[int], list[int]]:
    """The requested images-per-individual counts that every individual can supply, and the dropped ones."""
    sizes = sorted({int(n) for n in requested})
    if any(n < 1 for n in sizes):
        raise ValueError(f"images per individual must be >= 1, got {list(requested)}")
    return [n for n in sizes if n <= available], [n for n in sizes if n > available]


def select_per_individual(rows: pd.DataFrame, n: int, seed: int, column: str = COLUMN,
                          split: str = "train") -> np.ndarray:
    """Positions (into `rows`) of exactly `n` images of every individual, drawn at random from its
    classification images in the `split` part of `column` and nothing else. The draw depends only
    on (seed, individual, the image ids on offer), not on the row order; for one seed a larger
    `n` keeps the smaller draw (nested training sets, so a curve over `n` is not also a curve
    over different images). An individual with fewer than `n` such images is an error."""
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1 image per individual, got {n}")
    offered = _pool(rows, column, split)
    ids = rows["identity"].astype(str).to_numpy()
    image_ids = rows["image_id"].astype(str).to_numpy()
    chosen = []
    for identity in sorted(set(ids)):
        candidates = np.flatnonzero(offered & (ids == identity))
        if len(candidates) < n:
            raise ValueError(f"individual '{identity}' has {len(candidates)} {split} images under {column}, fewer than "
                             f"n = {n}; ask for fewer (usable_sizes drops sizes the data cannot supply)")
        candidates = candidates[np.argsort(image_ids[candidates], kind="stable")]
        rng = np.random.default_rng([int(seed), zlib.crc32(identity.encode())])
        chosen.append(rng.permutation(candidates)[:n])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


class Selected(Subset):
    """Some images of a ClassificationSet (deep mode), keeping its classes and label order."""

    def __init__(self, data: ClassificationSet, positions):
        positions = [int(p) for p in positions]
        super().__init__(data, positions)
        self.classes = data.classes
        self.rows = data.rows.iloc[positions].reset_index(drop=True)


def pick(features: EmbeddedSet, positions) -> EmbeddedSet:
    index = torch.as_tensor(np.asarray(positions, dtype=np.int64))
    return EmbeddedSet(features.embedding[index], features.label[index])


def calibrate(model, data, cfg: dict, device: str, seed: int) -> int:
    """Batch-norm statistics of a randomly initialised encoder from `data`'s images, as stage 03
    estimates them before training from a random start (without it, eval-mode features of a
    random EfficientNet vanish). Statistics only: no label is used."""
    n = cfg["classify"]["precise_bn_batches"]
    if not n or not len(data):
        return 0
    loader = DataLoader(data, batch_size=cfg["classify"]["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(int(seed)))
    batches = (batch for _, batch in zip(range(n), loader))
    return batchnorm.recalibrate(model.encoder, lambda b: model.embed(b["image"].to(device)), batches)


def frozen_features(model, data: ClassificationSet, cfg: dict, device: str, where: Path) -> EmbeddedSet:
    """Every image's pooled encoder vector, with its label: ClassifierTrainer.frozen_features, the
    very features stage 03's shallow mode trains on."""
    c = cfg["classify"]
    extractor = ClassifierTrainer(model=model, mode="shallow", run_dir=where, epochs=0, batch_size=c["batch_size"],
                                  lr_head=c["lr_head"], lr_encoder=c["lr_encoder"], device=device)
    return extractor.frozen_features(data)


def by_split(features: EmbeddedSet, rows: pd.DataFrame, column: str = COLUMN) -> dict[str, EmbeddedSet]:
    """Features of a whole data set, cut into its `column` parts (train, val, test)."""
    values = rows[column].astype(str).to_numpy()
    return {s: pick(features, np.flatnonzero(values == s)) for s in SPLITS}


def epochs_for(n_train: int, cfg: dict, min_steps: int) -> int:
    """classify.epochs, or more where an epoch of `n_train` images has too few batches for
    `min_steps` optimiser steps (batches as ClassifierTrainer draws them: the last partial batch
    dropped when there is more than one, at most classify.max_batches)."""
    c = cfg["classify"]
    per_epoch = n_train // c["batch_size"] if n_train > c["batch_size"] else 1
    per_epoch = max(1, min(per_epoch, c["max_batches"] or per_epoch))
    return max(int(c["epochs"]), math.ceil(int(min_steps) / per_epoch))


def class_counts(train, n_classes: int) -> list[int]:
    """Training images per class, in label order, of stored features or of a Selected image set."""
    labels = train.label if holds_features(train) else torch.tensor(
        [train.classes.index(str(i)) for i in train.rows["identity"]], dtype=torch.long)
    return torch.bincount(labels, minlength=n_classes).tolist()


def train_and_test(cfg: dict, backbone: Backbone, state: dict | None, n_classes: int, mode: str, sets: dict,
                   out: Path, seed: int, min_steps: int, device: str, stamp: str,
                   calibrate_first: bool = False) -> dict:
    """One classifier, seeded by `seed`, trained on sets['train'] (stored features in shallow
    mode, images in deep mode), its best epoch chosen on sets['val'], tested on sets['test']."""
    c = cfg["classify"]
    torch.manual_seed(int(seed))
    model = build_classifier(cfg, backbone, state if mode == "deep" else None, n_classes)
    if mode == "shallow":  # the head trains on stored features: no encoder, and small checkpoints
        model.encoder, model.cam_layer = nn.Identity(), nn.Identity()
    model.set_class_counts(class_counts(sets["train"], n_classes))  # as stage 03 (the dynamic-margin head uses them)
    epochs = epochs_for(len(sets["train"]), cfg, min_steps)
    trainer = ClassifierTrainer(model=model, mode=mode, run_dir=out, epochs=epochs, batch_size=c["batch_size"],
                                lr_head=c["lr_head"], lr_encoder=c["lr_encoder"], weight_decay=c["weight_decay"],
                                seed=int(seed), stamp=stamp, max_batches=c["max_batches"], device=device,
                                precise_bn_batches=c["precise_bn_batches"] if mode == "deep" else 0,
                                calibrate_first=calibrate_first and mode == "deep",
                                progress=False, **recipe(c))  # thousands of small runs: a bar each would bloat the notebook
    best = trainer.fit(sets["train"], sets["val"], n_classes)
    trainer.load_best()
    test = trainer.evaluate(sets["test"], n_classes)
    return {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "best_epoch": best["best_epoch"],
            "epochs": epochs, "n_train": len(sets["train"])}


def probe_sweep(cfg: dict, backbone: Backbone, stored: dict[str, EmbeddedSet], train_rows: pd.DataFrame,
                n_classes: int, sizes, seeds, where: Path, key: str, min_steps: int, device: str) -> dict:
    """{N: {seed: test accuracy}} of shallow heads on stored features (`stored`: train, val, test;
    `train_rows`: the rows of stored['train']), each trained on N images per individual; `key`
    names what the features came from (a run is redone only when it or the draw changes)."""
    result = {}
    for n in sizes:
        for seed in seeds:
            chosen = select_per_individual(train_rows, n, seed)
            sets = {**stored, "train": pick(stored["train"], chosen)}
            out = Path(where) / f"n{int(n):03d}_seed{int(seed)}"
            got = run_once(out, digest(key, n, seed, train_rows["image_id"].iloc[chosen].tolist()),
                           lambda stamp: train_and_test(cfg, backbone, None, n_classes, "shallow", sets, out, seed,
                                                        min_steps, device, stamp))
            result.setdefault(str(n), {})[str(seed)] = got["accuracy"]
    return result


def matching_sweep(cfg: dict, data: StoredDataset, sizes, seeds) -> tuple[dict, dict]:
    """{N: {seed: accuracy}} of nearest-individual matching (zfutils.matching's rule: the
    individual with the most verified matches in one gallery image, ties broken at random with
    the draw's seed) with N gallery images per individual from the session split's training part,
    queried by its test images. Every test image is matched once against every gallery image any
    draw uses, and each draw reads its columns. Also returns the cost (keypoints, seconds per query)."""
    from zfutils.matching import predict

    train, test = (ClassificationSet(data, s, column=COLUMN) for s in ("train", "test"))
    draws = {(int(n), int(seed)): select_per_individual(train.rows, n, seed) for n in sizes for seed in seeds}
    if not draws or not len(test):
        return {}, {}
    used = np.unique(np.concatenate(list(draws.values())))
    similarity, cost = match_scores(cfg, data, [train[int(i)] for i in used], [test[i] for i in range(len(test))])
    column = {int(p): k for k, p in enumerate(used)}
    labels = np.array([train.class_index[str(i)] for i in train.rows["identity"]])
    truth = np.array([test.class_index[str(i)] for i in test.rows["identity"]])
    result = {}
    for (n, seed), chosen in draws.items():
        pred = predict(similarity[:, [column[int(p)] for p in chosen]], labels[chosen], len(train.classes), seed)
        result.setdefault(str(n), {})[str(seed)] = float(np.mean(pred == truth))
    return result, cost


def digest(*parts) -> str:
    """A short hash of JSON-able parts and tensors/arrays (by their bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (torch.Tensor, np.ndarray)):
            h.update(np.ascontiguousarray(part.numpy() if isinstance(part, torch.Tensor) else part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def run_once(out: Path, key: str, work: Callable[[str], dict]) -> dict:
    """`work(key)`'s result, kept in out/result.json; called again with the same key (a stage
    rerun after a crash), the stored result comes back without training. The run's checkpoints
    are removed once its result is stored (its train_log.jsonl stays)."""
    out = Path(out)
    path = out / "result.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["result"]
    result = work(key)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "result": result}, indent=1, default=float))
    return result


def matching_region(cfg: dict, data: StoredDataset) -> str:
    """`matching.region` (fish | pattern | all), which needs masks unless it is `all`."""
    from zfutils.matching import check_region

    return check_region(cfg, data)


def match_scores(cfg: dict, data: StoredDataset, gallery: list[dict], queries: list[dict]) -> tuple[np.ndarray, dict]:
    """Verified matches (queries x gallery; items of a ClassificationSet) by the configured
    matching backbone (zfutils.matching.make_index), keypoints in `matching.region`; and the cost."""
    from zfutils.matching import make_index, score_items

    region = matching_region(cfg, data)
    index = make_index(cfg)
    index.progress = False
    scores = score_items(index, gallery, queries,
                         lambda item: None if region == "all" else item[region][0].numpy().astype(bool))
    return scores.similarity, {**index.cost(scores), "region": region}

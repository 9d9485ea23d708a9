"""Fine-tuning a classifier (stage 03) in one of the study's two modes: `shallow` (encoder frozen,
only the head learns) or `deep` (everything learns). Per epoch: validation accuracy, macro recall
and macro F1, an optional callback (Grad-CAM), `last.pt` for resuming and `best.pt` at the best
validation accuracy; batches are shuffled by (seed, epoch), so a resumed run sees the batches an
uninterrupted one would. Under torchrun the training steps go through DDP (distributed.wrap) on
each rank's share of the batch; rank 0 validates, logs and saves."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from zfutils.metrics import classification_metrics, confusion
from zfutils.models.classifier import Classifier
from zfutils.train import batchnorm, distributed
from zfutils.train.augment import Jitter, image_keys, lr_factor
from zfutils.train.checkpoint import Resumable, load_checkpoint, rng_state, save_atomic
from zfutils.train.compute import Compute
from zfutils.train.runlog import JsonLinesLog

log = logging.getLogger("zfutils.train")
MODES = ("shallow", "deep")


class EmbeddedSet(torch.utils.data.Dataset):
    """Pooled encoder features with their labels, batched like the images they came from: what a
    frozen encoder gives once (ClassifierTrainer.frozen_features), for a head to train on."""

    def __init__(self, embedding: torch.Tensor, label: torch.Tensor):
        self.embedding, self.label = embedding, label

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, index: int) -> dict:
        return {"embedding": self.embedding[index], "label": self.label[index]}


def holds_features(data) -> bool:
    """Whether `data` holds stored encoder features (an EmbeddedSet) rather than images: the one
    test of what a trainer was given. Stored features went through an encoder already, so the
    trainer neither calibrates the encoder on them nor computes frozen features from them."""
    return isinstance(data, EmbeddedSet)


@dataclass
class ClassifierTrainer(Resumable):
    model: Classifier
    mode: str
    run_dir: Path
    epochs: int
    batch_size: int
    lr_head: float
    lr_encoder: float
    weight_decay: float = 0.0
    seed: int = 0
    stamp: str = ""
    max_batches: int | None = None
    device: str = "cpu"
    on_epoch_end: Callable[[int, Classifier], dict] | None = None  # extra numbers logged per epoch
    precise_bn_batches: int = 0     # deep mode: re-estimate batch-norm statistics on this many batches per epoch
    calibrate_first: bool = False   # random start: estimate batch-norm statistics once before training
    compute: Compute | None = None  # precision, memory layout, loaders (zfutils.train.compute); None: fp32 on `device`
    progress: bool = True           # a bar per epoch (off for sweeps of many small runs: each bar is a notebook widget)
    jitter: Jitter | None = None    # deep mode: training images jittered (zfutils.train.augment); shallow mode trains
                                    # the head on the frozen encoder's stored vectors, which cannot be jittered
    schedule: str = "constant"      # constant | cosine (linear warm-up, then cosine decay to zero)
    warmup_epochs: float = 0.0
    state: dict = field(default_factory=lambda: {"epoch": 0, "iteration": 0, "best_val": -math.inf, "best_epoch": None})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown classification mode '{self.mode}'; known modes: {', '.join(MODES)}")
        self.run_dir = Path(self.run_dir)
        self._position = (None, None)  # (batch, batches) of the epoch fit() is in, for error messages
        self.compute = self.compute or Compute(device=self.device)
        self.model = self.compute.prepare(self.model, hot=self.model.encoder)
        groups = [{"params": [p for p in self.model.head.parameters()], "lr": self.lr_head}]
        if self.mode == "shallow":
            self.model.freeze_encoder()
        else:
            groups.append({"params": [p for p in self.model.encoder.parameters() if p.requires_grad], "lr": self.lr_encoder})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        for group in self.optimizer.param_groups:
            group["base_lr"] = group["lr"]
        lr_factor(self.schedule, 0, 1, 0)  # an unknown schedule fails here, before any training
        self._steps = (1, 0)  # (total, warm-up) optimiser steps of the run, set by fit()
        self.trained = distributed.wrap(self.model, self.device)  # DDP under torchrun, else the model itself
        self.log = JsonLinesLog(self.run_dir / "train_log.jsonl")

    def train_step(self, batch: dict) -> float:
        self.model.train()
        if self.jitter is not None and "image" in batch:
            keys = image_keys(self.seed, self.state["epoch"] + 1, batch["index"])
            batch = {**batch, "image": self.jitter(batch["image"], keys)}
        factor = lr_factor(self.schedule, self.state["iteration"], *self._steps)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        loss, _ = self._loss(batch, self.trained)
        value = distributed.mean_values({"loss": float(loss.detach())})["loss"]  # the global batch's loss
        if not math.isfinite(value):  # on every rank at once under torchrun
            raise self.non_finite({f"{self.mode} classification loss": value}, *self._position,
                                  hint="Lower classify.lr_head / classify.lr_encoder, or check the input images.")
        self.optimizer.zero_grad(set_to_none=True)
        self.compute.backward(loss)
        self.compute.step(self.optimizer)
        self.compute.update()
        self.state["iteration"] += 1
        return value

    @torch.no_grad()
    def predict(self, data) -> tuple[np.ndarray, np.ndarray, float]:
        """(true labels, predicted labels, mean loss) over `data`."""
        self.model.eval()
        truth, pred, total = [], [], 0.0
        for batch in DataLoader(data, batch_size=max(self.batch_size, 32), shuffle=False):
            label = batch["label"].to(self.device)
            loss, logits = self._loss(batch)
            total += float(loss) * len(label)
            truth.append(label.cpu().numpy())
            pred.append(logits.argmax(1).cpu().numpy())
        if not truth:
            return np.zeros(0, int), np.zeros(0, int), float("nan")
        return np.concatenate(truth), np.concatenate(pred), total / sum(len(t) for t in truth)

    def _loss(self, batch: dict, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        model, label = self.model if model is None else model, batch["label"].to(self.device)
        with self.compute.autocast():
            if "embedding" in batch:
                return model.loss_on_embedding(batch["embedding"].to(self.device), label)
            return model.loss(self.compute.batch(batch["image"]), label)

    @torch.no_grad()
    def frozen_features(self, data) -> "EmbeddedSet":
        """Shallow mode: the frozen encoder maps an image to the same vector in every epoch, so
        it runs once per image and the head trains on the stored vectors (same batches, same
        result, the encoder's cost paid once instead of once per epoch)."""
        self.model.eval()
        vectors, labels = [], []
        for batch in DataLoader(data, batch_size=max(self.batch_size, 32), shuffle=False):
            with self.compute.autocast():
                vectors.append(self.model.embed(self.compute.batch(batch["image"])).float().cpu())
            labels.append(batch["label"])
        if not vectors:
            return EmbeddedSet(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
        return EmbeddedSet(torch.cat(vectors), torch.cat(labels))

    def evaluate(self, data, n_classes: int) -> dict:
        truth, pred, loss = self.predict(data)
        return {**classification_metrics(truth, pred, n_classes), "loss": loss,
                "confusion": confusion(truth, pred, n_classes).tolist()}

    def _payload(self, resumable: bool = True) -> dict:
        """What a checkpoint holds; `best.pt` is read for its weights alone, so it leaves out the
        optimizer's state (AdamW: twice the weights; InceptionV3's deep best.pt 262 -> 87 MB)."""
        payload = {"model": self.model.state_dict(), "state": dict(self.state), "stamp": self.stamp, "mode": self.mode}
        return {**payload, "optimizer": self.optimizer.state_dict(), "rng": rng_state()} if resumable else payload

    def resume(self) -> bool:
        ckpt = self.resumable_checkpoint()
        if ckpt is None:
            return False
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        return True

    def _recalibrate(self, train_set, epoch: int, encoder: bool) -> int:
        """Re-estimate batch-norm statistics on `precise_bn_batches` training batches (all of
        them when that is 0): the encoder's where `encoder` is true, then the standardising
        neck's, exactly (the mean and variance of the pooled vectors of those images, one pass).
        Returns the number of batches used for the encoder."""
        self.model.eval()  # nothing else may move (dropout off, other statistics kept)
        stored = holds_features(train_set)  # no images for the encoder; the neck's input is at hand
        used = 0
        if encoder and self.precise_bn_batches and not stored:
            used = batchnorm.recalibrate(self.model.encoder, lambda b: self.model.embed(b["image"].to(self.device)),
                                         self._calibration_batches(train_set, epoch))
        if batchnorm.batchnorms(self.model.neck):
            if stored:
                vectors = train_set.embedding.to(self.device)
            else:
                with torch.no_grad():
                    vectors = torch.cat([self.model.embed(b["image"].to(self.device)).float()
                                         for b in self._calibration_batches(train_set, epoch)])
            batchnorm.recalibrate(self.model.neck, self.model.neck, [vectors])
        return used

    def _calibration_batches(self, train_set, epoch: int):
        loader = self.epoch_loader(train_set, epoch, salt=1, drop_last=False, shard=False)  # equal on every rank
        return (b for k, b in enumerate(loader) if not self.precise_bn_batches or k < self.precise_bn_batches)

    def fit(self, train_set, val_set, n_classes: int) -> dict:
        """Train the remaining epochs; returns the best epoch and its validation accuracy. The sets
        hold images or stored features (EmbeddedSet, holds_features); given images, shallow mode
        stores their frozen features first and trains on those."""
        resumed = self.resume()  # a resumed run has its statistics in the checkpoint
        if not holds_features(train_set):  # images: stored features were calibrated for and computed elsewhere
            if not resumed and self.calibrate_first and self.precise_bn_batches:
                used = self._recalibrate(train_set, 0, encoder=True)  # before a frozen encoder's features are stored
                self.log.write(kind="calibration", epoch=0, iteration=0, batches=used)
            if self.mode == "shallow":
                train_set, val_set = self.frozen_features(train_set), self.frozen_features(val_set)
        if not resumed:
            self._recalibrate(train_set, 0, encoder=False)
        per_epoch = min(len(self.epoch_loader(train_set, 1)), self.max_batches or math.inf)
        self._steps = (self.epochs * per_epoch, round(self.warmup_epochs * per_epoch))
        while self.state["epoch"] < self.epochs:
            epoch = self.state["epoch"] + 1
            loader = self.epoch_loader(train_set, epoch)
            n_batches = min(len(loader), self.max_batches or len(loader))
            bar = tqdm(loader, total=n_batches, desc=f"{self.mode} epoch {epoch}/{self.epochs}", leave=False,
                       disable=not (self.progress and distributed.is_main()))
            losses = []
            for k, batch in enumerate(bar):
                if k >= n_batches:
                    break
                self._position = (k + 1, n_batches)
                losses.append(self.train_step(batch))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            self._position = (None, None)
            self.state["epoch"] = epoch
            if self.mode == "deep":  # the encoder's statistics lag behind its weights, and the neck's behind both
                self._recalibrate(train_set, epoch, encoder=True)
            val, extra = distributed.from_main(self._validate, val_set, n_classes, epoch)
            self.log.write(kind="epoch", epoch=epoch, iteration=self.state["iteration"], mode=self.mode,
                           train_loss=float(np.mean(losses)) if losses else float("nan"),
                           **{f"val_{k}": v for k, v in val.items() if k != "confusion"}, **extra)
            if val["accuracy"] > self.state["best_val"]:
                self.state.update(best_val=val["accuracy"], best_epoch=epoch)
                save_atomic(self._payload(resumable=False), self.best_path)
            save_atomic(self._payload(), self.last_path)
            distributed.barrier()  # nobody reads a checkpoint rank 0 is still writing
        return {"best_epoch": self.state["best_epoch"], "best_val_accuracy": self.state["best_val"],
                "epochs": self.state["epoch"], "iterations": self.state["iteration"]}

    def _validate(self, val_set, n_classes: int, epoch: int) -> tuple[dict, dict]:
        """Validation metrics and the epoch callback's numbers (rank 0 alone under torchrun)."""
        return self.evaluate(val_set, n_classes), (self.on_epoch_end(epoch, self.model) if self.on_epoch_end else {})

    def load_best(self) -> Classifier:
        self.model.load_state_dict(load_checkpoint(self.best_path)["model"])
        return self.model.eval()

"""Fine-tuning a classifier (stage 03) in one of the study's two modes: `shallow` (encoder frozen,
only the head learns) or `deep` (everything learns). Per epoch: validation accuracy, macro recall
and macro F1, an optional callback (Grad-CAM), `last.pt` for resuming and `best.pt` at the best
validation accuracy; batches are shuffled by (seed, epoch), so a resumed run sees the batches an
uninterrupted one would."""
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
from zfutils.train import batchnorm
from zfutils.train.checkpoint import Resumable, load_checkpoint, rng_state, save_atomic
from zfutils.train.inpaint import NonFiniteLoss
from zfutils.train.runlog import JsonLinesLog

log = logging.getLogger("zfutils.train")
MODES = ("shallow", "deep")


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
    state: dict = field(default_factory=lambda: {"epoch": 0, "iteration": 0, "best_val": -math.inf, "best_epoch": None})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown classification mode '{self.mode}'; known modes: {', '.join(MODES)}")
        self.run_dir = Path(self.run_dir)
        self.model.to(self.device)
        groups = [{"params": [p for p in self.model.head.parameters()], "lr": self.lr_head}]
        if self.mode == "shallow":
            self.model.freeze_encoder()
        else:
            groups.append({"params": [p for p in self.model.encoder.parameters() if p.requires_grad], "lr": self.lr_encoder})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        self.log = JsonLinesLog(self.run_dir / "train_log.jsonl")

    def train_step(self, batch: dict) -> float:
        self.model.train()
        image, label = batch["image"].to(self.device), batch["label"].to(self.device)
        loss, _ = self.model.loss(image, label)
        if not math.isfinite(float(loss.detach())):
            raise NonFiniteLoss(f"classification loss became non-finite at iteration {self.state['iteration'] + 1}; "
                                f"the last good checkpoint is kept ({self.last_path}); lower classify.lr_head / lr_encoder")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state["iteration"] += 1
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, data) -> tuple[np.ndarray, np.ndarray, float]:
        """(true labels, predicted labels, mean loss) over `data`."""
        self.model.eval()
        truth, pred, total = [], [], 0.0
        for batch in DataLoader(data, batch_size=max(self.batch_size, 32), shuffle=False):
            image, label = batch["image"].to(self.device), batch["label"].to(self.device)
            loss, logits = self.model.loss(image, label)
            total += float(loss) * len(label)
            truth.append(label.cpu().numpy())
            pred.append(logits.argmax(1).cpu().numpy())
        if not truth:
            return np.zeros(0, int), np.zeros(0, int), float("nan")
        return np.concatenate(truth), np.concatenate(pred), total / sum(len(t) for t in truth)

    def evaluate(self, data, n_classes: int) -> dict:
        truth, pred, loss = self.predict(data)
        return {**classification_metrics(truth, pred, n_classes), "loss": loss,
                "confusion": confusion(truth, pred, n_classes).tolist()}

    def _payload(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "state": dict(self.state),
                "rng": rng_state(), "stamp": self.stamp, "mode": self.mode}

    def resume(self) -> bool:
        ckpt = self.resumable_checkpoint()
        if ckpt is None:
            return False
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        return True

    def _recalibrate(self, train_set, epoch: int) -> int:
        loader = self.epoch_loader(train_set, epoch, salt=1, drop_last=False)
        batches = (b for k, b in enumerate(loader) if k < self.precise_bn_batches)
        return batchnorm.recalibrate(self.model.encoder, lambda b: self.model.embed(b["image"].to(self.device)), batches)

    def fit(self, train_set, val_set, n_classes: int) -> dict:
        """Train the remaining epochs; returns the best epoch and its validation accuracy."""
        if not self.resume():
            if self.calibrate_first and self.precise_bn_batches:
                used = self._recalibrate(train_set, 0)
                self.log.write(kind="calibration", epoch=0, iteration=0, batches=used)
        while self.state["epoch"] < self.epochs:
            epoch = self.state["epoch"] + 1
            loader = self.epoch_loader(train_set, epoch)
            n_batches = min(len(loader), self.max_batches or len(loader))
            bar = tqdm(loader, total=n_batches, desc=f"{self.mode} epoch {epoch}/{self.epochs}", leave=False)
            losses = []
            for k, batch in enumerate(bar):
                if k >= n_batches:
                    break
                losses.append(self.train_step(batch))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            self.state["epoch"] = epoch
            if self.mode == "deep" and self.precise_bn_batches:
                self._recalibrate(train_set, epoch)
            val = self.evaluate(val_set, n_classes)
            extra = self.on_epoch_end(epoch, self.model) if self.on_epoch_end else {}
            self.log.write(kind="epoch", epoch=epoch, iteration=self.state["iteration"], mode=self.mode,
                           train_loss=float(np.mean(losses)) if losses else float("nan"),
                           **{f"val_{k}": v for k, v in val.items() if k != "confusion"}, **extra)
            if val["accuracy"] > self.state["best_val"]:
                self.state.update(best_val=val["accuracy"], best_epoch=epoch)
                save_atomic(self._payload(), self.best_path)
            save_atomic(self._payload(), self.last_path)
        return {"best_epoch": self.state["best_epoch"], "best_val_accuracy": self.state["best_val"],
                "epochs": self.state["epoch"], "iterations": self.state["iteration"]}

    def load_best(self) -> Classifier:
        self.model.load_state_dict(load_checkpoint(self.best_path)["model"])
        return self.model.eval()

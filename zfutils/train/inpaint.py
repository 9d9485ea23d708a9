"""Fine-tuning an inpainting generator and its discriminator (stage 02).

Per epoch: shuffled training batches (order seeded by seed and epoch, so a resumed run sees the
batches an uninterrupted one would), a validation generator loss (the study picks the checkpoint
with the lowest one, its Table 3), `last.pt` for resuming and `best.pt` for later stages. A NaN or
infinite loss stops the run with a message naming the epoch and batch, and leaves the last good
checkpoint (the previous epoch's last.pt) in place.

One training step follows its original's order (`inpaint.update_order`, set per backbone):
`d_then_g` (DeepFillV2: D steps, then G is judged by the updated D), `g_then_d` (LaMa under
Lightning: G steps, then D steps on fresh fakes of the updated G) or `simultaneous` (AOT-GAN,
EdgeConnect: both losses from one forward and one D state, then both step; with
`adv_grads_into_d`, as AOT-GAN, D's step also takes the gradient G's adversarial loss leaves on it).
Each backward reaches only the parameters of the network it is meant for, and `grad_clip` clips
each network's own gradients before its step.

Under torchrun (zfutils/train/launch.py) each rank trains on its share of every batch and the
gradients of both networks are averaged by hand (distributed.average_gradients says why not DDP);
rank 0 validates, logs and saves.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from zfutils import metrics
from zfutils.models.registry import Backbone
from zfutils.train import distributed
from zfutils.train.checkpoint import NonFiniteLoss, Resumable, load_checkpoint, rng_state, save_atomic
from zfutils.train.compute import Compute
from zfutils.train.recipe import LossRecipe
from zfutils.train.runlog import JsonLinesLog

log = logging.getLogger("zfutils.train")


__all__ = ["InpaintTrainer", "NonFiniteLoss", "evaluate_inpainting"]


@dataclass
class InpaintTrainer(Resumable):
    backbone: Backbone
    generator: nn.Module
    discriminator: nn.Module
    recipe: LossRecipe
    run_dir: Path
    epochs: int
    batch_size: int
    lr_g: float
    lr_d: float
    betas: tuple[float, float]
    seed: int = 0
    stamp: str = ""                 # identifies the config: a checkpoint of another config is not resumed
    max_batches: int | None = None  # cap on training batches per epoch (smoke)
    val_every: int = 0              # extra validations every K iterations (0: once per epoch)
    grad_clip: float | None = None  # max gradient norm of each network, G's and D's (LaMa clips at 1)
    device: str = "cpu"
    compute: Compute | None = None  # precision, memory layout, loaders (zfutils.train.compute); None: fp32 on `device`
    state: dict = field(default_factory=lambda: {"epoch": 0, "iteration": 0, "best_val": math.inf,
                                                 "best_iteration": None, "best_epoch": None})

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self._position = (None, None)  # (batch, batches) of the epoch fit() is in, for error messages
        self.compute = self.compute or Compute(device=self.device)
        self.generator = distributed.prepare(self.compute.prepare(self.generator), self.device)
        self.discriminator = distributed.prepare(self.compute.prepare(self.discriminator), self.device,
                                                 sync_bn=not self.recipe.terms()["r1"])  # R1: double backward
        self.recipe.to(self.device)
        self.recipe.configure(self.backbone, self.generator)
        self._g_params = [p for p in self.generator.parameters() if p.requires_grad]
        self._d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr_g, betas=tuple(self.betas))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_d, betas=tuple(self.betas))
        self.log = JsonLinesLog(self.run_dir / "train_log.jsonl")

    # --- steps ---------------------------------------------------------------------------
    def _batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.compute.batch(batch["image"]), self.compute.batch(batch["mask"])

    def train_step(self, batch: dict) -> dict:
        """One update of both networks in the recipe's order; returns the loss terms."""
        image, mask = self._batch(batch)
        self.generator.train()
        self.discriminator.train()
        step = {"d_then_g": self._d_then_g, "g_then_d": self._g_then_d,
                "simultaneous": self._simultaneous}[self.recipe.update_order]
        g_values, d_values = step(image, mask)
        self.compute.update()
        self.state["iteration"] += 1
        return {"g_loss": g_values.pop("generator"), "d_loss": d_values.pop("discriminator"), **g_values, **d_values}

    def _d_loss(self, image, mask, result) -> tuple[torch.Tensor, dict]:
        with self.compute.autocast():
            total, terms = self.recipe.discriminator_loss(self.backbone, self.discriminator, image, mask, result)
        return total, self._check_finite({"discriminator": total, **terms})

    def _g_loss(self, image, mask, result=None) -> tuple[torch.Tensor, dict]:
        with self.compute.autocast():
            total, terms, _ = self.recipe.generator_loss(self.backbone, self.generator, self.discriminator,
                                                         image, mask, result=result)
        return total, self._check_finite({"generator": total, **terms})

    def _update(self, optimizer, loss: torch.Tensor, params: list) -> None:
        """Gradients of `loss` on `params` alone, averaged over ranks, clipped, one step."""
        optimizer.zero_grad(set_to_none=True)
        self.compute.backward(loss, inputs=params)
        self._step(optimizer, params)

    def _step(self, optimizer, params: list) -> None:
        distributed.average_gradients(params)
        self.compute.step(optimizer, clip=self.grad_clip, parameters=params)

    def _d_then_g(self, image, mask) -> tuple[dict, dict]:
        """D on the current fakes steps first; G's loss is then judged by the updated D."""
        with self.compute.autocast():
            result = self.backbone.inpaint(self.generator, image, mask)
        d_total, d_values = self._d_loss(image, mask, result)
        self._update(self.opt_d, d_total, self._d_params)
        g_total, g_values = self._g_loss(image, mask, result)
        self._update(self.opt_g, g_total, self._g_params)
        return g_values, d_values

    def _g_then_d(self, image, mask) -> tuple[dict, dict]:
        """G steps against the current D; D then steps on fresh fakes of the updated G."""
        g_total, g_values = self._g_loss(image, mask)
        self._update(self.opt_g, g_total, self._g_params)
        with torch.no_grad(), self.compute.autocast():
            result = self.backbone.inpaint(self.generator, image, mask)
        d_total, d_values = self._d_loss(image, mask, result)
        self._update(self.opt_d, d_total, self._d_params)
        return g_values, d_values

    def _simultaneous(self, image, mask) -> tuple[dict, dict]:
        """Both losses from one forward with the same D; then both networks step."""
        with self.compute.autocast():
            result = self.backbone.inpaint(self.generator, image, mask)
        d_total, d_values = self._d_loss(image, mask, result)
        g_total, g_values = self._g_loss(image, mask, result)
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        into_d = self._d_params if self.recipe.cfg["adv_grads_into_d"] else []
        self.compute.backward(g_total, inputs=self._g_params + into_d)
        self.compute.backward(d_total, inputs=self._d_params)
        self._step(self.opt_g, self._g_params)
        self._step(self.opt_d, self._d_params)
        return g_values, d_values

    def _check_finite(self, values: dict) -> dict:
        """The values as floats (averaged over the ranks under torchrun); raises on NaN or inf."""
        values = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in values.items()}
        values = distributed.mean_values(values)
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise self.non_finite(bad, *self._position, hint="Lower the learning rates (inpaint.lr_g, inpaint.lr_d) "
                                                              "or check the input images.")
        return values

    @torch.no_grad()
    def validate(self, data) -> float:
        """Mean generator loss (the weighted sum of its terms; an auxiliary model's terms left out)
        on `data`, without updates."""
        self.generator.eval()
        self.discriminator.eval()
        total, n = 0.0, 0
        for batch in DataLoader(data, batch_size=self.batch_size, shuffle=False):
            image, mask = self._batch(batch)
            with self.compute.autocast():
                loss, _, _ = self.recipe.generator_loss(self.backbone, self.generator, self.discriminator, image, mask,
                                                        with_auxiliary=False)
            total += float(loss) * len(image)
            n += len(image)
        return total / max(n, 1)

    # --- checkpoints ---------------------------------------------------------------------
    def _payload(self, resumable: bool = True) -> dict:
        """What a checkpoint holds; `best.pt` is read for its weights alone (later stages), so it
        leaves out the optimizers' state (Adam: twice the weights)."""
        payload = {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                   "state": dict(self.state), "stamp": self.stamp, "backbone": self.backbone.name,
                   "loss_terms": self.recipe.terms()}
        if not resumable:
            return payload
        return {**payload, "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng_state()}

    def resume(self) -> bool:
        """Continue from last.pt when it belongs to this config; returns whether it did."""
        ckpt = self.resumable_checkpoint()
        if ckpt is None:
            return False
        self.generator.load_state_dict(ckpt["generator"])
        self.discriminator.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        log.info("resumed from %s at epoch %d, iteration %d", self.last_path, self.state["epoch"], self.state["iteration"])
        return True

    def _maybe_best(self, val_loss: float) -> None:
        if val_loss < self.state["best_val"]:
            self.state.update(best_val=val_loss, best_iteration=self.state["iteration"], best_epoch=self.state["epoch"])
            save_atomic(self._payload(resumable=False), self.best_path)

    # --- the loop ------------------------------------------------------------------------
    def fit(self, train_set, val_set) -> dict:
        """Train for the remaining epochs; returns the Table 3 facts."""
        self.resume()
        while self.state["epoch"] < self.epochs:
            epoch = self.state["epoch"] + 1
            loader = self.epoch_loader(train_set, epoch)
            n_batches = min(len(loader), self.max_batches or len(loader))
            bar = tqdm(loader, total=n_batches, desc=f"{self.backbone.name} epoch {epoch}/{self.epochs}", leave=False,
                       disable=not distributed.is_main())
            for k, batch in enumerate(bar):
                if k >= n_batches:
                    break
                self._position = (k + 1, n_batches)
                terms = self.train_step(batch)
                self.log.write(kind="train", epoch=epoch, iteration=self.state["iteration"], **terms)
                bar.set_postfix(g=f"{terms['g_loss']:.3f}", d=f"{terms['d_loss']:.3f}")
                if self.val_every and self.state["iteration"] % self.val_every == 0:
                    val = distributed.from_main(self.validate, val_set)
                    self.log.write(kind="val", epoch=epoch, iteration=self.state["iteration"], val_g_loss=val)
                    self._maybe_best(val)
            self._position = (None, None)
            self.state["epoch"] = epoch
            val = distributed.from_main(self.validate, val_set)
            self.log.write(kind="val", epoch=epoch, iteration=self.state["iteration"], val_g_loss=val)
            self._maybe_best(val)
            save_atomic(self._payload(), self.last_path)
            distributed.barrier()  # nobody reads a checkpoint rank 0 is still writing
        return {"best_val_g_loss": self.state["best_val"], "best_iteration": self.state["best_iteration"],
                "best_epoch": self.state["best_epoch"], "iterations": self.state["iteration"],
                "epochs": self.state["epoch"], "batch_size": self.batch_size}

    def load_best(self) -> nn.Module:
        self.generator.load_state_dict(load_checkpoint(self.best_path)["generator"])
        return self.generator.eval()


@torch.no_grad()
def evaluate_inpainting(backbone: Backbone, generator: nn.Module, data, batch_size: int = 8, device: str = "cpu") -> dict:
    """L1, PSNR and SSIM of the composite on the hole pixels of `data`, averaged over images."""
    generator.eval()
    values = {"l1": [], "psnr": [], "ssim": []}
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        image, mask = batch["image"].to(device), batch["mask"].to(device)
        out = backbone.inpaint(generator, image, mask).composite.clamp(0, 1)
        values["l1"].append(metrics.masked_l1(out, image, mask))
        values["psnr"].append(metrics.masked_psnr(out, image, mask))
        values["ssim"].append(metrics.masked_ssim(out, image, mask))
    return {f"test_{k}": float(torch.cat(v).nanmean()) if v else float("nan") for k, v in values.items()}

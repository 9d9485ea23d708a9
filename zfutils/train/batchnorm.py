"""Precise batch-norm statistics: re-estimate an encoder's running means and variances on
training batches, without touching a weight.

Why: a randomly initialised network's running statistics are placeholders (mean 0, variance 1);
in eval mode they make EfficientNet's features vanish (about 1e-15 here), so a classifier on top
stays at chance, which is probably what happened to the study's baselines (0.17 for 6 fish). And
after a few epochs of deep fine-tuning with batch 8 the momentum-averaged statistics lag behind
the weights. Recomputing them as plain averages over training batches fixes both.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorms(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate(owner: nn.Module, forward, batches) -> int:
    """Reset and re-estimate the running statistics of every batch norm in `owner` by running
    `forward(batch)` over `batches` with only those layers in training mode; returns the number
    of batches used (0: nothing to do)."""
    layers = batchnorms(owner)
    if not layers:
        return 0
    modes = {m: m.training for m in owner.modules()}
    momenta = {bn: bn.momentum for bn in layers}
    owner.eval()
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
        bn.train()
    used = 0
    try:
        for batch in batches:
            forward(batch)
            used += 1
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return used

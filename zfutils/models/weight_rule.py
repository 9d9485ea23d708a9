"""The deterministic weight rule (rule_version 1) of ../shared/reference/golden/: every float
tensor of a state_dict set from a generator seeded by the CRC32 of its key. A model filled by this
rule must reproduce the official implementations' golden outputs."""
from __future__ import annotations

import math
import zlib

import torch
from torch import nn


def rule_value(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """The rule's value for one state_dict entry (key relative to the generator module)."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    r = torch.randn(tensor.shape, generator=gen, dtype=torch.float32)
    if key.endswith("running_var"):
        value = 0.5 + r.abs()
    elif key.endswith("running_mean"):
        value = 0.1 * r
    elif key.endswith("weight_u") or key.endswith("weight_v"):
        value = r / r.norm()
    elif tensor.dim() >= 2:
        value = r / math.sqrt(math.prod(tensor.shape[1:]))
    elif key.endswith("weight"):
        value = 1 + 0.1 * r
    else:
        value = 0.01 * r
    return value.to(tensor.dtype)


def apply_rule(module: nn.Module, prefix: str = "") -> nn.Module:
    """Fill every float entry of `module.state_dict()` by the rule, load strictly, switch to eval.
    `prefix` is prepended to each key before seeding (keys must match the golden files' keys)."""
    state = module.state_dict()
    for key in state:
        if torch.is_floating_point(state[key]):
            state[key] = rule_value(prefix + key, state[key])
    module.load_state_dict(state, strict=True)
    return module.eval()


def weight_sums(module: nn.Module) -> dict[str, tuple[float, float]]:
    """float64 sum and abs-sum per float tensor, to compare with a golden file's `weight_check`."""
    return {k: (v.double().sum().item(), v.double().abs().sum().item())
            for k, v in module.state_dict().items() if torch.is_floating_point(v)}

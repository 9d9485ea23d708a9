"""Reading official checkpoint files and loading them strictly, with one error that lists every
missing, unexpected and misshapen key."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import torch
from torch import nn


class CheckpointMismatch(ValueError):
    """A state_dict that does not fit the model it is loaded into."""


def read_checkpoint(path, *, how_to_get: str, trust_pickle: bool = False):
    """torch.load with weights_only=True unless `trust_pickle` (for containers that pickle more
    than tensors, such as Lightning checkpoints: only for files from a source you trust)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; {how_to_get}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        raise CheckpointMismatch(
            f"{path} holds more than tensors, so it cannot be loaded with weights_only=True ({str(err).splitlines()[0]}); "
            "if you trust where the file came from, load it with trust_pickle=True "
            "(params: model.trust_pickle: true)") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointMismatch(f"{path} is not a readable torch checkpoint ({err}); {how_to_get}") from None


def take(container, key: str | None, path) -> Mapping[str, torch.Tensor]:
    """The state_dict inside a checkpoint container (`container[key]`, or the container itself)."""
    if key is None:
        state = container
    elif isinstance(container, Mapping) and key in container:
        state = container[key]
    else:
        found = list(container)[:8] if isinstance(container, Mapping) else type(container).__name__
        raise CheckpointMismatch(f"{path} has no '{key}' entry (found {found}); is it the right file?")
    if not isinstance(state, Mapping):
        raise CheckpointMismatch(f"{path}: expected a state_dict (a mapping of tensors), found {type(state).__name__}")
    return state


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys that start with `prefix`, without it; other keys (discriminator, losses) are dropped."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def mismatch_report(module: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
                 if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    return missing, unexpected, misshapen


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> nn.Module:
    """Load `state` into `module`; any missing, unexpected or misshapen key is one clear error."""
    missing, unexpected, misshapen = mismatch_report(module, state)
    if missing or unexpected or misshapen:
        def show(items):
            return ", ".join(map(str, items[:6])) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
        if misshapen:
            parts.append(f"{len(misshapen)} misshapen (file vs model): {show(misshapen)}")
        raise CheckpointMismatch(
            f"{source} does not match {type(module).__name__}: " + "; ".join(parts)
            + ". Is it the right checkpoint, and is the model at its official size (width 1, default blocks)?")
    module.load_state_dict(state, strict=True)
    return module

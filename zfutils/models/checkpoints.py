"""Reading official checkpoint files and loading them strictly, with one error that lists every
missing, unexpected and misshapen key."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import torch
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from zfutils.models.checkpoint_pickle import TENSORS_ONLY


class CheckpointMismatch(ValueError):
    """A state_dict that does not fit the model it is loaded into."""


def read_checkpoint(path, *, how_to_get: str, trust_pickle: bool = False):
    """torch.load with weights_only=True, or, with `trust_pickle`, through the tensors-only reader
    (checkpoint_pickle.py) for containers that pickle more than tensors, such as LaMa's Lightning
    best.ckpt with its OmegaConf hyper-parameters: the tensors come back as they are, every other
    class the file names becomes an inert stand-in, so omegaconf and Lightning need not be installed.

    The reader imports none of the file's classes, which makes it far safer than plain pickle, but
    weights_only=True stays the default and the reader stays behind the same opt-in: it is our own
    code on torch's weights_only=False path, where torch's tensor-rebuild functions take their
    arguments straight from the file, and weights_only=True is the reader torch audits."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; {how_to_get}")
    if trust_pickle:
        try:
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=TENSORS_ONLY)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, TypeError, AttributeError,
                ValueError, KeyError, IndexError) as err:
            raise CheckpointMismatch(f"{path} could not be read even with trust_pickle=True, which reads only "
                                     f"its tensors ({type(err).__name__}: {err}); {how_to_get}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = str(err).splitlines() or [""]
        why = next((line for line in lines if "GLOBAL" in line), lines[0])     # torch names the class there
        why = why.split("error: ")[-1].split(" was not an allowed")[0].strip().rstrip(".")
        raise CheckpointMismatch(
            f"{path} holds more than tensors, so it cannot be loaded with weights_only=True "
            f"({why}); if you trust where the file came from, load it with "
            "trust_pickle=True (params: model.trust_pickle: true): that reads its tensors and imports none "
            "of the other classes it names") from None
    except (RuntimeError, EOFError, OSError) as err:
        fact = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]  # torch's advice left out
        raise CheckpointMismatch(f"{path} is not a readable torch checkpoint (truncated, corrupt or another "
                                 f"format: {fact}); get the file again: {how_to_get}") from None


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


def legacy_spectral_norm(module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """{"<layer>.weight_v": "<layer>.weight"} for every spectral-norm layer of `module` that `state`
    holds in the layout torch saved before 1.0 (weight_orig, weight_u and the normalized weight, no
    weight_v), as EdgeConnect files saved back then do. torch's own load hook
    (SpectralNormLoadStateDictPreHook) computes weight_v from the other three when the state is loaded."""
    legacy = {}
    for prefix, layer in module.named_modules(remove_duplicate=False):     # a shared layer is stored under each name
        for hook in layer._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                key = f"{prefix}.{hook.name}" if prefix else hook.name
                if key + "_v" not in state and all(k in state for k in (key, key + "_orig", key + "_u")):
                    legacy[key + "_v"] = key
    return legacy


def mismatch_report(module: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    """(missing, unexpected, misshapen) keys of `state` for `module`; a pre-1.0 spectral-norm layer's
    `weight` stands for its `weight_v` and must have the shape of its `weight_orig`."""
    own = module.state_dict()
    legacy = legacy_spectral_norm(module, state)
    expected = {legacy.get(k, k): (own[legacy[k] + "_orig"] if k in legacy else own[k]).shape for k in own}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [(k, tuple(state[k].shape), tuple(shape)) for k, shape in expected.items()
                 if k in state and tuple(state[k].shape) != tuple(shape)]
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
        old_layout = any(k.endswith("weight_v") and k[:-2] in state for k in missing)
        layouts = ("Spectral-norm layers load in either layout (weight_orig, weight_u, weight_v, or torch < 1.0's "
                   "weight_orig, weight_u, weight). " if old_layout else "")
        raise CheckpointMismatch(
            f"{source} does not match {type(module).__name__}: " + "; ".join(parts) + ". " + layouts
            + "Is it the right checkpoint (of this backbone), and is the model at the size it was saved at: an "
            "official file at width 1 and the default blocks, a checkpoint this project wrote (stage 02's best.pt) "
            "at the model.width and model.blocks it was trained with (rerun the stage that wrote it if they changed)?")
    if legacy_spectral_norm(module, state):
        # a plain dict has no _metadata, so torch's spectral-norm hook takes the layout as pre-1.0 and converts it
        state = dict(state)
    module.load_state_dict(state, strict=True)
    return module

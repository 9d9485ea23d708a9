"""A tensors-only reader for checkpoints that pickle more than tensors (LaMa's Lightning best.ckpt:
OmegaConf hyper-parameters, callback states), so that reading them needs neither omegaconf nor
Lightning and imports none of the classes the file names.

`TensorsOnlyUnpickler.find_class` hands out only torch's tensor-rebuild functions, storage types
(torch.load resolves those itself), dtypes, `collections.OrderedDict` and a few builtin types. Any
other class or function the file names becomes an inert `StandIn` subclass with the same name:
calling it, pickle's NEWOBJ / BUILD / SETITEMS / APPENDS on it and `__setstate__` only record what
they are given. Nothing from the file is imported, and no code from the file runs.
"""
from __future__ import annotations

import builtins
import collections
import pickle
import types

import torch

_BUILTIN_TYPES = {name: getattr(builtins, name) for name in (
    "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "slice")}
_BUILTIN_TYPES["long"] = int                      # protocol-2 pickles use Python 2's names

ALLOWED = {
    **{(module, name): obj for name, obj in _BUILTIN_TYPES.items() for module in ("builtins", "__builtin__")},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): torch._utils._rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}


class StandIn:
    """Put where a checkpoint pickles a class the reader does not import (an OmegaConf DictConfig, an
    enum member, a Lightning AttributeDict, ...). It accepts whatever pickle does to objects and keeps
    it: `args`/`kwargs` (call or NEWOBJ), `state` (BUILD), `items` (SETITEMS), `elements` (APPENDS)."""

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        vars(self).update(args=args, kwargs=kwargs, state=None, items=[], elements=[])
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        vars(self)["state"] = state

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.elements.append(value)

    def extend(self, values):
        self.elements.extend(values)

    def __call__(self, *args, **kwargs):
        return StandIn(*args, **kwargs)

    def __repr__(self):
        return f"<stand-in for a {type(self).__module__}.{type(self).__qualname__}>"


class TensorsOnlyUnpickler(pickle.Unpickler):
    """pickle.Unpickler that imports nothing: see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stand_ins: dict[tuple[str, str], type] = {}

    def find_class(self, module, name):
        found = ALLOWED.get((module, name))
        if found is None and module == "torch" and isinstance(vars(torch).get(name), torch.dtype):
            found = vars(torch)[name]
        if found is None:
            found = self._stand_ins.get((module, name))
        if found is None:      # one class per name, so the file's identities (dict keys, `is`) hold
            found = type(str(name), (StandIn,), {"__module__": str(module), "__qualname__": str(name)})
            self._stand_ins[(module, name)] = found
        return found


def _load(file, **kwargs):
    return TensorsOnlyUnpickler(file, **kwargs).load()


# What torch.load(..., pickle_module=...) needs: Unpickler, load (legacy files) and a __name__.
TENSORS_ONLY = types.SimpleNamespace(__name__=__name__, Unpickler=TensorsOnlyUnpickler, load=_load)

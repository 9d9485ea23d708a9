"""The backbone registry: every stage asks it, by name, for what it needs about a backbone.

Each backbone module (zfutils/models/<name>.py) builds one `Backbone` and registers it. Stages
never branch on a backbone's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import torch
from torch import nn

Tensor = torch.Tensor


@dataclass(frozen=True)
class InpaintResult:
    """What a generator produced, in [0, 1]: `stages` (DeepFillV2: coarse then fine; others one),
    `output` (the last stage) and `composite` (known pixels kept, holes filled), plus any
    backbone-specific extras (EdgeConnect: the edge map)."""
    stages: list[Tensor]
    output: Tensor
    composite: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class AuxiliaryModel:
    """A network pair that a backbone trains beside its main generator and discriminator with
    losses of its own (EdgeConnect's edge generator and edge discriminator, which live inside the
    registry's generator and discriminator), so the loss recipe can add them without knowing the
    backbone.

    - `section`: its settings in cfg['inpaint'] (with a `mode`).
    - `modes`: each mode it can train in, with what the original calls it (joint: MODEL=4).
    - `configure(generator, mode)`: sets the generator up for a mode (e.g. detach what it hands on).
    - `generator_terms(settings, mode, discriminator, image, mask, result)` and
      `discriminator_terms(...)`: its weighted loss terms by name, added to the generator's and the
      discriminator's totals (empty in a mode where it does not train).
    """
    section: str
    modes: dict[str, str]
    configure: Callable[[nn.Module, str], None]
    generator_terms: Callable[..., dict[str, Tensor]]
    discriminator_terms: Callable[..., dict[str, Tensor]]


@dataclass(frozen=True)
class Backbone:
    """Everything a stage needs about one backbone.

    - `build_generator(*, width=1.0, blocks=None)` / `build_discriminator(*, width=1.0)`: the
      networks, at official size by default; `width` scales channels, `blocks` the middle blocks,
      and parameter names stay the official ones.
    - `load_pretrained(path, *, trust_pickle=False)`: {"generator": state_dict, "discriminator":
      state_dict or None} from the official file format.
    - `inpaint(generator, image, mask)`: InpaintResult, images in [0, 1], mask 1 = hole; the
      backbone's input convention (value range, how the mask enters) lives here.
    - `discriminate(discriminator, image, mask)`: (logits, intermediate features).
    - `encoder_input(image, mask)`: the tensor the isolated encoder reads.
    - `encoder(generator)`: a module mapping that tensor to a feature map (NCHW).
    - `cam_layer(generator)`: the Grad-CAM target layer.
    - `embed_dim(width)`: channels of the encoder's feature map.
    - `missing_fill`: the RGB value in [0, 1] that the model's input convention gives a missing
      pixel (AOT-GAN and EdgeConnect fill holes with white, DeepFillV2 with 0 in [-1, 1], i.e. grey,
      LaMa with black, the ImageNet baselines with the mean colour); the region ablation fills
      removed regions with it, so every model sees "nothing there" as it was trained to.
    - `matcher`: for a method without a network (family `matching`, zfutils/models/localmatch.py),
      the settings of its zfutils.localfeatures.LocalFeatureIndex; stages evaluate it by matching
      instead of training it, and its network callables say that it has none.
    - `auxiliary`: a second network pair trained with its own losses (AuxiliaryModel), if any.
    """
    name: str
    family: str
    build_generator: Callable[..., nn.Module]
    build_discriminator: Callable[..., nn.Module] | None
    load_pretrained: Callable[..., dict]
    inpaint: Callable[[nn.Module, Tensor, Tensor], InpaintResult] | None
    discriminate: Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, list[Tensor]]] | None
    encoder_input: Callable[[Tensor, Tensor], Tensor]
    encoder: Callable[[nn.Module], nn.Module]
    cam_layer: Callable[[nn.Module], nn.Module]
    embed_dim: Callable[[float], int]
    checkpoint_hint: str = ""
    missing_fill: tuple[float, float, float] = (0.5, 0.5, 0.5)
    matcher: dict | None = None
    auxiliary: AuxiliaryModel | None = None


BACKBONES: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    if backbone.name in BACKBONES:
        raise ValueError(f"backbone '{backbone.name}' is registered twice")
    BACKBONES[backbone.name] = backbone
    return backbone


# The functions an inpainting module defines under these names (Backbone's field names).
INPAINTING_FUNCTIONS = ("build_generator", "build_discriminator", "load_pretrained", "inpaint", "discriminate",
                        "encoder_input", "encoder", "cam_layer", "embed_dim")


def register_inpainting(name: str, module: ModuleType | Mapping[str, Any], *, checkpoint_hint: str,
                        missing_fill: tuple[float, float, float], **fields) -> Backbone:
    """Register an inpainting module (zfutils/models/<name>.py, passed as itself or as its
    `globals()`) from the functions it defines under INPAINTING_FUNCTIONS' names, so that each
    module does not repeat the field list and a missing function fails here, naming it, rather than
    in a stage. `fields` sets any other Backbone field, or a function the module names otherwise
    (DeepFillV2: encoder_input=network_input)."""
    namespace = vars(module) if isinstance(module, ModuleType) else module
    wanted = [f for f in INPAINTING_FUNCTIONS if f not in fields]
    missing = [f for f in wanted if not callable(namespace.get(f))]
    if missing:
        raise TypeError(f"inpainting module '{namespace.get('__name__', '?')}' cannot register backbone '{name}': "
                        f"it defines no function {', '.join(missing)} (define it, or pass one under another "
                        f"name as register_inpainting(..., {missing[0]}=...))")
    functions = {f: namespace[f] for f in wanted}
    return register(Backbone(name=name, family="inpainting", checkpoint_hint=checkpoint_hint,
                             missing_fill=missing_fill, **functions, **fields))


def get(name: str) -> Backbone:
    """The registered backbone `name`; an unknown name lists the known ones. Every backbone is
    registered by then: importing this module first imports its package, zfutils/models/__init__.py,
    which imports every backbone module."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone '{name}'; known backbones: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def build_generator(name: str, **scale) -> nn.Module:
    return get(name).build_generator(**scale)


def build_discriminator(name: str, **scale) -> nn.Module:
    backbone = get(name)
    if backbone.build_discriminator is None:
        raise ValueError(f"backbone '{name}' has no discriminator (it is a {backbone.family} model)")
    return backbone.build_discriminator(**scale)


def load_pretrained(name: str, path: str | Path, **kwargs) -> dict:
    return get(name).load_pretrained(path, **kwargs)

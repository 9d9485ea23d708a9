"""Resolved run configuration: defaults < preset < backbone < the preset's per-backbone values <
overrides, deep-merged.

Papermill's own parameter merge is shallow and only warns on unknown names; here an unknown key
anywhere is an error naming its full dotted path, so a typo never silently runs the wrong study.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from zfutils.paths import PARAMS_DIR


class ConfigError(KeyError):
    """A preset, backbone or key that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def load_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at its top level, found {type(data).__name__}")
    return data


def available(kind: str) -> list[str]:
    """Names of the presets (`kind='presets'`) or backbones (`kind='backbones'`) in params/."""
    return sorted(p.stem for p in (PARAMS_DIR / kind).glob("*.yaml"))


def deep_merge(base: Mapping, update: Mapping, *, origin: str, _prefix: str = "") -> dict:
    """Return `base` updated by `update`, recursing into mappings; reject keys `base` lacks."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        path = f"{_prefix}{key}"
        if key not in merged:
            known = ", ".join(sorted(f"{_prefix}{k}" for k in merged))
            raise ConfigError(f"unknown key '{path}' in {origin}; known keys here: {known}")
        if isinstance(merged[key], Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{path}' in {origin} must be a mapping, got {value!r}")
            merged[key] = deep_merge(merged[key], value, origin=origin, _prefix=f"{path}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted_to_nested(overrides: Mapping[str, Any]) -> dict:
    """{'data.image_size': 64} -> {'data': {'image_size': 64}}; nested input passes through."""
    nested: dict = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return nested


def preset_base(preset: str) -> str | None:
    """The preset a preset file `extends` (a variant that changes a few keys of another), if any."""
    return load_yaml(PARAMS_DIR / "presets" / f"{preset}.yaml").get("extends")


def preset_chain(preset: str) -> list[str]:
    """Presets to merge, base first: [quick, shortcut] for `shortcut` extending `quick`."""
    chain = [preset]
    while (base := preset_base(chain[0])) is not None:
        if base in chain or base not in available("presets"):
            raise ConfigError(f"params/presets/{chain[0]}.yaml extends '{base}', which is unknown or circular; "
                              f"known presets: {', '.join(available('presets'))}")
        chain.insert(0, base)
    return chain


def per_backbone_sections(layer: Mapping, origin: str) -> dict:
    """A preset's `per_backbone` section: {backbone: values}, merged after the backbone's own file,
    so a preset can set one backbone's value at its scale (the paper preset: LaMa's batch of 4,
    the study's Table 3) where a backbone file would set it for every preset."""
    sections = layer.get("per_backbone") or {}
    if not isinstance(sections, Mapping):
        raise ConfigError(f"'per_backbone' in {origin} must map backbone names to values, got {sections!r}")
    unknown = sorted(set(sections) - set(available("backbones")))
    if unknown:
        raise ConfigError(f"unknown backbone(s) {', '.join(unknown)} under 'per_backbone' in {origin}; "
                          f"known backbones: {', '.join(available('backbones'))}")
    for name, values in sections.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"'per_backbone.{name}' in {origin} must be a mapping of config keys, got {values!r}")
    return dict(sections)


def resolve(preset: str, backbone: str | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """The run's configuration: defaults < preset(s) < backbone file < the presets' `per_backbone`
    values for that backbone < overrides. Raises ConfigError for an unknown preset, backbone or key."""
    if preset not in available("presets"):
        raise ConfigError(f"unknown preset '{preset}'; known presets: {', '.join(available('presets'))}")
    cfg = load_yaml(PARAMS_DIR / "defaults.yaml")
    per_backbone = []
    for name in preset_chain(preset):
        origin = f"params/presets/{name}.yaml"
        raw = load_yaml(PARAMS_DIR / "presets" / f"{name}.yaml")
        layer = {k: v for k, v in raw.items() if k not in ("extends", "per_backbone")}
        cfg = deep_merge(cfg, layer, origin=origin)
        for key, values in per_backbone_sections(raw, origin).items():
            deep_merge(cfg, values, origin=f"{origin} per_backbone.{key}")  # a typo fails for every backbone
            per_backbone.append((key, values, f"{origin} per_backbone.{key}"))
    cfg["preset"] = preset
    if backbone:
        if backbone not in available("backbones"):
            raise ConfigError(f"unknown backbone '{backbone}'; known backbones: {', '.join(available('backbones'))}")
        cfg = deep_merge(cfg, load_yaml(PARAMS_DIR / "backbones" / f"{backbone}.yaml"),
                         origin=f"params/backbones/{backbone}.yaml")
        for key, values, origin in per_backbone:
            if key == backbone:
                cfg = deep_merge(cfg, values, origin=origin)
        cfg["backbone"]["name"] = backbone
    if overrides:
        cfg = deep_merge(cfg, dotted_to_nested(overrides), origin="overrides")
    return cfg


def training_seed(cfg: dict) -> int:
    """The seed of a run's training (weights, batch order, projections): `run_seed` when the
    pipeline runs several seeds on the same data, else `seed`."""
    return int(cfg["seed"] if cfg.get("run_seed") is None else cfg["run_seed"])


def training_seeds(cfg: dict) -> list[int | None]:
    """The `run_seed` of each repeat the pipeline runs: [None] for one seed (runs/ keeps one
    level less), the `seeds` list otherwise."""
    seeds = [int(s) for s in cfg["seeds"]]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, got {cfg['seeds']!r}")
    return [None] if len(seeds) == 1 and seeds[0] == int(cfg["seed"]) else seeds


def overrides_from_args(items: list[str]) -> dict:
    """Parse `key.path=value` strings from a command line; values are read as YAML scalars."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.path=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out

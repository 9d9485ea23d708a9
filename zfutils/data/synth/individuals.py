"""The fish of a synthetic data set: an identity, a skin texture and (for a shortcut) a body.

An individual depends only on (seed, family, index), so growing a data set from 6 to 20 fish
keeps the first 6 exactly as they were.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import body, paint
from .pattern import make_texture
from .spec import SynthSpec


@dataclass
class Individual:
    """One fish. `texture` is its skin in body coordinates (rows v across, columns u along,
    1 = dark); `body`/`size` are its own proportions, used only with `shortcut_body`."""

    identity: str
    index: int
    family: str
    texture: np.ndarray
    body: body.BodyShape
    size: float
    _levels: list | None = field(default=None, repr=False, compare=False)

    @property
    def levels(self) -> list[np.ndarray]:
        """Anti-aliasing levels of the texture, made once on first use."""
        if self._levels is None:
            self._levels = paint.texture_levels(self.texture)
        return self._levels


def identity_name(index: int) -> str:
    return f"fish_{index + 1:02d}"


def make_individual(seed: int, family: str, index: int) -> Individual:
    rng = np.random.default_rng([int(seed), int(index), 0xB0D1])
    # own body (used only by the body shortcut): depth and size step by the golden ratio so
    # that any two individuals differ clearly
    spread = (index * 0.618034 + rng.uniform(-0.05, 0.05)) % 1
    shape = dataclasses.replace(body.sample_shape(rng, spread=1.5),
                                depth=float(0.085 + 0.045 * ((index * 0.381966 + 0.5) % 1)))
    return Individual(identity=identity_name(index), index=index, family=family,
                      texture=make_texture(seed, family, index), body=shape, size=float(0.8 + 0.3 * spread))


def make_individuals(spec: SynthSpec) -> list[Individual]:
    """All individuals of `spec` (about 0.3 s each for the pattern simulation)."""
    return [make_individual(spec.seed, spec.family, i) for i in range(spec.individuals)]

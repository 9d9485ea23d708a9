"""What synthetic data set to make: one frozen, validated spec that is stored with the data."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from .pattern import FAMILIES


@dataclass(frozen=True)
class SynthSpec:
    """Settings of a synthetic data set; the same spec always gives the same images.

    `shortcut_background` ties the tank's tint and texture to the identity and `shortcut_body`
    ties body shape and size to it: both let a model cheat and exist to test that it does not.
    Without them only the skin pattern identifies a fish.
    """

    individuals: int = 6
    per_individual: int = 100      # images per individual, spread over the sessions
    sessions: int = 8
    image_size: int = 128
    family: str = "stripes"        # "stripes" (zebrafish) or "spots" (leopard-like)
    seed: int = 0
    shortcut_background: bool = False
    shortcut_body: bool = False
    occlusion: float = 0.25        # chance that something covers part of the image
    noise: float = 1.0             # scale of sensor noise (0 = none)
    blur: float = 1.0              # scale of defocus and motion blur (0 = none)

    def __post_init__(self) -> None:
        checks = [
            ("individuals", self.individuals >= 1, "an integer >= 1"),
            ("per_individual", self.per_individual >= 1, "an integer >= 1"),
            ("sessions", self.sessions >= 1, "an integer >= 1"),
            ("image_size", self.image_size >= 32, "an integer >= 32 (64 smoke, 128 quick, 256 paper)"),
            ("family", self.family in FAMILIES, f"one of {sorted(FAMILIES)}"),
            ("occlusion", 0 <= self.occlusion <= 1, "a probability in [0, 1]"),
            ("noise", self.noise >= 0, "a number >= 0"),
            ("blur", self.blur >= 0, "a number >= 0"),
        ]
        ints = ("individuals", "per_individual", "sessions", "image_size", "seed")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"SynthSpec.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers become plain ints (JSON)
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"SynthSpec.{name} = {getattr(self, name)!r} is invalid; it must be {allowed}")

    def frames(self, individual: int, session: int) -> int:
        """How many images of `individual` fall into `session`: even, remainders rotated."""
        base, extra = divmod(self.per_individual, self.sessions)
        return base + (1 if (session - individual) % self.sessions < extra else 0)

"""Synthetic zebrafish: individuals with reaction-diffusion skin patterns, photographed in tanks.

Each individual's pattern is a texture in body coordinates made by a Gray-Scott model (stripes
like Danio rerio, or leopard-like spots); every image shows one fish from the side in a new pose,
light and tank session, with exact fish and pattern masks from the renderer. Masks: `fish_mask`
is the body plus all fins (translucent or not); `pattern_mask` is the patterned trunk only (the
striped caudal and anal fins are fish but not pattern); both exclude pixels hidden by occluders.

    spec = SynthSpec(individuals=6, image_size=128)
    root = write_synthetic(spec, "data/synth")
"""
from .dataset import iter_samples, make_sessions, render_sample, write_synthetic
from .individuals import Individual, make_individuals
from .pattern import FAMILIES
from .spec import SynthSpec

__all__ = ["SynthSpec", "Individual", "FAMILIES", "make_individuals", "make_sessions",
           "iter_samples", "render_sample", "write_synthetic"]

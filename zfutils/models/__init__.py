"""Backbones: the four inpainting models and the classification baselines, behind one registry."""
from zfutils.models.registry import (  # noqa: F401
    BACKBONES, Backbone, InpaintResult, build_discriminator, build_generator, get, load_pretrained, register,
)

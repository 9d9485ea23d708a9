"""Backbones: the four inpainting models and the classification baselines, behind one registry.
Importing this package registers every backbone module listed here."""
from zfutils.models.registry import (  # noqa: F401
    BACKBONES, Backbone, InpaintResult, build_discriminator, build_generator, get, load_pretrained, register,
)
from zfutils.models import aotgan, deepfillv2, edgeconnect, efficientnet, inceptionv3, lama  # noqa: F401,E402

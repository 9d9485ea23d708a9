"""Backbones: the four inpainting models, the classification baselines, the embedding model and
the local-feature matching methods, behind one registry. Importing this package registers every
backbone module listed here."""
from zfutils.models.registry import (  # noqa: F401
    BACKBONES, Backbone, InpaintResult, build_discriminator, build_generator, get, load_pretrained, register,
)
from zfutils.models import (  # noqa: F401,E402
    aotgan, deepfillv2, edgeconnect, efficientnet, efficientnetv2, inceptionv3, lama, localmatch,
)

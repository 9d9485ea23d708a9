"""Local-feature matching methods (SIFT, ORB) in the backbone registry, so that stages 03 and 04
and the report treat them as backbones: family `matching`, no network to train or embed with;
the stages match instead (zfutils/matching.py, settings in the `matching` config section).

Every network callable raises one clear error, so a stage that would build a network for them
fails loudly instead of quietly using something else.
"""
from __future__ import annotations

from zfutils.localfeatures import METHODS
from zfutils.models.registry import Backbone, register


def _no_network(name: str):
    def refuse(*args, **kwargs):
        raise ValueError(f"backbone '{name}' is a local-feature matching method (family 'matching'): it has no "
                         "network to build, load, inpaint or embed with; stages evaluate it by matching")
    return refuse


def _matching_backbone(method: str) -> Backbone:
    refuse = _no_network(method)
    return Backbone(name=method, family="matching", build_generator=refuse, build_discriminator=None,
                    load_pretrained=refuse, inpaint=None, discriminate=None, encoder_input=refuse, encoder=refuse,
                    cam_layer=refuse, embed_dim=lambda width=1.0: 0, checkpoint_hint="no weights: nothing is learned",
                    missing_fill=(0.5, 0.5, 0.5), matcher={"method": method})


BACKBONES = [register(_matching_backbone(method)) for method in METHODS]

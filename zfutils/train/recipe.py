"""A backbone's inpainting loss recipe: which terms, with which weights, from `cfg['inpaint']`
(defaults.yaml < preset < params/backbones/<name>.yaml, where each original's weights live).

Generator loss = l1 + adversarial + feature matching + perceptual + style + resnet perceptual;
discriminator loss = adversarial (+ R1). Terms that need pretrained networks (VGG19, LaMa's ADE20k
ResNet) are used when their weights are found; when they are missing, `missing_weights: error`
stops with a message that says where to put the file, and `missing_weights: drop` (smoke, quick)
drops the terms and records that it did. A backbone with an auxiliary model (EdgeConnect's edge
model, registry.AuxiliaryModel) adds that model's own terms to both totals in training; the
validation loss (the study's Table 3 quantity) stays the main generator's.

The order of a training step (`update_order`, `adv_grads_into_d`) is read here and carried out by
zfutils.train.inpaint.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from zfutils import losses
from zfutils.models.registry import AuxiliaryModel, Backbone, InpaintResult
from zfutils.pretrained import VGG19_FILE, VGG19Features, find_weights
from zfutils.resnet_pl import ResNetPLFeatures, find_resnet_pl_weights, resnet_pl_loss

UPDATE_ORDERS = ("d_then_g", "g_then_d", "simultaneous")
AUXILIARY_SECTIONS = ("edge_model",)  # cfg['inpaint'] sections of auxiliary models (defaults.yaml)


@dataclass
class LossRecipe:
    cfg: dict
    vgg: VGG19Features | None = None
    resnet_pl: ResNetPLFeatures | None = None
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg: dict) -> "LossRecipe":
        recipe = cls(cfg=cfg)
        needs_vgg = cfg["perceptual"]["weight"] > 0 or cfg["style"]["weight"] > 0
        if needs_vgg:
            try:
                path = find_weights(cfg["vgg19_weights"], VGG19_FILE, what="VGG19 ImageNet",
                                    param="inpaint.vgg19_weights",
                                    without="or run without the perceptual and style terms "
                                            "(inpaint.missing_weights: drop, or their weights 0)")
                layers = tuple(dict.fromkeys(cfg["perceptual"]["layers"] + cfg["style"]["layers"]))
                recipe.vgg = VGG19Features(path, layers=layers)
            except FileNotFoundError:
                if cfg["missing_weights"] != "drop":
                    raise
                recipe.dropped += ["perceptual", "style"]
        if cfg["resnet_perceptual"] > 0:
            try:
                recipe.resnet_pl = ResNetPLFeatures(find_resnet_pl_weights(cfg["resnet_pl_weights"]))
            except FileNotFoundError:
                if cfg["missing_weights"] != "drop":
                    raise
                recipe.dropped.append("resnet_perceptual")
        return recipe

    def terms(self) -> dict[str, float]:
        """The weight of every term as used (0 for dropped ones): the run record's `loss_terms`."""
        c = self.cfg
        used = {"l1": c["l1"]["weight"], "adversarial": c["adversarial"]["weight"],
                "feature_matching": c["feature_matching"]["weight"], "perceptual": c["perceptual"]["weight"],
                "style": c["style"]["weight"], "r1": c["r1"], "resnet_perceptual": c["resnet_perceptual"]}
        return {k: (0.0 if k in self.dropped else float(v)) for k, v in used.items()}

    @property
    def update_order(self) -> str:
        """How a training step orders the two updates (each original's own; defaults.yaml lists them)."""
        order = self.cfg["update_order"]
        if order not in UPDATE_ORDERS:
            raise ValueError(f"unknown inpaint.update_order '{order}'; known: {', '.join(UPDATE_ORDERS)}")
        if self.cfg["adv_grads_into_d"] and order != "simultaneous":
            raise ValueError(f"inpaint.adv_grads_into_d is true but inpaint.update_order is '{order}'; it only "
                             "applies to simultaneous steps (AOT-GAN): set it to false or the order to simultaneous")
        return order

    def auxiliary(self, backbone: Backbone) -> tuple[AuxiliaryModel | None, str]:
        """The backbone's auxiliary model and its configured mode ('none' without one); raises when
        the config asks for one the backbone lacks, or for a mode it does not have."""
        aux = backbone.auxiliary
        if aux is None:
            for section in AUXILIARY_SECTIONS:
                if self.cfg[section]["mode"] != "none":
                    raise ValueError(f"inpaint.{section}.mode is '{self.cfg[section]['mode']}', but backbone "
                                     f"'{backbone.name}' has no {section}; set it to none")
            return None, "none"
        mode = self.cfg[aux.section]["mode"]
        if mode not in aux.modes:
            known = "; ".join(f"{k}: {v}" for k, v in aux.modes.items())
            raise ValueError(f"inpaint.{aux.section}.mode '{mode}' is not a way {backbone.name} trains; known: "
                             f"{known}. Set one in params/backbones/{backbone.name}.yaml or an override")
        return aux, mode

    def configure(self, backbone: Backbone, generator: nn.Module) -> None:
        """Check the order and the auxiliary model's mode, and set the generator up for that mode."""
        _ = self.update_order
        aux, mode = self.auxiliary(backbone)
        if aux is not None:
            aux.configure(generator, mode)

    def describe(self, backbone: Backbone) -> dict:
        """How a training step runs for `backbone` (the run record's `training`)."""
        c = self.cfg
        out = {"update_order": self.update_order, "adv_grads_into_d": bool(c["adv_grads_into_d"]),
               "grad_clip": c["grad_clip"], "grad_clip_applies_to": "generator and discriminator, each its own"}
        aux, mode = self.auxiliary(backbone)
        if aux is not None:
            out[aux.section] = {"mode": mode, "original": aux.modes[mode],
                                **{k: v for k, v in c[aux.section].items() if k != "mode"}}
        return out

    def to(self, device) -> "LossRecipe":
        if self.vgg is not None:
            self.vgg.to(device)
        if self.resnet_pl is not None:
            self.resnet_pl.to(device)
        return self

    def generator_loss(self, backbone: Backbone, generator: nn.Module, discriminator: nn.Module,
                       image: torch.Tensor, mask: torch.Tensor, result: InpaintResult | None = None,
                       with_auxiliary: bool = True) -> tuple[torch.Tensor, dict, InpaintResult]:
        """The weighted generator loss; pass `result` to reuse a forward pass already made, and
        `with_auxiliary=False` for the main generator's loss alone (validation)."""
        c, w = self.cfg, self.terms()
        result = result if result is not None else backbone.inpaint(generator, image, mask)
        parts: dict[str, torch.Tensor] = {}
        stages = result.stages if c["l1"]["stages"] == "all" else [result.output]
        parts["l1"] = w["l1"] * sum(losses.weighted_l1(s, image, mask, hole=c["l1"]["hole"], known=c["l1"]["known"],
                                                        per_mask_mean=c["l1"]["per_mask_mean"]) for s in stages)
        if w["adversarial"] or w["feature_matching"]:
            judged = result.composite if c["adversarial"]["judge"] == "composite" else result.output
            fake, fake_feats = backbone.discriminate(discriminator, judged, mask)
            kind = c["adversarial"]["kind"]
            g_loss = losses.ADVERSARIAL[kind][1]
            parts["adversarial"] = w["adversarial"] * (g_loss(fake, mask) if kind == "smgan" else g_loss(fake))
            if w["feature_matching"]:
                with torch.no_grad():
                    _, real_feats = backbone.discriminate(discriminator, image, mask)
                parts["feature_matching"] = w["feature_matching"] * losses.feature_matching(real_feats, fake_feats,
                                                                                             c["feature_matching"]["distance"])
        if self.vgg is not None and (w["perceptual"] or w["style"]):
            norm = c["vgg_imagenet_norm"]
            out_f, tgt_f = self.vgg(result.output, norm), self.vgg(image, norm)
            if w["perceptual"]:
                layers = c["perceptual"]["layers"]
                parts["perceptual"] = w["perceptual"] * losses.perceptual([out_f[l] for l in layers], [tgt_f[l] for l in layers])
            if w["style"]:
                layers = c["style"]["layers"]
                if c["style"]["masked"]:
                    out_f, tgt_f = self.vgg(result.output * mask, norm), self.vgg(image * mask, norm)
                parts["style"] = w["style"] * losses.style([out_f[l] for l in layers], [tgt_f[l] for l in layers])
        if self.resnet_pl is not None and w["resnet_perceptual"]:
            with torch.no_grad():  # LaMa: the prediction (not the composite) against the image
                target = self.resnet_pl(image)
            parts["resnet_perceptual"] = w["resnet_perceptual"] * resnet_pl_loss(self.resnet_pl(result.output), target)
        aux, mode = self.auxiliary(backbone)
        if aux is not None and with_auxiliary:
            parts.update(aux.generator_terms(c[aux.section], mode, discriminator, image, mask, result))
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}, result

    def discriminator_loss(self, backbone: Backbone, discriminator: nn.Module, image: torch.Tensor,
                           mask: torch.Tensor, result: InpaintResult) -> tuple[torch.Tensor, dict]:
        c, w = self.cfg, self.terms()
        judged = (result.composite if c["adversarial"]["judge"] == "composite" else result.output).detach()
        real_image = image.detach().requires_grad_(w["r1"] > 0)
        real, _ = backbone.discriminate(discriminator, real_image, mask)
        fake, _ = backbone.discriminate(discriminator, judged, mask)
        kind = c["adversarial"]["kind"]
        d_loss = losses.ADVERSARIAL[kind][0]
        if kind == "smgan":
            adv = d_loss(real, fake, mask)
        elif kind == "nsgan" and c["adversarial"]["mask_as_fake_target"]:
            adv = d_loss(real, fake, mask)
        else:
            adv = d_loss(real, fake)
        parts = {"d_adversarial": c["adversarial"]["d_weight"] * adv}  # the originals do not apply `weight` here
        if w["r1"]:
            parts["d_r1"] = w["r1"] * losses.r1_penalty(real, real_image)
        aux, mode = self.auxiliary(backbone)
        if aux is not None:
            parts.update(aux.discriminator_terms(c[aux.section], mode, discriminator, image, mask, result))
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}

"""How EdgeConnect's edge model trains beside its inpainting model (knazeri/edge-connect at 3142579).

The original trains in stages (src/edge_connect.py): MODEL=1 the edge model alone, MODEL=2 the
inpainting model on Canny edges, MODEL=3 the inpainting model on the edge model's edges, detached
(line 145), and MODEL=4 both together ("joint", lines 160-180). In joint mode the edge model keeps its
own losses (src/models.py EdgeModel.process, lines 102-124):

- its discriminator judges cat([gray, edges]): real = the Canny edges, fake = the raw edge output,
  detached; loss (bce(real, 1) + bce(fake, 0)) / 2;
- its generator: bce(D(cat([gray, edge output])), 1), unweighted, plus FM_LOSS_WEIGHT (10) times the
  L1 between the discriminator's features of fake and real edges, summed over its five layers;

and the merged edges reach the inpainting model undetached (lines 163-164), so the inpainting
generator's losses train the edge generator too. Every loss is computed before either model steps
(each `process` runs before its `backward`), which is our `update_order: simultaneous`.

We follow MODEL=4 by default (`inpaint.edge_model.mode: joint` in params/backbones/edgeconnect.yaml);
`edge_inpaint` is MODEL=3. The edge networks are the `edge` halves of the registry's generator and
discriminator, so one Adam per side covers both models (the original's two Adams per side have the
same learning rate and betas, and Adam's state is per parameter), and checkpoints hold them.
"""
from __future__ import annotations

import torch

from zfutils import losses
from zfutils.models.edgeconnect_networks import EdgeConnectDiscriminator, EdgeConnectGenerator
from zfutils.models.registry import AuxiliaryModel, InpaintResult

MODES = {"joint": "MODEL=4 (joint): edge and inpainting models train together, edges not detached",
         "edge_inpaint": "MODEL=3 (edge_inpaint): the inpainting model trains on detached edges"}


def discriminate_edges(discriminator: EdgeConnectDiscriminator, gray: torch.Tensor, edges: torch.Tensor):
    """The edge discriminator on cat([gray, edges]) (EdgeModel.process: real = Canny edges, fake = the
    raw edge output). Returns (logits, [conv1..conv5]); its features feed the feature-matching loss."""
    _, feats = discriminator.edge(torch.cat([gray, edges], dim=1))
    return feats[-1], feats


def configure(generator: EdgeConnectGenerator, mode: str) -> None:
    """MODEL=3 hands the inpainting generator detached edges; MODEL=4 does not."""
    if mode not in MODES:
        raise ValueError(f"unknown EdgeConnect edge-model mode '{mode}'; known: {', '.join(MODES)} "
                         "(inpaint.edge_model.mode)")
    generator.detach_edges = mode == "edge_inpaint"


def generator_terms(settings: dict, mode: str, discriminator: EdgeConnectDiscriminator, image: torch.Tensor,
                    mask: torch.Tensor, result: InpaintResult) -> dict[str, torch.Tensor]:
    """The edge generator's own losses in joint mode: nsgan adversarial and feature matching."""
    if mode != "joint":
        return {}
    gray, canny, predicted = (result.extras[k] for k in ("gray", "canny", "edge_output"))
    fake, fake_feats = discriminate_edges(discriminator, gray, predicted)
    with torch.no_grad():  # the original detaches the real features (src/models.py:122)
        _, real_feats = discriminate_edges(discriminator, gray, canny)
    return {"edge_adversarial": settings["adversarial"] * losses.nsgan_g(fake),
            "edge_feature_matching": settings["feature_matching"] * losses.feature_matching(
                real_feats, fake_feats, "l1", reduction="sum")}


def discriminator_terms(settings: dict, mode: str, discriminator: EdgeConnectDiscriminator, image: torch.Tensor,
                        mask: torch.Tensor, result: InpaintResult) -> dict[str, torch.Tensor]:
    """The edge discriminator's loss in joint mode: Canny edges real, the raw edge output fake."""
    if mode != "joint":
        return {}
    gray, canny, predicted = (result.extras[k] for k in ("gray", "canny", "edge_output"))
    real, _ = discriminate_edges(discriminator, gray, canny)
    fake, _ = discriminate_edges(discriminator, gray, predicted.detach())
    return {"d_edge_adversarial": settings["d_weight"] * losses.nsgan_d(real, fake)}


AUXILIARY = AuxiliaryModel(section="edge_model", modes=MODES, configure=configure,
                           generator_terms=generator_terms, discriminator_terms=discriminator_terms)

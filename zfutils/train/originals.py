"""The official training facts our inpainting params follow, each with where it comes from: the
repository, commit, file and lines of the original (read there, not copied).

`ORIGINALS[backbone][path]` is the value `inpaint.<path>` must hold after params/backbones/<name>.yaml
(tests/test_params_follow_originals.py checks it, and checks each fact against the backbone module's
`TRAINING` record where that holds the same fact: `recorded`, with `scale` where our [0, 1] images
change the number). `STUDY_BATCH` is the batch size each model trained at in the study (its Table 3),
which the paper preset follows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Citation:
    repo: str
    commit: str
    file: str
    lines: tuple[int, int]

    def __str__(self) -> str:
        first, last = self.lines
        return f"{self.repo}@{self.commit[:7]} {self.file}:{first}" + (f"-{last}" if last != first else "")

    @property
    def url(self) -> str:
        first, last = self.lines
        return f"https://github.com/{self.repo}/blob/{self.commit}/{self.file}#L{first}-L{last}"


@dataclass(frozen=True)
class Repo:
    name: str
    commit: str

    def at(self, file: str, first: int, last: int | None = None) -> Citation:
        return Citation(self.name, self.commit, file, (first, first if last is None else last))


@dataclass(frozen=True)
class Fact:
    value: Any                    # what our `inpaint.<path>` holds
    cite: Citation
    recorded: str | None = None   # dotted path of the same fact in the backbone module's TRAINING
    scale: float = 1.0            # our value = scale x the recorded one (an L1 on [-1, 1] images counts twice)


EDGECONNECT = Repo("knazeri/edge-connect", "3142579785c5c8cc92ad655616d40f4f52fc7ec1")
AOTGAN = Repo("researchmm/AOT-GAN-for-Inpainting", "2cd1afd8fdfabb101c678f6062d14bc7d302509e")
LAMA = Repo("advimman/lama", "786f5936b27fb3dacd2b1ad799e4de968ea697e7")
DEEPFILLV2 = Repo("nipponjo/deepfillv2-pytorch", "4899fd38a9eb4008b1dc0edad7a0c4169521f618")

_EC_CFG, _EC_MODELS, _EC_MAIN = "config.yml.example", "src/models.py", "src/edge_connect.py"
_AOT_OPT, _AOT_TRAIN = "src/utils/option.py", "src/trainer/trainer.py"
_LAMA_CFG, _LAMA_BASE = "configs/training/big-lama.yaml", "saicinpainting/training/trainers/base.py"
_DF_CFG, _DF_TRAIN = "configs/train.yaml", "train.py"

ORIGINALS: dict[str, dict[str, Fact]] = {
    "edgeconnect": {
        "lr_g": Fact(1e-4, EDGECONNECT.at(_EC_CFG, 23), "optimizer.lr_g"),                       # LR
        "lr_d": Fact(1e-5, EDGECONNECT.at(_EC_MODELS, 184, 188), "optimizer.lr_d"),              # LR * D2G_LR
        "betas": Fact([0.0, 0.9], EDGECONNECT.at(_EC_CFG, 25, 26), "optimizer.betas"),
        "l1.weight": Fact(1.0, EDGECONNECT.at(_EC_CFG, 33), "inpaint.l1_weight"),
        "l1.per_mask_mean": Fact(True, EDGECONNECT.at(_EC_MODELS, 222)),                          # / mean(masks)
        "adversarial.kind": Fact("nsgan", EDGECONNECT.at(_EC_CFG, 39), "adversarial.type"),
        "adversarial.weight": Fact(0.1, EDGECONNECT.at(_EC_CFG, 37), "inpaint.adversarial_weight"),
        "adversarial.d_weight": Fact(0.5, EDGECONNECT.at(_EC_MODELS, 211)),                       # (real + fake) / 2
        "adversarial.judge": Fact("output", EDGECONNECT.at(_EC_MODELS, 205, 216)),
        "perceptual.weight": Fact(0.1, EDGECONNECT.at(_EC_CFG, 36), "inpaint.perceptual_weight"),
        "style.weight": Fact(250.0, EDGECONNECT.at(_EC_CFG, 35), "inpaint.style_weight"),
        "style.masked": Fact(True, EDGECONNECT.at(_EC_MODELS, 233)),
        "vgg_imagenet_norm": Fact(False, EDGECONNECT.at("src/loss.py", 187, 188)),                  # x straight in
        # joint: both process() calls build every loss (with each D as it is), then backward() steps
        "update_order": Fact("simultaneous", EDGECONNECT.at(_EC_MAIN, 162, 179)),
        # D's gradient of G's loss lands after D's step (models.py backward) and is zeroed by the next process()
        "adv_grads_into_d": Fact(False, EDGECONNECT.at(_EC_MODELS, 255, 260)),
        "grad_clip": Fact(None, EDGECONNECT.at(_EC_MODELS, 143, 150)),                            # no clipping
        "edge_model.mode": Fact("joint", EDGECONNECT.at(_EC_MAIN, 159, 180)),       # MODEL=4, edges not detached
        "edge_model.adversarial": Fact(1.0, EDGECONNECT.at(_EC_MODELS, 113, 116), "edge.adversarial_weight"),
        "edge_model.feature_matching": Fact(10.0, EDGECONNECT.at(_EC_CFG, 34), "edge.feature_matching_weight"),
        "edge_model.d_weight": Fact(0.5, EDGECONNECT.at(_EC_MODELS, 109)),
    },
    "aotgan": {
        "lr_g": Fact(1e-4, AOTGAN.at(_AOT_OPT, 25), "optimizer.lr_generator"),
        "lr_d": Fact(1e-4, AOTGAN.at(_AOT_OPT, 26), "optimizer.lr_discriminator"),
        "betas": Fact([0.5, 0.999], AOTGAN.at(_AOT_OPT, 30, 31), "optimizer.betas"),
        "l1.weight": Fact(2.0, AOTGAN.at(_AOT_OPT, 34), "loss_weights.l1", scale=2.0),
        "style.weight": Fact(250.0, AOTGAN.at(_AOT_OPT, 34), "loss_weights.style"),
        "perceptual.weight": Fact(0.1, AOTGAN.at(_AOT_OPT, 34), "loss_weights.perceptual"),
        "adversarial.weight": Fact(0.01, AOTGAN.at(_AOT_OPT, 35), "loss_weights.adversarial"),
        "adversarial.kind": Fact("smgan", AOTGAN.at(_AOT_OPT, 18), "adversarial.type"),
        "adversarial.judge": Fact("composite", AOTGAN.at(_AOT_TRAIN, 107, 115), "adversarial.fake"),
        # one forward, both losses; zero both, backward G total then D loss, step G and D
        "update_order": Fact("simultaneous", AOTGAN.at(_AOT_TRAIN, 105, 125)),
        "adv_grads_into_d": Fact(True, AOTGAN.at(_AOT_TRAIN, 119, 125),
                                 "adversarial.g_loss_grads_reach_discriminator"),
        "grad_clip": Fact(None, AOTGAN.at(_AOT_TRAIN, 119, 125)),                                   # no clipping
    },
    "lama": {
        "lr_g": Fact(1e-3, LAMA.at("configs/training/optimizers/default_optimizers.yaml", 4), "optimizer.generator.lr"),
        "lr_d": Fact(1e-4, LAMA.at("configs/training/optimizers/default_optimizers.yaml", 7),
                     "optimizer.discriminator.lr"),
        # make_optimizer passes only lr: torch's default betas
        "betas": Fact([0.9, 0.999], LAMA.at(_LAMA_BASE, 24, 31), "optimizer.generator.betas"),
        "l1.known": Fact(10.0, LAMA.at(_LAMA_CFG, 11), "losses.l1.weight_known"),
        "l1.hole": Fact(0.0, LAMA.at(_LAMA_CFG, 10), "losses.l1.weight_missing"),
        "adversarial.weight": Fact(10.0, LAMA.at(_LAMA_CFG, 16), "losses.adversarial.weight"),
        "adversarial.mask_as_fake_target": Fact(True, LAMA.at(_LAMA_CFG, 18), "losses.adversarial.mask_as_fake_target"),
        "r1": Fact(0.001, LAMA.at(_LAMA_CFG, 17), "losses.adversarial.gp_coef"),
        "feature_matching.weight": Fact(100.0, LAMA.at(_LAMA_CFG, 21), "losses.feature_matching.weight"),
        "feature_matching.distance": Fact("l2", LAMA.at("saicinpainting/training/losses/feature_matching.py", 21, 22)),
        "resnet_perceptual": Fact(30.0, LAMA.at(_LAMA_CFG, 23), "losses.resnet_pl.weight"),
        "perceptual.weight": Fact(0.0, LAMA.at(_LAMA_CFG, 13), "losses.perceptual_vgg.weight"),
        # Lightning (requirements.txt:14, 1.2.9) clips every optimiser's own parameters, G's and D's
        "grad_clip": Fact(1.0, LAMA.at("configs/training/trainer/any_gpu_large_ssim_ddp_final.yaml", 6),
                          "gradient_clip_val"),
        # optimisers [G, D]; Lightning runs _do_step per optimiser in that order, each with a fresh
        # forward (self(batch)), the other network frozen
        "update_order": Fact("g_then_d", LAMA.at(_LAMA_BASE, 224, 242)),
        "adv_grads_into_d": Fact(False, LAMA.at(_LAMA_BASE, 225, 227)),
    },
    "deepfillv2": {
        "lr_g": Fact(1e-4, DEEPFILLV2.at(_DF_CFG, 21), "optimizer.lr_g"),
        "lr_d": Fact(1e-4, DEEPFILLV2.at(_DF_CFG, 25), "optimizer.lr_d"),
        "betas": Fact([0.5, 0.999], DEEPFILLV2.at(_DF_CFG, 22, 23), "optimizer.betas_g"),
        "l1.weight": Fact(2.0, DEEPFILLV2.at(_DF_CFG, 55), "l1.weight", scale=2.0),
        "adversarial.kind": Fact("hinge", DEEPFILLV2.at(_DF_CFG, 51), "adversarial.type"),
        "adversarial.weight": Fact(1.0, DEEPFILLV2.at(_DF_CFG, 52), "adversarial.weight"),
        "adversarial.d_weight": Fact(0.5, DEEPFILLV2.at("model/losses.py", 26), "adversarial.d_terms_factor"),
        "adversarial.judge": Fact("composite", DEEPFILLV2.at(_DF_TRAIN, 78, 84), "adversarial.fake"),
        # D steps (95-97); G's adversarial loss is computed by the updated D (110) before G steps
        "update_order": Fact("d_then_g", DEEPFILLV2.at(_DF_TRAIN, 94, 121), "adversarial.order"),
        "adv_grads_into_d": Fact(False, DEEPFILLV2.at(_DF_TRAIN, 118, 121)),
        "grad_clip": Fact(None, DEEPFILLV2.at(_DF_TRAIN, 94, 121)),                                 # no clipping
    },
}

# The study's Table 3 ("Batch size"): LaMa trained at 4, the other inpainting models at 8.
STUDY_BATCH = {"aotgan": 8, "deepfillv2": 8, "edgeconnect": 8, "lama": 4}

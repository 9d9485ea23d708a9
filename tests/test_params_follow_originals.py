"""params/backbones/<name>.yaml runs the original training recipes: its optimiser and loss
weights must agree with the facts each backbone module records (with sources) in `TRAINING`."""
import pytest

from zfutils import config
from zfutils.models import aotgan, deepfillv2, edgeconnect, lama

T = {m.BACKBONE.name: m.TRAINING for m in (aotgan, deepfillv2, edgeconnect, lama)}
# (our config path, the original's value); [-1,1]-range L1 counts twice on our [0,1] images
CASES = {
    "aotgan": [("lr_g", T["aotgan"]["optimizer"]["lr_generator"]), ("lr_d", T["aotgan"]["optimizer"]["lr_discriminator"]),
               ("betas", list(T["aotgan"]["optimizer"]["betas"])), ("l1.weight", 2 * T["aotgan"]["loss_weights"]["l1"]),
               ("style.weight", T["aotgan"]["loss_weights"]["style"]),
               ("perceptual.weight", T["aotgan"]["loss_weights"]["perceptual"]),
               ("adversarial.weight", T["aotgan"]["loss_weights"]["adversarial"]), ("adversarial.kind", "smgan"),
               ("adversarial.judge", T["aotgan"]["adversarial"]["fake"])],
    "deepfillv2": [("lr_g", T["deepfillv2"]["optimizer"]["lr_g"]), ("lr_d", T["deepfillv2"]["optimizer"]["lr_d"]),
                   ("betas", list(T["deepfillv2"]["optimizer"]["betas_g"])),
                   ("l1.weight", T["deepfillv2"]["l1"]["weight_in_unit_range"]),
                   ("adversarial.kind", T["deepfillv2"]["adversarial"]["type"]),
                   ("adversarial.weight", T["deepfillv2"]["adversarial"]["weight"]),
                   ("adversarial.d_weight", T["deepfillv2"]["adversarial"]["d_terms_factor"]),
                   ("adversarial.judge", T["deepfillv2"]["adversarial"]["fake"])],
    "edgeconnect": [("lr_g", T["edgeconnect"]["optimizer"]["lr_g"]), ("lr_d", T["edgeconnect"]["optimizer"]["lr_d"]),
                    ("betas", list(T["edgeconnect"]["optimizer"]["betas"])),
                    ("l1.weight", T["edgeconnect"]["inpaint"]["l1_weight"]), ("l1.per_mask_mean", True),
                    ("adversarial.weight", T["edgeconnect"]["inpaint"]["adversarial_weight"]),
                    ("adversarial.kind", T["edgeconnect"]["adversarial"]["type"]), ("adversarial.d_weight", 0.5),
                    ("perceptual.weight", T["edgeconnect"]["inpaint"]["perceptual_weight"]),
                    ("style.weight", T["edgeconnect"]["inpaint"]["style_weight"]), ("style.masked", True),
                    ("vgg_imagenet_norm", False)],
    "lama": [("lr_g", T["lama"]["optimizer"]["generator"]["lr"]), ("lr_d", T["lama"]["optimizer"]["discriminator"]["lr"]),
             ("betas", list(T["lama"]["optimizer"]["generator"]["betas"])),
             ("l1.known", T["lama"]["losses"]["l1"]["weight_known"]), ("l1.hole", T["lama"]["losses"]["l1"]["weight_missing"]),
             ("adversarial.weight", T["lama"]["losses"]["adversarial"]["weight"]),
             ("adversarial.mask_as_fake_target", T["lama"]["losses"]["adversarial"]["mask_as_fake_target"]),
             ("r1", T["lama"]["losses"]["adversarial"]["gp_coef"]),
             ("feature_matching.weight", T["lama"]["losses"]["feature_matching"]["weight"]),
             ("resnet_perceptual", T["lama"]["losses"]["resnet_pl"]["weight"]),
             ("perceptual.weight", T["lama"]["losses"]["perceptual_vgg"]["weight"]),
             ("grad_clip", T["lama"]["gradient_clip_val"])],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_backbone_params_match_the_original_recipe(name):
    inpaint = config.resolve("paper", name)["inpaint"]
    for path, expected in CASES[name]:
        value = inpaint
        for part in path.split("."):
            value = value[part]
        assert value == expected, f"{name}: inpaint.{path} is {value!r}, the original uses {expected!r}"

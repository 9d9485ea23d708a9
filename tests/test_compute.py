"""Mixed precision and the other compute settings: bf16 (and fp16 with its scaler) give the fp32
results within documented tolerances, on the golden inputs and weight rule of every inpainting
model, and training runs under each precision."""
import pytest
import torch

from tests.reference import REFERENCE, needs_reference
from tests.test_classify import classifier, tiny  # noqa: F401 (fixture)
from zfutils import config, models
from zfutils.models.weight_rule import apply_rule
from zfutils.train.classify import ClassifierTrainer
from zfutils.train.compute import Compute

torch.set_num_threads(1)

# bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.2 %) per operation, and the error
# grows through the official-size generators. Measured on CPU at 64x64 under the golden weight
# rule, bf16 vs fp32 outputs: mean |difference| / output range 0.026 (AOT-GAN), 0.029
# (DeepFillV2), 0.005 (EdgeConnect), 0.002 (LaMa, whose FFTs run in fp32); PSNR 29.6, 29.8,
# 43.5 and 35.8 dB; single pixels deviate up to 0.33 of the range (LaMa), so no max-error bound
# is claimed. Tolerances: mean deviation and PSNR.
BF16_MEAN_TOLERANCE = 0.04
BF16_MIN_PSNR_DB = 28.0
GOLDEN = {"aotgan": "aotgan", "deepfillv2": "deepfillv2", "edgeconnect": "edgeconnect-inpaint", "lama": "lama-big"}


def _rule_generator(name):
    generator = models.get(name).build_generator()
    parts = [generator.edge, generator.inpaint] if name == "edgeconnect" else [generator]
    for part in parts:
        apply_rule(part)
    return generator.eval()


@needs_reference
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_bf16_inpainting_matches_fp32_on_the_golden_inputs(name):
    inputs = torch.load(REFERENCE / "golden" / f"{GOLDEN[name]}-64x64.pt", weights_only=True)["inputs"]
    backbone, generator = models.get(name), _rule_generator(name)
    with torch.no_grad():
        fp32 = backbone.inpaint(generator, inputs["image"], inputs["mask"]).output
        with Compute(precision="bf16").autocast():
            bf16 = backbone.inpaint(generator, inputs["image"], inputs["mask"]).output.float()
        feats32 = backbone.encoder(generator)(backbone.encoder_input(inputs["image"], torch.zeros_like(inputs["mask"])))
        with Compute(precision="bf16").autocast():
            feats16 = backbone.encoder(generator)(backbone.encoder_input(inputs["image"],
                                                                       torch.zeros_like(inputs["mask"]))).float()
    for what, ours, reference in (("output", bf16, fp32), ("encoder features", feats16, feats32)):
        span = (reference.max() - reference.min()).item()
        mean = (ours - reference).abs().mean().item() / span
        psnr = 10 * torch.log10(span**2 / ((ours - reference) ** 2).mean()).item()
        assert mean < BF16_MEAN_TOLERANCE and psnr > BF16_MIN_PSNR_DB, \
            f"{name} {what}: bf16 deviates by {mean:.4f} of the range on average, PSNR {psnr:.1f} dB"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_classifier_trains_under_every_precision(precision, tiny, tmp_path):  # noqa: F811
    train, _ = tiny
    model = classifier("aotgan")
    trainer = ClassifierTrainer(model=model, mode="deep", run_dir=tmp_path, epochs=4, batch_size=8, lr_head=1e-2,
                                lr_encoder=1e-3, seed=0, stamp="t", compute=Compute(precision=precision))
    trainer.fit(train, train, n_classes=3)
    history = [r for r in trainer.log.read() if r["kind"] == "epoch"]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in history)
    assert max(r["val_accuracy"] for r in history) > 0.5  # chance is 1/3
    assert trainer.compute.scaler.is_enabled() == (precision == "fp16")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay fp32


def test_channels_last_keeps_names_and_results(tiny):  # noqa: F811
    train, _ = tiny
    model = classifier("efficientnet").eval()
    image = torch.stack([train[i]["image"] for i in range(4)])
    with torch.no_grad():
        before, keys = model.embed(image), list(model.state_dict())
        compute = Compute(channels_last=True)
        compute.prepare(model)
        after = model.embed(compute.batch(image))
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_compute_settings_come_from_params_and_bad_values_are_named():
    compute = Compute.from_cfg(config.resolve("smoke", None, {"compute.precision": "bf16"}), "cpu")
    assert compute.precision == "bf16" and compute.loader_options()["pin_memory"] is False
    with pytest.raises(ValueError, match="unknown compute.precision 'fp8'"):
        Compute(precision="fp8")
    with pytest.raises(ValueError, match="workers"):
        Compute(workers=-1)

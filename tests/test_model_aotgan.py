"""AOT-GAN: official keys and shapes, the golden outputs of the official code under the weight
rule, the checkpoint format, and the scale knobs."""
import json

import pytest
import torch

from tests.reference import REFERENCE, needs_reference
from zfutils.models import aotgan, registry
from zfutils.models.checkpoints import CheckpointMismatch, load_strict
from zfutils.models.weight_rule import apply_rule, weight_sums

torch.set_num_threads(1)

SIZES = ["64x64", "96x128"]


def _manifest(net):
    return json.loads((REFERENCE / "checkpoint-keys" / f"aotgan-{net}.json").read_text())


def _golden(size):
    return torch.load(REFERENCE / "golden" / f"aotgan-{size}.pt", weights_only=True)


def _rel(ours, golden):
    return ((ours - golden).abs().max() / golden.abs().max()).item()


@pytest.fixture(scope="module")
def rule_generator():
    return apply_rule(aotgan.build_generator())


@pytest.fixture(scope="module")
def discriminator():
    return aotgan.build_discriminator()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return aotgan.build_generator(width=0.25, blocks=2), aotgan.build_discriminator(width=0.25)


def test_registered_with_every_field():
    backbone = registry.get("aotgan")
    assert backbone is aotgan.BACKBONE and backbone.family == "inpainting"
    optional = ("matcher", "auxiliary")  # matcher: matching methods only; auxiliary: EdgeConnect's edge model
    network_fields = [f for f in backbone.__dataclass_fields__ if f not in optional]
    assert all(getattr(backbone, f) is not None for f in network_fields) and backbone.matcher is None
    assert backbone.auxiliary is None
    assert "G0000000.pt" in backbone.checkpoint_hint


@needs_reference
@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_state_dict_matches_manifest(net, rule_generator, discriminator):
    model = rule_generator if net == "generator" else discriminator
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    manifest = _manifest(net)
    assert ours == list(manifest["state_dict"].items())
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]


@needs_reference
def test_encoder_matches_manifest(rule_generator):
    enc = _manifest("generator")["encoder"]
    keys = ["encoder." + k for k in aotgan.encoder(rule_generator).state_dict()]
    assert keys == enc["state_dict_keys"]
    assert sum(p.numel() for p in aotgan.encoder(rule_generator).parameters()) == enc["num_params"]
    assert aotgan.cam_layer(rule_generator) is rule_generator.encoder[5]


@needs_reference
def test_weight_rule_reproduces_golden_sums(rule_generator):
    check = _golden("64x64")["weight_check"]
    sums = weight_sums(rule_generator)
    assert list(sums) == check["keys"].split("\n")
    ours = torch.tensor(list(sums.values()), dtype=torch.float64)
    # float64 sums of identical tensors differ only in summation order (about 1e-15)
    torch.testing.assert_close(ours[:, 0], check["sum"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[:, 1], check["abs_sum"], rtol=1e-12, atol=1e-12)


@needs_reference
@pytest.mark.parametrize("size", SIZES)
def test_golden_outputs(size, rule_generator):
    gold = _golden(size)
    inputs = gold["inputs"]
    with torch.no_grad():
        preact = rule_generator.pre_activation(inputs["x"], inputs["mask"])
        output = rule_generator(inputs["x"], inputs["mask"])
        features = rule_generator.encoder(inputs["encoder_input"])
    assert _rel(preact, gold["preact"]["output"]) < 2e-4
    assert _rel(output, gold["outputs"]["output"]) < 2e-4
    assert _rel(features, gold["encoder"]["output"]) < 1e-5


@needs_reference
@pytest.mark.parametrize("size", SIZES)
def test_input_convention_and_isolated_encoder(size, rule_generator):
    gold = _golden(size)
    image, mask = gold["inputs"]["image"], gold["inputs"]["mask"]
    assert torch.equal(aotgan.network_input(image, mask), gold["inputs"]["x"])
    assert torch.equal(aotgan.encoder_input(image, mask), gold["inputs"]["encoder_input"])
    with torch.no_grad():
        result = aotgan.inpaint(rule_generator, image, mask)
        features = aotgan.encoder(rule_generator)(aotgan.encoder_input(image, mask))
    assert _rel(result.output * 2 - 1, gold["outputs"]["output"]) < 2e-4
    assert result.stages[-1] is result.output
    expected = (1 - mask) * image + mask * (gold["outputs"]["output"] + 1) / 2
    assert (result.composite - expected).abs().max() < 1e-4
    assert torch.equal(result.composite[mask.expand_as(image) == 0], image[mask.expand_as(image) == 0])
    assert _rel(features, gold["encoder"]["output"]) < 1e-5
    assert features.shape[1] == aotgan.embed_dim(1.0) == 256


def test_load_pretrained_official_files(tmp_path, rule_generator, discriminator):
    torch.save(rule_generator.state_dict(), tmp_path / "G0000000.pt")
    loaded = aotgan.load_pretrained(tmp_path / "G0000000.pt")
    assert loaded["discriminator"] is None
    fresh = load_strict(aotgan.build_generator(), loaded["generator"], source="G0000000.pt")
    assert torch.equal(fresh.decoder[4].weight, rule_generator.decoder[4].weight)

    torch.save(discriminator.state_dict(), tmp_path / "D0000000.pt")
    loaded = aotgan.load_pretrained(tmp_path)          # the release folder works too
    load_strict(aotgan.build_discriminator(), loaded["discriminator"], source="D0000000.pt")


def test_load_pretrained_mismatch_and_missing(tmp_path, rule_generator):
    state = dict(rule_generator.state_dict())
    state["middle.0.gate.1.bias"] = torch.zeros(7)
    state["middle.0.extra.weight"] = state.pop("middle.0.fuse.1.weight")
    torch.save(state, tmp_path / "G0000001.pt")
    with pytest.raises(CheckpointMismatch) as err:
        load_strict(aotgan.build_generator(), aotgan.load_pretrained(tmp_path / "G0000001.pt")["generator"],
                    source="G0000001.pt")
    message = str(err.value)
    assert "middle.0.fuse.1.weight" in message and "middle.0.extra.weight" in message
    assert "middle.0.gate.1.bias" in message
    with pytest.raises(FileNotFoundError, match="G9999999.pt.*AOT-GAN"):
        aotgan.load_pretrained(tmp_path / "G9999999.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        aotgan.load_pretrained(tmp_path / "empty")


def test_scale_knobs_keep_official_names(small, rule_generator, discriminator):
    gen, dis = small
    assert set(gen.state_dict()) < set(rule_generator.state_dict())
    assert not any(k.startswith("middle.2.") for k in gen.state_dict())
    assert list(dis.state_dict()) == list(discriminator.state_dict())
    assert gen.encoder[5].out_channels == aotgan.embed_dim(0.25) == 64
    assert aotgan.build_generator(width=0.5).encoder[5].out_channels == aotgan.embed_dim(0.5) == 128


@pytest.mark.parametrize("hw", [(64, 64), (96, 128)])
def test_small_model_trains_at_both_sizes(small, hw):
    gen, dis = small
    gen.train(), dis.train()
    torch.manual_seed(1)
    image, mask = torch.rand(2, 3, *hw), (torch.rand(2, 1, *hw) < 0.3).float()
    result = aotgan.inpaint(gen, image, mask)
    logits, features = aotgan.discriminate(dis, result.composite, mask)
    feats = aotgan.encoder(gen)(aotgan.encoder_input(image, torch.zeros_like(mask)))
    assert result.output.shape == result.composite.shape == image.shape and features == []
    assert 0 <= result.output.min() and result.output.max() <= 1
    assert logits.shape == (2, 1, hw[0] // 8 - 2, hw[1] // 8 - 2)
    assert feats.shape == (2, aotgan.embed_dim(0.25), hw[0] // 4, hw[1] // 4)
    gen.zero_grad(), dis.zero_grad()
    (result.output.mean() + logits.mean() + feats.mean()).backward()
    missing = [n for net in (gen, dis) for n, p in net.named_parameters() if p.grad is None]
    assert missing == []


def test_inpaint_pads_small_and_odd_sizes(small):
    gen, _ = small
    gen.eval()
    image, mask = torch.rand(1, 3, 16, 24), torch.zeros(1, 1, 16, 24)
    with torch.no_grad():
        result = aotgan.inpaint(gen, image, mask)
        odd = aotgan.inpaint(gen, torch.rand(1, 3, 42, 50), torch.zeros(1, 1, 42, 50))
    assert result.output.shape == (1, 3, 16, 24) and odd.output.shape == (1, 3, 42, 50)
    assert torch.equal(result.composite, image)       # no holes: the composite is the image


def test_training_facts():
    train = aotgan.TRAINING
    assert train["optimizer"]["betas"] == (0.5, 0.999) and train["optimizer"]["lr_generator"] == 1e-4
    assert train["loss_weights"] == {"l1": 1.0, "style": 250.0, "perceptual": 0.1, "adversarial": 0.01,
                                     "feature_matching": 0.0, "r1": 0.0, "gradient_penalty": 0.0}
    adv = train["adversarial"]
    assert adv["type"] == "smgan" and adv["fake_label"]["blur_kernel"] == 71 and adv["fake_label"]["blur_sigma"] == 10.0

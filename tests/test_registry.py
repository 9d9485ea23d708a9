"""Every registered backbone, through the registry only: a new backbone is tested for free."""
import pytest
import torch

from zfutils import models
from zfutils.models import registry

NAMES = sorted(n for n, b in models.BACKBONES.items() if b.matcher is None)  # networks (matchers: test_matching.py)
INPAINTING = [n for n in NAMES if models.BACKBONES[n].family == "inpainting"]


def test_all_four_inpainting_backbones_and_both_baselines_are_registered():
    assert set(INPAINTING) == {"aotgan", "deepfillv2", "edgeconnect", "lama"}
    assert {n for n in NAMES if models.BACKBONES[n].family == "baseline"} == {"efficientnet", "inceptionv3"}


def test_every_backbone_has_a_params_file_of_its_family():
    from zfutils import config

    assert set(config.available("backbones")) == set(models.BACKBONES)
    for name in models.BACKBONES:
        assert config.resolve("smoke", name)["backbone"]["family"] == models.BACKBONES[name].family


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown backbone 'resnet'; known backbones: aotgan, deepfillv2"):
        registry.get("resnet")


@pytest.fixture(scope="module", params=INPAINTING)
def small(request):
    torch.manual_seed(0)
    b = registry.get(request.param)
    return b, registry.build_generator(b.name, width=0.125, blocks=1), registry.build_discriminator(b.name, width=0.125)


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_inpaint_forward_backward_shapes(small, size):
    backbone, generator, discriminator = small
    image = torch.rand(2, 3, *size)
    mask = torch.zeros(2, 1, *size)
    mask[..., size[0] // 4: size[0] // 2, size[1] // 4: size[1] // 2] = 1
    result = backbone.inpaint(generator.train(), image, mask)
    for tensor in (*result.stages, result.output, result.composite):
        assert tensor.shape == image.shape and 0 <= float(tensor.detach().min()) and float(tensor.detach().max()) <= 1
    assert torch.equal(result.composite * (1 - mask), image * (1 - mask))  # known pixels are kept
    logits, feats = backbone.discriminate(discriminator, result.composite, mask)
    (result.output.mean() + logits.mean() + sum(f.mean() for f in feats)).backward()
    missing = [n for n, p in generator.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing[:3]}"
    generator.zero_grad(set_to_none=True)


def test_encoder_embedding_size_and_cam_layer(small):
    backbone, generator, _ = small
    image = torch.rand(2, 3, 64, 64)
    features = backbone.encoder(generator)(backbone.encoder_input(image, torch.zeros(2, 1, 64, 64)))
    assert features.ndim == 4 and features.shape[1] == backbone.embed_dim(0.125)
    layer = backbone.cam_layer(generator)
    assert any(layer is m for m in generator.modules())
    encoder_params = {id(p) for p in backbone.encoder(generator).parameters()}
    assert encoder_params <= {id(p) for p in generator.parameters()}  # the encoder shares the generator's weights


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_missing_file_names_it(name, tmp_path):
    backbone = registry.get(name)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        registry.load_pretrained(backbone.name, tmp_path / "nothing-here")
    assert backbone.checkpoint_hint


@pytest.mark.parametrize("name", NAMES)
def test_missing_fill_is_the_models_neutral_input(name):
    """A region filled with `missing_fill` reaches the network as its 'nothing here' value."""
    backbone = registry.get(name)
    fill = torch.tensor(backbone.missing_fill).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    seen = backbone.encoder_input(fill.clone(), torch.zeros(1, 1, 8, 8))[:, :3]
    expected = {"aotgan": 1.0, "edgeconnect": 1.0, "deepfillv2": 0.0, "lama": 0.0, "efficientnet": 0.0, "inceptionv3": 0.0,
                "efficientnetv2": 0.0}
    assert torch.allclose(seen, torch.full_like(seen, expected[name]), atol=1e-5)


def _old_block(module):
    """The fields each inpainting module used to spell out in its explicit Backbone(...) block."""
    from zfutils.models import aotgan, deepfillv2, edgeconnect, lama

    functions = {f: getattr(module, f) for f in registry.INPAINTING_FUNCTIONS if f != "encoder_input"}
    encoder_input = deepfillv2.network_input if module is deepfillv2 else module.encoder_input
    hint = {aotgan: aotgan.CHECKPOINT_HINT, lama: lama.HOW_TO_GET,
            deepfillv2: "nipponjo/deepfillv2-pytorch README, 'Pretrained models' (Google Drive): pass "
                        "states_pt_places2.pth (fine-tuned, networks.py) or states_tf_places2.pth (converted TF "
                        "weights, networks_tf.py); load_pretrained reports which under 'variant'",
            edgeconnect: f"places2 weights: {edgeconnect.RELEASE} (knazeri/edge-connect README); pass the folder "
                         "holding EdgeModel_gen.pth and InpaintingModel_gen.pth (EdgeModel_dis.pth / "
                         "InpaintingModel_dis.pth are optional)"}[module]
    fill = {aotgan: (1.0, 1.0, 1.0), deepfillv2: (0.5, 0.5, 0.5), edgeconnect: (1.0, 1.0, 1.0), lama: (0.0, 0.0, 0.0)}
    auxiliary = edgeconnect.AUXILIARY if module is edgeconnect else None
    return dict(name=module.__name__.rsplit(".", 1)[1], family="inpainting", **functions, encoder_input=encoder_input,
                checkpoint_hint=hint, missing_fill=fill[module], matcher=None, auxiliary=auxiliary)


@pytest.mark.parametrize("name", ["aotgan", "deepfillv2", "edgeconnect", "lama"])
def test_register_inpainting_gives_the_fields_of_the_old_explicit_block(name):
    import dataclasses
    import importlib

    module = importlib.import_module(f"zfutils.models.{name}")
    backbone = registry.get(name)
    expected = _old_block(module)
    assert backbone is module.BACKBONE
    assert {f.name for f in dataclasses.fields(backbone)} == set(expected)
    for field, value in expected.items():
        assert getattr(backbone, field) is value or getattr(backbone, field) == value, field
        if callable(value):
            assert getattr(backbone, field) is value, field  # the module's own function, not a copy


def test_register_inpainting_names_the_module_and_every_missing_function(monkeypatch):
    import types

    monkeypatch.setattr(registry, "BACKBONES", dict(registry.BACKBONES))
    fake = types.ModuleType("zfutils.models.fake_inpainting")
    for f in registry.INPAINTING_FUNCTIONS:
        if f not in ("encoder", "cam_layer"):
            setattr(fake, f, lambda *a, **k: None)
    fake.encoder = "not a function"
    with pytest.raises(TypeError, match=r"'zfutils\.models\.fake_inpainting'.*'fake'.*no function encoder, cam_layer"):
        registry.register_inpainting("fake", fake, checkpoint_hint="h", missing_fill=(0.0, 0.0, 0.0))
    assert "fake" not in registry.BACKBONES


def test_register_inpainting_takes_globals_and_named_overrides(monkeypatch):
    monkeypatch.setattr(registry, "BACKBONES", dict(registry.BACKBONES))
    functions = {f: (lambda *a, **k: None) for f in registry.INPAINTING_FUNCTIONS if f != "encoder_input"}
    network_input = lambda image, mask: image  # noqa: E731
    namespace = {"__name__": "zfutils.models.fake_inpainting", **functions, "network_input": network_input}
    backbone = registry.register_inpainting("fake", namespace, checkpoint_hint="h", missing_fill=(0.0, 0.0, 0.0),
                                            encoder_input=network_input)
    assert registry.BACKBONES["fake"] is backbone and backbone.family == "inpainting"
    assert backbone.encoder_input is network_input and backbone.inpaint is functions["inpaint"]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_inpainting("fake", namespace, checkpoint_hint="h", missing_fill=(0.0, 0.0, 0.0),
                                     encoder_input=network_input)

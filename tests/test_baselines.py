"""The torchvision classification baselines (efficientnet, inceptionv3) as registry backbones."""
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import zfutils.pretrained
from tests.helpers import one_thread, write_torchvision_file  # noqa: F401  (one_thread: a fixture)
from zfutils.models import checkpoints, efficientnet, inceptionv3, registry
from zfutils.models.baseline_common import imagenet_normalise

MODULES = {"efficientnet": efficientnet, "inceptionv3": inceptionv3}
WEIGHTS = {"efficientnet": torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1,
           "inceptionv3": torchvision.models.Inception_V3_Weights.IMAGENET1K_V1}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module", params=sorted(MODULES))
def net(request):
    torch.manual_seed(0)
    backbone = registry.get(request.param)
    return backbone, backbone.build_generator()


def own_file(name: str, path: Path, *, seed: int, aux: bool = True, counters: bool = True) -> dict:
    """A file in torchvision's format; for inceptionv3 from torchvision's aux-logits network, as
    the ImageNet file holds AuxLogits.*."""
    if name == "inceptionv3":
        return write_torchvision_file(path, lambda: torchvision.models.inception_v3(
            weights=None, aux_logits=aux, init_weights=False), seed=seed, counters=counters)
    return write_torchvision_file(path, lambda: torchvision.models.efficientnet_b0(weights=None), seed=seed,
                                  counters=counters)


def test_both_registered_as_baselines_without_inpainting_parts():
    for name, module in MODULES.items():
        backbone = registry.get(name)
        assert backbone is module.BACKBONE and backbone.family == "baseline"
        assert backbone.build_discriminator is None and backbone.inpaint is None and backbone.discriminate is None
        assert backbone.checkpoint_hint and module.FILE in backbone.checkpoint_hint
        with pytest.raises(ValueError, match="no discriminator"):
            registry.build_discriminator(name)


def test_file_names_are_torchvisions():
    for name, module in MODULES.items():
        assert WEIGHTS[name].url.rsplit("/", 1)[-1] == module.FILE
        assert WEIGHTS[name].url == module.URL


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_encoder_channels_match_embed_dim(net, size):
    backbone, generator = net
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        features = backbone.encoder(generator.eval())(backbone.encoder_input(image, torch.zeros(2, 1, *size)))
    assert features.ndim == 4 and features.shape[:2] == (2, backbone.embed_dim(1.0))
    assert min(features.shape[-2:]) >= 2  # a spatial map, not a vector, for Grad-CAM
    assert backbone.embed_dim(1.0) == {"efficientnet": 1280, "inceptionv3": 2048}[backbone.name]


def test_gradients_reach_every_encoder_parameter(net):
    backbone, generator = net
    enc = backbone.encoder(generator.train())
    own = {id(p) for p in generator.parameters()}
    assert all(id(p) in own for p in enc.parameters())  # shared, not copied
    image = torch.rand(2, 3, 64, 64)
    enc(backbone.encoder_input(image, torch.zeros(2, 1, 64, 64))).mean().backward()
    names = dict(generator.named_parameters())
    encoder_names = [n for n, p in names.items() if any(p is q for q in enc.parameters())]
    missing = [n for n in encoder_names if names[n].grad is None or not torch.isfinite(names[n].grad).all()]
    assert not missing, f"no gradient reached {missing[:3]}"
    assert len(encoder_names) == len(list(enc.parameters())) > 50
    head = [n for n in names if n.startswith(("fc.", "classifier."))]
    assert head and not set(head) & set(encoder_names)  # the head is the study's, not torchvision's
    generator.zero_grad(set_to_none=True)


def test_cam_layer_is_the_encoders_last_block(net):
    backbone, generator = net
    layer = backbone.cam_layer(generator)
    assert any(layer is m for m in generator.modules())
    seen = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        with torch.no_grad():
            features = backbone.encoder(generator.eval())(backbone.encoder_input(torch.rand(1, 3, 64, 64), None))
    finally:
        handle.remove()
    assert len(seen) == 1 and torch.equal(seen[0], features)


def test_load_pretrained_loads_strictly(net, tmp_path):
    backbone, _ = net
    path = tmp_path / "weights.pth"
    written = own_file(backbone.name, path, seed=1)
    states = registry.load_pretrained(backbone.name, path)
    assert states["discriminator"] is None
    fresh = backbone.build_generator()
    assert not torch.equal(fresh.state_dict()[next(iter(written))], written[next(iter(written))])
    checkpoints.load_strict(fresh, states["generator"], source=str(path))
    loaded = fresh.state_dict()
    assert set(loaded) == {k for k in written if not k.startswith("AuxLogits.")}
    assert all(torch.equal(loaded[k], written[k]) for k in loaded)


def test_inception_file_drops_aux_logits_and_keeps_everything_else(tmp_path):
    path = tmp_path / "inception.pth"
    written = own_file("inceptionv3", path, seed=2)
    aux = [k for k in written if k.startswith("AuxLogits.")]
    assert aux  # the file really has them, as torchvision's ImageNet file does
    generator = inceptionv3.load_pretrained(path)["generator"]
    assert set(generator) == set(written) - set(aux)
    with pytest.raises(checkpoints.CheckpointMismatch, match="unexpected: AuxLogits"):
        checkpoints.load_strict(inceptionv3.build_generator(), written, source="raw file")


def test_files_without_batchnorm_counters_still_load_strictly(tmp_path):
    path = tmp_path / "old.pth"
    own_file("efficientnet", path, seed=3, counters=False)
    generator = efficientnet.build_generator()
    checkpoints.load_strict(generator, efficientnet.load_pretrained(path)["generator"], source=str(path))
    assert all(int(m.num_batches_tracked) == 0 for m in generator.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_missing_file_names_it(name, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothing-here.pth"):
        registry.load_pretrained(name, tmp_path / "nothing-here.pth")
    monkeypatch.setattr(zfutils.pretrained, "cache_dir", lambda: tmp_path / "empty-cache")
    with pytest.raises(FileNotFoundError, match=MODULES[name].FILE) as err:
        registry.load_pretrained(name, None)
    assert "empty-cache" in str(err.value) and "model.pretrained" in str(err.value)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_found_in_the_torch_hub_cache(name, tmp_path, monkeypatch):
    cache = tmp_path / "hub" / "checkpoints"
    monkeypatch.setattr(zfutils.pretrained, "cache_dir", lambda: cache)
    written = own_file(name, cache / MODULES[name].FILE, seed=4, aux=False)
    for path in (None, "", "imagenet"):
        state = registry.load_pretrained(name, path)["generator"]
        assert set(state) == set(written) and all(torch.equal(state[k], written[k]) for k in state)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_one_official_size(name):
    with pytest.raises(ValueError, match=f"'{name}' .* one official size"):
        registry.build_generator(name, width=0.125, blocks=1)
    with pytest.raises(ValueError, match="one official size"):
        registry.build_generator(name, blocks=2)
    assert registry.build_generator(name, width=1.0, blocks=None) is not None


def test_efficientnet_input_is_imagenet_normalised_and_ignores_the_mask():
    image = torch.rand(2, 3, 20, 24)
    transforms = WEIGHTS["efficientnet"].transforms()
    mean, std = torch.tensor(transforms.mean).view(1, 3, 1, 1), torch.tensor(transforms.std).view(1, 3, 1, 1)
    expected = (image - mean) / std
    assert torch.allclose(efficientnet.encoder_input(image, torch.zeros(2, 1, 20, 24)), expected, atol=1e-6)
    assert torch.equal(efficientnet.encoder_input(image, torch.ones(2, 1, 20, 24)),
                       efficientnet.encoder_input(image, torch.zeros(2, 1, 20, 24)))


def test_inception_input_matches_torchvisions_pretrained_convention():
    """torchvision builds its pretrained inception with transform_input=True and feeds it
    ImageNet-normalised images; our encoder (with the network's own avgpool and fc) must give the
    same logits from encoder_input."""
    torch.manual_seed(5)
    ours = inceptionv3.build_generator().eval()
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=True,
                                                init_weights=False).eval()
    reference.load_state_dict(ours.state_dict())
    image = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        expected = reference(imagenet_normalise(image))
        features = inceptionv3.encoder(ours)(inceptionv3.encoder_input(image, torch.ones(1, 1, 128, 128)))
        logits = ours.fc(torch.flatten(ours.avgpool(features), 1))
        wrong = ours(imagenet_normalise(image))  # what feeding ImageNet-normalised input would give
    scale = float(expected.abs().max())  # random BatchNorm statistics make the logits huge
    assert float((logits - expected).abs().max()) < 1e-5 * scale
    assert float((wrong - expected).abs().max()) > 1e-2 * scale


def test_inception_upsamples_small_images_only():
    small = torch.rand(1, 3, 64, 64)
    assert inceptionv3.encoder_input(small, None).shape[-2:] == (107, 107)
    assert inceptionv3.encoder_input(torch.rand(1, 3, 96, 128), None).shape[-2:] == (107, 143)
    with torch.no_grad():  # the smallest side whose last map is 2x2
        assert inceptionv3.encoder(inceptionv3.build_generator())(inceptionv3.encoder_input(small, None)).shape[-2:] == (2, 2)
    big = torch.rand(1, 3, 107, 140)
    assert torch.equal(inceptionv3.encoder_input(big, None), 2 * big - 1)
    out = inceptionv3.encoder_input(small, None)
    assert -1 <= float(out.min()) and float(out.max()) <= 1

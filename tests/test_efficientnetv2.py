"""The MiewID-style embedding model: EfficientNetV2-S as a registry backbone, GeM pooling and
sub-center ArcFace with dynamic margins (zfutils/models/{efficientnetv2,pooling,arcface}.py)."""
import math

import pytest
import torch
import torchvision
from torch import nn

import zfutils.pretrained
from tests.helpers import one_thread, write_torchvision_file  # noqa: F401  (one_thread: a fixture)
from tests.test_classify import tiny  # noqa: F401  (the fixture: 3 fish, 32 px, colour encodes identity)
from zfutils import config, models
from zfutils.models import checkpoints, efficientnetv2, registry
from zfutils.models.arcface import SubCenterArcFaceDynamic, counts_per_class, dynamic_margins
from zfutils.models.classifier import Classifier
from zfutils.models.pooling import GeM
from zfutils.train.classify import ClassifierTrainer


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return efficientnetv2.build_generator()


def own_file(path, *, seed: int, build=torchvision.models.efficientnet_v2_s) -> dict:
    return write_torchvision_file(path, lambda: build(weights=None), seed=seed)


def test_registered_as_an_embedding_model_without_inpainting_parts():
    backbone = registry.get("efficientnetv2")
    assert backbone is efficientnetv2.BACKBONE and backbone.family == "embedding"
    assert backbone.build_discriminator is None and backbone.inpaint is None and backbone.discriminate is None
    assert efficientnetv2.FILE in backbone.checkpoint_hint and "efficientnet_v2_s" in backbone.checkpoint_hint
    weights = torchvision.models.EfficientNet_V2_S_Weights.IMAGENET1K_V1
    assert weights.url == efficientnetv2.URL and weights.url.rsplit("/", 1)[-1] == efficientnetv2.FILE
    assert config.resolve("smoke", "efficientnetv2")["backbone"]["family"] == "embedding"
    with pytest.raises(ValueError, match="one official size"):
        registry.build_generator("efficientnetv2", width=0.125, blocks=1)


def test_only_the_inpainting_stage_is_skipped():
    from zfutils.pipeline import discover_stages

    skipped = [s.name for s in discover_stages() if s.per_backbone and s.families and "embedding" not in s.families]
    assert skipped == ["02_inpaint_patterns"]


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (96, 128)])
def test_encoder_gives_1280_channels_at_a_32nd(generator, size):
    backbone = registry.get("efficientnetv2")
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        features = backbone.encoder(generator.eval())(backbone.encoder_input(image, torch.zeros(2, 1, *size)))
    assert features.shape == (2, 1280, size[0] // 32, size[1] // 32) and backbone.embed_dim(1.0) == 1280
    layer = backbone.cam_layer(generator)
    assert layer is generator.features[-1]
    fill = torch.tensor(backbone.missing_fill).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert torch.allclose(backbone.encoder_input(fill, None), torch.zeros(1, 3, 4, 4), atol=1e-6)


def test_parameter_counts(generator):
    assert sum(p.numel() for p in generator.parameters()) == 21_458_488  # torchvision's meta
    assert sum(p.numel() for p in efficientnetv2.encoder(generator).parameters()) == 20_177_488


def test_loads_torchvisions_format_strictly_and_refuses_another_network(tmp_path):
    path = tmp_path / "v2s.pth"
    written = own_file(path, seed=1)
    state = registry.load_pretrained("efficientnetv2", path)
    assert state["discriminator"] is None
    fresh = efficientnetv2.build_generator()
    checkpoints.load_strict(fresh, state["generator"], source=str(path))
    loaded = fresh.state_dict()
    assert set(loaded) == set(written) and all(torch.equal(loaded[k], written[k]) for k in loaded)

    wrong = tmp_path / "b0.pth"
    own_file(wrong, seed=2, build=torchvision.models.efficientnet_b0)
    with pytest.raises(checkpoints.CheckpointMismatch, match=r"b0\.pth does not match EfficientNet: .*missing"):
        checkpoints.load_strict(efficientnetv2.build_generator(), efficientnetv2.load_pretrained(wrong)["generator"],
                                source=str(wrong))


def test_missing_imagenet_file_names_it_and_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothing-here.pth"):
        registry.load_pretrained("efficientnetv2", tmp_path / "nothing-here.pth")
    monkeypatch.setattr(zfutils.pretrained, "cache_dir", lambda: tmp_path / "empty-cache")
    with pytest.raises(FileNotFoundError, match=efficientnetv2.FILE) as err:
        registry.load_pretrained("efficientnetv2", None)
    assert "empty-cache" in str(err.value) and "model.pretrained" in str(err.value)
    assert efficientnetv2.URL in str(err.value)
    cache = tmp_path / "hub" / "checkpoints"
    monkeypatch.setattr(zfutils.pretrained, "cache_dir", lambda: cache)
    written = own_file(cache / efficientnetv2.FILE, seed=3)
    state = registry.load_pretrained("efficientnetv2", "imagenet")["generator"]
    assert set(state) == set(written)


def test_gem_is_average_at_p1_and_tends_to_max():
    x = torch.tensor([[[[0.1, 0.5], [0.2, 0.9]], [[1.0, 3.0], [2.0, 4.0]]]])  # 1 image, 2 channels, 2x2
    assert torch.allclose(GeM(p=1.0)(x), x.mean(dim=(2, 3)), atol=1e-6)
    by_hand = x.pow(3).mean(dim=(2, 3)).pow(1 / 3)
    assert torch.allclose(GeM()(x), by_hand, atol=1e-6)  # the default p is 3
    gaps = [float((x.amax(dim=(2, 3)) - GeM(p=p)(x)).detach().max()) for p in (3.0, 20.0, 200.0, 2000.0)]
    assert all(g > 0 for g in gaps) and gaps == sorted(gaps, reverse=True) and gaps[-1] < 3e-3
    assert torch.isfinite(GeM(p=2000.0)(x * 1e3)).all()  # no overflow for large p or large values
    gem = GeM()
    gem(x).sum().backward()
    assert gem.p.grad is not None and torch.isfinite(gem.p.grad)


def test_dynamic_margins_by_hand():
    margins = dynamic_margins([1, 16, 81], low=0.05, high=0.5)  # n^(-1/4) = 1, 1/2, 1/3
    assert torch.allclose(margins, torch.tensor([0.5, 0.05 + 0.45 / 4, 0.05], dtype=torch.float64))
    assert torch.all(margins[:-1] > margins[1:])
    assert torch.equal(dynamic_margins([7, 7], low=0.05, high=0.5), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert dynamic_margins([0, 1, 16], low=1.0, high=2.0)[0] == 2.0  # no image counts as one
    head = SubCenterArcFaceDynamic(n_classes=3, embed_dim=4, margin_min=2.86, margin_max=28.6, class_counts=[1, 16, 81])
    assert torch.allclose(head.margins, torch.deg2rad(torch.tensor([28.6, 2.86 + 25.74 / 4, 2.86])))
    head.set_class_counts([5, 5, 5])
    assert torch.allclose(head.margins, torch.full((3,), math.radians(28.6)))
    with pytest.raises(ValueError, match="got 2 class counts for a head of 3 classes"):
        head.set_class_counts([1, 2])
    assert counts_per_class(["b", "a", "b", "c", "b"], ["a", "b", "c"]) == [1, 3, 1]


def _head_2d(angles_deg: list[list[float]], counts, *, low=10.0, high=30.0, scale=2.0):
    """A head in the plane whose class c has sub-centres at angles_deg[c]."""
    k = len(angles_deg[0])
    head = SubCenterArcFaceDynamic(n_classes=len(angles_deg), embed_dim=2, scale=scale, sub_centers=k,
                                   margin_min=low, margin_max=high, class_counts=counts)
    with torch.no_grad():
        a = torch.deg2rad(torch.tensor(angles_deg))
        head.weight.copy_(torch.stack([a.cos(), a.sin()], dim=-1) * 3.0)  # any length: only directions count
    return head


def _at(deg: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(deg)), math.sin(math.radians(deg))]]) * 0.7


def test_target_logit_is_scaled_cos_theta_plus_margin():
    head = _head_2d([[0.0], [90.0]], counts=[1, 16])  # margins: class 0 30 deg, class 1 10 deg
    z = _at(30.0)  # 30 deg from class 0, 60 deg from class 1
    plain = head.get_logits(z)
    assert torch.allclose(plain, 2.0 * torch.tensor([[math.cos(math.radians(30)), math.cos(math.radians(60))]]))
    for label, theta, other, m in [(0, 30.0, 60.0, 30.0), (1, 60.0, 30.0, 10.0)]:
        logits = head.margin_logits(z, torch.tensor([label]))
        assert logits[0, label].item() == pytest.approx(2.0 * math.cos(math.radians(theta + m)), abs=1e-5)
        assert logits[0, 1 - label].item() == pytest.approx(2.0 * math.cos(math.radians(other)), abs=1e-5)
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
        assert head(z, torch.tensor([label])).item() == pytest.approx(expected.item())


def test_past_pi_the_target_logit_keeps_falling():
    head = _head_2d([[0.0], [90.0]], counts=[1, 16])  # class 0: m = 30 deg
    m = math.radians(30.0)
    for theta in (160.0, 170.0):  # theta + m > 180 deg: cos(theta) - m sin(m)
        got = head.margin_logits(_at(theta), torch.tensor([0]))[0, 0].item()
        assert got == pytest.approx(2.0 * (math.cos(math.radians(theta)) - m * math.sin(m)), abs=1e-5)
    near = [head.margin_logits(_at(t), torch.tensor([0]))[0, 0].item() for t in (140.0, 149.0, 150.0, 151.0, 179.0)]
    assert near == sorted(near, reverse=True) and near[2] < -2.0  # decreasing in theta, below s * cos(pi) past pi - m
    assert near[2] == pytest.approx(2.0 * (-math.cos(m) - m * math.sin(m)), abs=1e-5)  # a step down at pi - m


def test_subcentre_max():
    head = _head_2d([[0.0, 180.0], [90.0, 270.0]], counts=[1, 1])  # two sub-centres per class
    z = _at(170.0)  # 10 deg from class 0's second sub-centre, 80 deg from class 1's first
    cos = head.get_cosine(z)
    assert torch.allclose(cos, torch.tensor([[math.cos(math.radians(10)), math.cos(math.radians(80))]]), atol=1e-6)
    target = head.margin_logits(z, torch.tensor([0]))[0, 0].item()  # uniform counts: m = margin_max = 30 deg
    assert target == pytest.approx(2.0 * math.cos(math.radians(10 + 30)), abs=1e-5)


def _classifier(name, **kwargs):
    torch.manual_seed(0)
    backbone = models.get(name)
    scale = {"width": 0.125, "blocks": 1} if backbone.family == "inpainting" else {}
    return Classifier(backbone=backbone, generator=backbone.build_generator(**scale), n_classes=3,
                      embed_dim=backbone.embed_dim(scale.get("width", 1.0)), **kwargs)


def test_pooling_options_add_no_state_except_gems_p():
    avg = _classifier("aotgan")
    assert avg.pooling == "avg" and not any("pool" in k for k in avg.state_dict())
    gem = _classifier("aotgan", pooling="gem")
    assert "encoder.pool.p" in gem.state_dict() and any(p is gem.encoder.pool.p for p in gem.encoder.parameters())
    with pytest.raises(ValueError, match="unknown classification pooling 'max'; known poolings: flatten, avg, gem"):
        _classifier("aotgan", pooling="max")
    model = _classifier("efficientnetv2", head="arcface_dynamic", pooling="gem", class_counts=[1, 16, 81])
    assert torch.allclose(model.head.margins, torch.deg2rad(torch.tensor([28.6, 2.86 + 25.74 / 4, 2.86])))
    image = torch.rand(4, 3, 64, 64)
    loss, logits = model.train().loss(image, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert logits.shape == (4, 3) and model.encoder.pool.p.grad is not None and model.head.weight.grad is not None
    with torch.no_grad():
        assert torch.equal(model.eval()(image).argmax(1), model.head.get_cosine(model.neck(model.embed(image))).argmax(1))


@pytest.mark.parametrize("mode", ["shallow", "deep"])
def test_dynamic_head_with_gem_learns(tiny, tmp_path, mode):  # noqa: F811
    train, _ = tiny
    model = _classifier("aotgan", head="arcface_dynamic", pooling="gem")
    counts = counts_per_class(train.rows["identity"], train.classes)
    model.set_class_counts(counts)
    saved_margins = model.head.margins.clone()
    trainer = ClassifierTrainer(model=model, mode=mode, run_dir=tmp_path, epochs=6, batch_size=8, lr_head=1e-2,
                                lr_encoder=1e-3, seed=0, stamp="t")
    trainer.fit(train, train, n_classes=3)
    history = [r for r in trainer.log.read() if r["kind"] == "epoch"]
    assert max(r["val_accuracy"] for r in history) > 0.6  # chance is 1/3
    assert (model.encoder.pool.p.item() == 3.0) == (mode == "shallow")  # p is an encoder parameter
    fresh = _classifier("aotgan", head="arcface_dynamic", pooling="gem")
    fresh.load_state_dict(torch.load(trainer.best_path, weights_only=False)["model"])
    assert torch.equal(fresh.head.margins, saved_margins)  # a checkpoint carries its margins


def test_other_heads_ignore_class_counts():
    model = _classifier("aotgan")
    model.set_class_counts([1, 2, 3])
    assert isinstance(model.head, nn.Linear)

"""LaMa's ResNet perceptual loss: the encoder has the released file's layout, loads it, and the
recipe uses it (or drops it, when asked to) on the prediction."""
import pytest
import torch
from torch import nn

import zfutils.pretrained as pretrained
from zfutils import config
from zfutils.models import get
from zfutils.resnet_pl import RESNET_PL_FILE, ResNetPLFeatures, find_resnet_pl_weights, resnet_pl_loss
from zfutils.train.recipe import LossRecipe

torch.set_num_threads(1)


def official_layout() -> dict[str, tuple]:
    """Tensor shapes of encoder_epoch_20.pth, from lama models/ade20k/resnet.py (ResNet: stem
    conv3x3 3->64 stride 2, 64->64, 64->128; Bottleneck expansion 4, blocks 3-4-6-3, inplanes 128
    after the stem) as wrapped by base.py ResnetDilated (no avgpool, no fc)."""
    def bn(name, c):
        return {f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")}

    shapes = {"conv1.weight": (64, 3, 3, 3), **bn("bn1", 64), "conv2.weight": (64, 64, 3, 3), **bn("bn2", 64),
              "conv3.weight": (128, 64, 3, 3), **bn("bn3", 128)}
    inplanes = 128
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes if b == 0 else planes * 4, 1, 1)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            shapes |= bn(f"{p}.bn1", planes) | bn(f"{p}.bn2", planes) | bn(f"{p}.bn3", planes * 4)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                shapes |= bn(f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4
    return shapes


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    """A full-size encoder file (~94 MB, written once) with random weights and BatchNorm statistics."""
    torch.manual_seed(0)
    state = ResNetPLFeatures().state_dict()
    for key, value in state.items():
        if key.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight", "running_var")):
            value.uniform_(0.5, 1.5)
        elif key.endswith(("bias", "running_mean")):
            value.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("ade20k") / RESNET_PL_FILE
    torch.save(state, path)
    yield path, state
    path.unlink()


def test_layout_matches_the_official_encoder_file():
    model = ResNetPLFeatures()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours == official_layout()
    assert sum(p.numel() for p in model.parameters()) == 23_631_808  # torchvision resnet50 - fc + deep stem


def test_dilated_stages_keep_output_stride_8_and_stay_frozen():
    model = ResNetPLFeatures()
    # base.py _nostride_dilate(dilate=2 / 4): the first block's 3x3 conv gets dilation 1 / 2, the others 2 / 4
    for stage, (first, rest) in {"layer3": (1, 2), "layer4": (2, 4)}.items():
        blocks = list(getattr(model, stage))
        assert [b.conv2.dilation[0] for b in blocks] == [first] + [rest] * (len(blocks) - 1)
        assert all(b.conv2.stride == (1, 1) for b in blocks) and blocks[0].downsample[0].stride == (1, 1)
    parent = nn.Sequential(nn.Conv2d(3, 3, 1), model)
    parent.train()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        feats = model(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 16, 16), (512, 8, 8), (1024, 8, 8), (2048, 8, 8)]


def test_the_file_loads_with_and_without_a_module_prefix(encoder_file, tmp_path):
    path, state = encoder_file
    loaded = ResNetPLFeatures(path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # DataParallel prefix, decoder keys, no num_batches_tracked: one constant per tensor (stride 0, a tiny file)
    layout = official_layout()
    prefixed = {f"module.{k}": torch.tensor(i / 1000).expand(shape) for i, (k, shape) in enumerate(layout.items())}
    prefixed["module.conv_last.0.weight"] = torch.zeros(()).expand(512, 4096, 3, 3)
    prefixed["module.ppm.0.1.weight"] = torch.zeros(1)
    torch.save(prefixed, tmp_path / "prefixed.pth")
    assert (tmp_path / "prefixed.pth").stat().st_size < 1_000_000
    loaded = ResNetPLFeatures(tmp_path / "prefixed.pth").state_dict()
    assert all(torch.all(loaded[k] == i / 1000) for i, k in enumerate(layout))


def test_a_wrong_file_is_named_in_the_error(tmp_path):
    torch.save({"ppm.0.1.weight": torch.zeros(512, 2048, 1, 1)}, tmp_path / "decoder_epoch_20.pth")
    with pytest.raises(ValueError, match=r"decoder_epoch_20\.pth is not the ADE20k resnet50dilated encoder"):
        ResNetPLFeatures(tmp_path / "decoder_epoch_20.pth")
    state = {k: torch.zeros(()).expand(shape) for k, shape in official_layout().items()}
    state["conv1.weight"] = torch.zeros(64, 3, 7, 7)  # torchvision's 7x7 stem, not the deep stem
    torch.save(state, tmp_path / "resnet50.pth")
    with pytest.raises(ValueError, match=r"resnet50\.pth does not match .*conv1\.weight \(64, 3, 7, 7\)"):
        ResNetPLFeatures(tmp_path / "resnet50.pth")


def test_missing_weights_error_names_the_file_and_the_parameter(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "cache_dir", lambda: tmp_path / "empty-cache")
    with pytest.raises(FileNotFoundError, match=r"encoder_epoch_20\.pth .*inpaint\.resnet_pl_weights.*"
                                                r"ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20\.pth"):
        find_resnet_pl_weights(None)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth \(from inpaint\.resnet_pl_weights\)"):
        find_resnet_pl_weights(tmp_path / "nowhere.pth")
    cfg = config.resolve("paper", "lama")["inpaint"]
    assert cfg["resnet_perceptual"] == 30.0 and cfg["missing_weights"] == "error"
    with pytest.raises(FileNotFoundError, match=r"encoder_epoch_20\.pth"):
        LossRecipe.from_config(cfg)
    (tmp_path / "empty-cache").mkdir()
    (tmp_path / "empty-cache" / RESNET_PL_FILE).write_bytes(b"")
    assert find_resnet_pl_weights(None) == tmp_path / "empty-cache" / RESNET_PL_FILE


def test_missing_weights_drop_lists_the_term(tmp_path):
    cfg = config.resolve("smoke", "lama", {"inpaint.resnet_pl_weights": str(tmp_path / "none.pth")})["inpaint"]
    recipe = LossRecipe.from_config(cfg)
    assert recipe.resnet_pl is None and recipe.dropped == ["resnet_perceptual"]
    assert recipe.terms()["resnet_perceptual"] == 0.0


def lama_batch():
    torch.manual_seed(0)
    b = get("lama")
    g, d = b.build_generator(width=0.125, blocks=1), b.build_discriminator(width=0.125)
    image, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    return b, g, d, image, mask


def test_recipe_adds_the_weighted_term_on_the_prediction(encoder_file):
    path, _ = encoder_file
    cfg = config.resolve("paper", "lama", {"inpaint.resnet_pl_weights": str(path)})["inpaint"]
    recipe = LossRecipe.from_config(cfg)
    assert recipe.resnet_pl is not None and recipe.dropped == [] and recipe.terms()["resnet_perceptual"] == 30.0
    b, g, d, image, mask = lama_batch()
    _, terms, result = recipe.generator_loss(b, g, d, image, mask)
    with torch.no_grad():
        target = recipe.resnet_pl(image)
        on_output = 30.0 * resnet_pl_loss(recipe.resnet_pl(result.output), target)
        on_composite = 30.0 * resnet_pl_loss(recipe.resnet_pl(result.composite), target)
    assert terms["resnet_perceptual"] > 0
    assert terms["resnet_perceptual"] == pytest.approx(float(on_output), rel=1e-5)
    assert float(on_composite) != pytest.approx(float(on_output), rel=1e-3)


def test_gradients_of_the_term_reach_the_generator_only(encoder_file):
    path, _ = encoder_file
    only_resnet = {"inpaint.resnet_pl_weights": str(path), "inpaint.l1.weight": 0.0,
                   "inpaint.adversarial.weight": 0.0, "inpaint.feature_matching.weight": 0.0}
    recipe = LossRecipe.from_config(config.resolve("paper", "lama", only_resnet)["inpaint"])
    b, g, d, image, mask = lama_batch()
    total, terms, _ = recipe.generator_loss(b, g, d, image, mask)
    assert set(k for k, v in terms.items() if v) == {"resnet_perceptual"}
    total.backward()
    assert sum(float(p.grad.abs().sum()) for p in g.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in recipe.resnet_pl.parameters())

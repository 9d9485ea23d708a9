"""LaMa big-lama: official layout, golden fidelity, checkpoint reading, scale knobs."""
import json
import subprocess
import sys

import pytest
import torch

from tests.reference import REFERENCE
from zfutils.models import lama, registry
from zfutils.models.checkpoints import CheckpointMismatch, load_strict
from zfutils.models.weight_rule import apply_rule, weight_sums

torch.set_num_threads(1)

SIZES = ["64x64", "96x128"]
RTOL = 1e-5                 # README section 5: preact and encoder features
OUTPUT_ATOL = 2e-4          # sigmoid output, absolute


class Hparams:
    """Stands in for the hyper-parameter objects a Lightning checkpoint pickles."""

    def __init__(self):
        self.lr = 1e-3


def manifest(name):
    path = REFERENCE / "checkpoint-keys" / f"lama-big-{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} is not available on this machine")
    return json.loads(path.read_text())


def golden(size):
    path = REFERENCE / "golden" / f"lama-big-{size}.pt"
    if not path.is_file():
        pytest.skip(f"{path} is not available on this machine")
    return torch.load(path, weights_only=True)


def rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def shapes(module, prefix):
    return {prefix + k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def generator():
    return apply_rule(lama.build_generator())


@pytest.fixture(scope="module")
def small():
    return lama.build_generator(width=0.25, blocks=2), lama.build_discriminator(width=0.25)


def test_registered():
    assert registry.get("lama") is lama.BACKBONE
    assert lama.BACKBONE.family == "inpainting" and "best.ckpt" in lama.BACKBONE.checkpoint_hint


def test_generator_layout_matches_manifest(generator):
    ref = manifest("generator")
    assert list(shapes(generator, "generator.")) == list(ref["state_dict"])
    assert shapes(generator, "generator.") == ref["state_dict"]
    assert sum(p.numel() for p in generator.parameters()) == ref["num_params"]
    assert sum(p.numel() for p in lama.encoder(generator).parameters()) == ref["encoder"]["num_params"]
    ints = {"generator." + k for k, v in generator.state_dict().items() if not torch.is_floating_point(v)}
    assert ints == set(ref["non_float_keys"])


def test_discriminator_layout_matches_manifest():
    ref = manifest("discriminator")
    disc = lama.build_discriminator()
    assert list(shapes(disc, "discriminator.")) == list(ref["state_dict"])
    assert shapes(disc, "discriminator.") == ref["state_dict"]
    logits, feats = lama.discriminate(disc.eval(), torch.rand(1, 3, 256, 256), torch.zeros(1, 1, 256, 256))
    assert list(logits.shape) == ref["output_shape"]
    assert [list(f.shape) for f in feats] == ref["feature_shapes"]


def test_weight_rule_reproduces_golden_sums(generator):
    check = golden("64x64")["weight_check"]
    sums = weight_sums(generator)
    assert list(sums) == check["keys"].split("\n")
    ours = torch.tensor(list(sums.values()), dtype=torch.float64)
    # float64 sums of identical float32 tensors differ only by summation order (thread count)
    noise = 64 * torch.finfo(torch.float64).eps * check["abs_sum"]
    assert ((ours[:, 0] - check["sum"]).abs() <= noise).all()
    assert ((ours[:, 1] - check["abs_sum"]).abs() <= noise).all()


@pytest.mark.parametrize("size", SIZES)
def test_golden_outputs(generator, size):
    ref = golden(size)
    x = ref["inputs"]["x"]
    with torch.no_grad():
        assert rel_err(generator.logits(x), ref["preact"]["output"]) < RTOL
        assert (generator(x) - ref["outputs"]["output"]).abs().max() < OUTPUT_ATOL
        local, global_ = generator.model[:6](x)
    assert rel_err(local, ref["encoder"]["model0_6_local"]) < RTOL
    assert rel_err(global_, ref["encoder"]["model0_6_global"]) < RTOL


@pytest.mark.parametrize("size", SIZES)
def test_inpaint_and_encoder_follow_the_input_convention(generator, size):
    ref = golden(size)
    image, mask = ref["inputs"]["image"], ref["inputs"]["mask"]
    seen = []
    hook = generator.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            result = lama.inpaint(generator, image, mask)
    finally:
        hook.remove()
    assert len(seen) == 1 and torch.equal(seen[0], ref["inputs"]["x"])
    assert (result.output - ref["outputs"]["output"]).abs().max() < OUTPUT_ATOL
    assert result.stages[-1] is result.output
    assert torch.equal(result.composite, mask * result.output + (1 - mask) * image)
    with torch.no_grad():
        feats = lama.encoder(generator)(lama.encoder_input(image, mask))
    assert feats.shape[1] == lama.embed_dim(1.0) == 512
    assert rel_err(feats[:, :128], ref["encoder"]["model0_5_local"]) < RTOL
    assert rel_err(feats[:, 128:], ref["encoder"]["model0_5_global"]) < RTOL


def test_inpaint_pads_sizes_the_network_cannot_take(small):
    gen = small[0].eval()
    image = torch.rand(1, 3, 8, 20)
    with torch.no_grad():
        result = lama.inpaint(gen, image, torch.zeros(1, 1, 8, 20))
    assert result.output.shape == (1, 3, 8, 20)
    assert torch.equal(result.composite, image)


def _lightning(path, state, **extra):
    torch.save({"epoch": 3, "global_step": 75000, "pytorch-lightning_version": "1.2.9",
                "state_dict": state, **extra}, path)
    return path


def test_released_checkpoint_loads(generator, tmp_path):
    state = {"generator." + k: v for k, v in generator.state_dict().items()}
    path = _lightning(tmp_path / "best.ckpt", state)
    loaded = lama.load_pretrained(path)
    assert loaded["discriminator"] is None
    fresh = load_strict(lama.build_generator(), loaded["generator"], source=str(path))
    key = "model.5.conv1.ffc.convg2g.fu.conv_layer.weight"
    assert torch.equal(fresh.state_dict()[key], generator.state_dict()[key])


def test_checkpoint_with_discriminator_and_loss_keys(small, tmp_path):
    gen, disc = small
    state = {"generator." + k: v for k, v in gen.state_dict().items()}
    state.update({"discriminator." + k: v for k, v in disc.state_dict().items()})
    state["loss_resnet_pl.impl.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    loaded = lama.load_pretrained(_lightning(tmp_path / "with-discr.ckpt", state))
    load_strict(lama.build_generator(width=0.25, blocks=2), loaded["generator"], source="gen")
    load_strict(lama.build_discriminator(width=0.25), loaded["discriminator"], source="disc")


def test_pickled_objects_need_trust(small, tmp_path):
    state = {"generator." + k: v for k, v in small[0].state_dict().items()}
    path = _lightning(tmp_path / "best.ckpt", state, hyper_parameters=Hparams())
    with pytest.raises(CheckpointMismatch, match="trust_pickle=True"):
        lama.load_pretrained(path)
    loaded = lama.load_pretrained(path, trust_pickle=True)
    load_strict(lama.build_generator(width=0.25, blocks=2), loaded["generator"], source=str(path))


# Loads best.ckpt files where omegaconf and Lightning cannot be imported; prints what it found.
NO_OMEGACONF = """
import json, sys
sys.modules["omegaconf"] = sys.modules["pytorch_lightning"] = None       # any import of them fails
import torch
from zfutils.models import lama
from zfutils.models.checkpoints import CheckpointMismatch, load_strict
good, tampered, expected = sys.argv[1:]
gen = load_strict(lama.build_generator(width=0.25, blocks=2),
                  lama.load_pretrained(good, trust_pickle=True)["generator"], source=good)
want = torch.load(expected, weights_only=True)
result = {"equal": all(torch.equal(v, want[k]) for k, v in gen.state_dict().items())}
try:
    load_strict(lama.build_generator(width=0.25, blocks=2),
                lama.load_pretrained(tampered, trust_pickle=True)["generator"], source=tampered)
except CheckpointMismatch as err:
    result["error"] = str(err)
print(json.dumps(result))
"""


def test_checkpoint_with_omegaconf_hyperparameters_loads_without_omegaconf(small, tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    hparams = omegaconf.OmegaConf.create({"generator": {"kind": "ffc_resnet", "ngf": 64, "n_blocks": 18},
                                          "losses": {"l1": {"weight_known": 10.0}}, "stages": [1, 2],
                                          "struct": omegaconf.SCMode.DICT})
    omegaconf.OmegaConf.set_readonly(hparams, True)
    state = {"generator." + k: v for k, v in small[0].state_dict().items()}
    good = _lightning(tmp_path / "best.ckpt", state, hyper_parameters=hparams, hparams_name="kwargs",
                      callbacks={omegaconf.ListConfig: {"best_model_score": torch.tensor(0.5)}})
    written = torch.load(good, weights_only=False)                       # real OmegaConf objects went in
    assert isinstance(written["hyper_parameters"], omegaconf.DictConfig)
    assert isinstance(written["hyper_parameters"]._get_node("stages"), omegaconf.ListConfig)
    state["generator.model.24.weight"] = torch.zeros(3, 3, 3, 3)
    state["generator.model.34.kernel"] = state.pop("generator.model.34.weight")
    tampered = _lightning(tmp_path / "tampered.ckpt", state, hyper_parameters=hparams)
    expected = tmp_path / "expected.pt"
    torch.save(small[0].state_dict(), expected)
    run = subprocess.run([sys.executable, "-c", NO_OMEGACONF, str(good), str(tampered), str(expected)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["equal"]
    assert result["error"].startswith(f"{tampered} does not match LamaGenerator: 1 missing: model.34.weight; "
                                      "1 unexpected: model.34.kernel; 1 misshapen (file vs model): "
                                      "('model.24.weight', (3, 3, 3, 3), ")


def test_mismatches_are_listed(small, tmp_path):
    state = {"generator." + k: v for k, v in small[0].state_dict().items()}
    state["generator.model.24.weight"] = torch.zeros(3, 3, 3, 3)
    state["generator.model.34.kernel"] = state.pop("generator.model.34.weight")
    loaded = lama.load_pretrained(_lightning(tmp_path / "bad.ckpt", state))
    with pytest.raises(CheckpointMismatch) as err:
        load_strict(lama.build_generator(width=0.25, blocks=2), loaded["generator"], source="bad.ckpt")
    for name in ("model.24.weight", "model.34.weight", "model.34.kernel"):
        assert name in str(err.value)
    with pytest.raises(CheckpointMismatch, match="generator"):
        lama.load_pretrained(_lightning(tmp_path / "other.ckpt", {"netG.weight": torch.zeros(1)}))


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere" / "best.ckpt"
    with pytest.raises(FileNotFoundError, match="big-lama") as err:
        lama.load_pretrained(path)
    assert str(path) in str(err.value)


def test_scale_keeps_official_names(generator, small):
    official = set(generator.state_dict())
    gen = small[0]
    assert set(gen.state_dict()) < official
    assert not any(k.startswith(("model.7.", "model.22.")) for k in gen.state_dict())
    assert "model.24.weight" in gen.state_dict()
    assert set(lama.build_generator(width=0.25).state_dict()) == official
    assert list(shapes(small[1], "")) == list(shapes(lama.build_discriminator(), ""))
    assert gen.state_dict()["model.4.bn_g.weight"].shape == (96,)        # 0.75 of 128
    assert lama.build_generator(width=0.125, blocks=19).model[23].__class__.__name__ == "FFCResnetBlock"


@pytest.mark.parametrize("hw", [(64, 64), (96, 128)])
def test_small_model_trains(small, hw):
    gen, disc = small
    gen.train(), disc.train()
    gen.zero_grad(set_to_none=True), disc.zero_grad(set_to_none=True)
    image, mask = torch.rand(2, 3, *hw), (torch.rand(2, 1, *hw) < 0.3).float()
    result = lama.inpaint(gen, image, mask)
    assert result.output.shape == result.composite.shape == image.shape
    assert 0 <= result.output.min() and result.output.max() <= 1
    logits, feats = lama.discriminate(disc, result.output, mask)
    loss = logits.mean() + sum(f.mean() for f in feats) + result.output.mean()
    loss.backward()
    for name, p in list(gen.named_parameters()) + list(disc.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    seen = []
    hook = lama.cam_layer(gen).register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        feats = lama.encoder(gen)(lama.encoder_input(image, torch.zeros_like(mask)))
    finally:
        hook.remove()
    assert feats.shape == (2, lama.embed_dim(0.25), hw[0] // 8, hw[1] // 8)
    assert len(seen) == 1 and seen[0] is feats          # the Grad-CAM target sees the whole map

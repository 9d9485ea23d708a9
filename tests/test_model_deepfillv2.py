"""DeepFillV2 (both official variants) against the reference manifests and golden vectors in
/work/shared/reference: keys, the weight rule, outputs at rtol 1e-5, checkpoint loading, scale knobs."""
import copy
import json
from collections import OrderedDict

import pytest
import torch

from tests.reference import REFERENCE
from zfutils.models import deepfillv2 as df
from zfutils.models.checkpoints import CheckpointMismatch, load_strict
from zfutils.models.registry import BACKBONES
from zfutils.models.weight_rule import apply_rule, weight_sums

torch.set_num_threads(1)

NAMES = {"pt": "deepfillv2", "tf": "deepfillv2-tf"}
SIZES = ["64x64", "96x128"]
RTOL = 1e-5  # README section 5: not looser, attention mistakes sit at 1e-4

pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"{REFERENCE} (golden vectors) is not here")


def manifest(variant, net):
    return json.loads((REFERENCE / "checkpoint-keys" / f"{NAMES[variant]}-{net}.json").read_text())


def golden(variant, size):
    return torch.load(REFERENCE / "golden" / f"{NAMES[variant]}-{size}.pt", weights_only=True)


def rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def official():
    """Official-size networks of both variants, generators filled by the weight rule."""
    return {v: {"generator": apply_rule(df.build_generator(variant=v)),
                "discriminator": df.build_discriminator(variant=v)} for v in NAMES}


@pytest.mark.parametrize("net", ["generator", "discriminator"])
@pytest.mark.parametrize("variant", list(NAMES))
def test_state_dict_matches_manifest(official, variant, net):
    ours = [(k, list(v.shape)) for k, v in official[variant][net].state_dict().items()]
    assert ours == list(manifest(variant, net)["state_dict"].items())


@pytest.mark.parametrize("variant", list(NAMES))
def test_weight_rule_reproduces_golden_sums(official, variant):
    sums = weight_sums(official[variant]["generator"])
    for size in SIZES:
        check = golden(variant, size)["weight_check"]
        assert check["keys"] == "\n".join(sums)
        # float64 sums of identical tensors; the last bit depends on the reduction's thread split
        torch.testing.assert_close(torch.tensor([s for s, _ in sums.values()], dtype=torch.float64),
                                   check["sum"], rtol=1e-12, atol=0)
        torch.testing.assert_close(torch.tensor([a for _, a in sums.values()], dtype=torch.float64),
                                   check["abs_sum"], rtol=1e-12, atol=0)


def run_with_preact(generator, x, mask):
    preact = []
    hooks = [conv.register_forward_hook(lambda m, i, out: preact.append(out)) for conv in generator.output_convs()]
    try:
        with torch.no_grad():
            outputs = generator(x, mask)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs, preact


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", list(NAMES))
def test_golden_outputs_and_encoder(official, variant, size):
    G, ref = official[variant]["generator"], golden(variant, size)
    image, mask, x = ref["inputs"]["image"], ref["inputs"]["mask"], ref["inputs"]["x"]
    (s1, s2), preact = run_with_preact(G, x, mask)
    errors = {"x_stage1": rel_err(s1, ref["outputs"]["x_stage1"]), "x_stage2": rel_err(s2, ref["outputs"]["x_stage2"]),
              "preact_stage1": rel_err(preact[0], ref["preact"]["x_stage1"]),
              "preact_stage2": rel_err(preact[1], ref["preact"]["x_stage2"])}
    with torch.no_grad():
        features = df.encoder(G)(df.network_input(image, mask))
    errors["encoder"] = rel_err(features, ref["encoder"]["output"])
    assert max(errors.values()) < RTOL, errors
    assert features.shape[1] == df.embed_dim(1.0)


@pytest.mark.parametrize("variant", list(NAMES))
def test_inpaint_builds_the_official_input(official, variant):
    G, ref = official[variant]["generator"], golden(variant, "96x128")
    image, mask = ref["inputs"]["image"], ref["inputs"]["mask"]
    seen = []
    hook = G.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            result = df.inpaint(G, image, mask)
    finally:
        hook.remove()
    assert torch.equal(seen[0], ref["inputs"]["x"])
    assert torch.equal(df.BACKBONE.encoder_input(image, mask), ref["inputs"]["x"])
    coarse, fine = [(ref["outputs"][k] + 1) / 2 for k in ("x_stage1", "x_stage2")]
    assert len(result.stages) == 2 and result.output is result.stages[-1]
    assert rel_err(result.stages[0], coarse) < RTOL and rel_err(result.stages[1], fine) < RTOL
    torch.testing.assert_close(result.composite, image * (1 - mask) + result.output * mask, rtol=0, atol=0)


def test_fuse_weight_comes_from_the_state_dict(official):
    """eye(3), the constructor's value, instead of the loaded buffer must be caught at RTOL."""
    G = copy.deepcopy(official["pt"]["generator"])
    assert "stage2.contextual_attention.fuse_weight" in G.state_dict()
    ref = golden("pt", "64x64")
    G.stage2.contextual_attention.fuse_weight.copy_(torch.eye(3).view(1, 1, 3, 3))
    with torch.no_grad():
        _, s2 = G(ref["inputs"]["x"], ref["inputs"]["mask"])
    assert rel_err(s2, ref["outputs"]["x_stage2"]) > 10 * RTOL


def save(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("variant", list(NAMES))
def test_load_pretrained_official_containers(official, variant, tmp_path):
    G, D = official[variant]["generator"], official[variant]["discriminator"]
    if variant == "pt":  # what train.py's save_states writes
        optim = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1e-4, betas=(0.5, 0.999)).state_dict()
        container = {"G": G.state_dict(), "D": D.state_dict(), "G_optim": optim, "D_optim": optim, "n_iter": 7}
    else:  # the converted TF release may hold the generator only
        container = {"G": G.state_dict()}
    loaded = df.load_pretrained(save(tmp_path / "states.pth", container))
    assert loaded["variant"] == variant
    fresh = load_strict(df.build_generator(variant=loaded["variant"]), loaded["generator"], source="states.pth")
    assert torch.equal(fresh.state_dict()["conv1.conv.bias" if variant == "tf" else "stage1.conv1.conv.bias"],
                       G.state_dict()["conv1.conv.bias" if variant == "tf" else "stage1.conv1.conv.bias"])
    if variant == "pt":
        load_strict(df.build_discriminator(), loaded["discriminator"], source="states.pth")
    else:
        assert loaded["discriminator"] is None


def test_load_pretrained_reports_mismatches(official, tmp_path):
    state = OrderedDict(official["pt"]["generator"].state_dict())
    del state["stage2.conv_bn7.conv.bias"]
    state["stage2.extra.weight"] = torch.zeros(1)
    state["stage1.conv_to_rgb.conv.weight"] = torch.zeros(3, 13, 3, 3)
    loaded = df.load_pretrained(save(tmp_path / "bad.pth", {"G": state}))
    with pytest.raises(CheckpointMismatch) as err:
        load_strict(df.build_generator(variant=loaded["variant"]), loaded["generator"], source="bad.pth")
    for key in ("stage2.conv_bn7.conv.bias", "stage2.extra.weight", "stage1.conv_to_rgb.conv.weight", "bad.pth"):
        assert key in str(err.value)
    with pytest.raises(CheckpointMismatch, match="'G'"):
        df.load_pretrained(save(tmp_path / "raw.pth", {"generator": state}))


def test_load_pretrained_missing_file_names_it(tmp_path):
    missing = tmp_path / "states_pt_places2.pth"
    with pytest.raises(FileNotFoundError) as err:
        df.load_pretrained(missing)
    assert str(missing) in str(err.value) and "deepfillv2-pytorch" in str(err.value)


@pytest.mark.parametrize("variant", list(NAMES))
def test_scaled_networks_keep_names_and_train(official, variant):
    torch.manual_seed(0)
    G = df.build_generator(width=0.25, blocks=1, variant=variant).train()
    D = df.build_discriminator(width=0.25, variant=variant)
    assert set(G.state_dict()) < set(official[variant]["generator"].state_dict())
    assert list(D.state_dict()) == list(official[variant]["discriminator"].state_dict())
    for h, w in [(64, 64), (96, 128)]:
        image, mask = torch.rand(2, 3, h, w), (torch.rand(2, 1, h, w) < 0.3).float()
        result = df.inpaint(G, image, mask)
        logits, feats = df.discriminate(D, result.composite, mask)
        features = df.encoder(G)(df.BACKBONE.encoder_input(image, torch.zeros_like(mask)))
        assert [s.shape for s in result.stages] == [image.shape] * 2 and feats == []
        assert features.shape == (2, df.embed_dim(0.25), h // 4, w // 4)
        assert logits.shape[0] == 2
        G.zero_grad(), D.zero_grad()
        (sum(s.mean() for s in result.stages) + logits.mean() + features.mean()).backward()
        no_grad = [n for n, p in [*G.named_parameters(), *D.named_parameters()] if p.grad is None]
        assert not no_grad, no_grad
    assert df.cam_layer(G) is df.encoder(G).layers[-1]


def test_knob_limits_and_odd_sizes():
    assert len(df.build_generator(width=0.25, blocks=0).state_dict()) == 85 - 2 * 4 * 2
    with pytest.raises(ValueError, match="blocks=5"):
        df.build_generator(blocks=5)
    with pytest.raises(ValueError, match="variant"):
        df.build_generator(variant="caffe")
    G = df.build_generator(width=0.25, blocks=1).eval()
    with torch.no_grad():
        result = df.inpaint(G, torch.rand(1, 3, 60, 44), torch.zeros(1, 1, 60, 44))
    assert result.output.shape == (1, 3, 60, 44)
    assert 0 <= result.output.min() and result.output.max() <= 1


def test_backbone_is_registered_with_training_facts():
    backbone = BACKBONES["deepfillv2"]
    assert backbone is df.BACKBONE and backbone.family == "inpainting"
    assert "states_pt_places2.pth" in backbone.checkpoint_hint
    assert df.TRAINING["optimizer"] == {"name": "adam", "lr_g": 1e-4, "lr_d": 1e-4,
                                        "betas_g": (0.5, 0.999), "betas_d": (0.5, 0.999)}
    assert df.TRAINING["adversarial"]["type"] == "hinge" and df.TRAINING["l1"]["stages"] == (1.0, 1.0)


def test_batch_samples_use_their_own_masks(official):
    G, ref = official["pt"]["generator"], golden("pt", "64x64")
    image, mask = ref["inputs"]["image"], ref["inputs"]["mask"]
    other = torch.zeros_like(mask)
    other[..., 8:40, 24:56] = 1
    with torch.no_grad():
        batch = df.inpaint(G, image.expand(2, -1, -1, -1), torch.cat([mask, other]))
        alone = df.inpaint(G, image, other)
    assert rel_err(batch.stages[1][:1] * 2 - 1, ref["outputs"]["x_stage2"]) < RTOL
    assert rel_err(batch.stages[1][1:], alone.stages[1]) < 1e-6


def test_spectral_norm_renormalises_weights_in_place():
    D = df.build_discriminator(width=0.25)
    conv = D.conv1.conv_sn
    a, b = torch.randn(conv.out_channels), torch.randn(conv.weight[0].numel())
    with torch.no_grad():
        conv.weight.copy_(5 * torch.outer(a, b).view_as(conv.weight))  # rank 1: one power iteration is exact
    image, mask = torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)
    real, _ = df.discriminate(D, image, mask)
    fake, _ = df.discriminate(D, image.flip(-1), mask)
    assert torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(conv.weight_u.abs().flatten(), (a / a.norm()).abs(), atol=1e-6)
    (real.mean() - fake.mean()).backward()  # two calls, one backward
    assert conv.weight.grad is not None

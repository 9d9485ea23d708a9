"""EdgeConnect: official keys and shapes of both generators and discriminators, the golden outputs of
the official code under the weight rule, the joint pipeline's inputs, the Canny edges, spectral norm
in eval mode, the checkpoint format, and the scale knobs."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import pre_1_0_spectral_norm
from tests.reference import REFERENCE, needs_reference
from zfutils.models import edgeconnect as ec
from zfutils.models import registry
from zfutils.models.checkpoints import CheckpointMismatch, load_strict
from zfutils.models.edgeconnect_edges import gray_and_edges
from zfutils.models.weight_rule import apply_rule, weight_sums

torch.set_num_threads(1)

SIZES = ["64x64", "96x128"]
PARTS = ["edge", "inpaint"]


def _manifest(part, net):
    return json.loads((REFERENCE / "checkpoint-keys" / f"edgeconnect-{part}-{net}.json").read_text())


def _golden(part, size):
    return torch.load(REFERENCE / "golden" / f"edgeconnect-{part}-{size}.pt", weights_only=True)


def _rel(ours, golden):
    return ((ours - golden).abs().max() / golden.abs().max()).item()


@pytest.fixture(scope="module")
def rule_generator():
    generator = ec.build_generator()
    apply_rule(generator.edge)
    apply_rule(generator.inpaint)
    return generator.eval()


@pytest.fixture(scope="module")
def discriminator():
    return ec.build_discriminator()


def test_registered_with_every_field():
    backbone = registry.get("edgeconnect")
    assert backbone is ec.BACKBONE and backbone.family == "inpainting"
    network_fields = [f for f in backbone.__dataclass_fields__ if f != "matcher"]  # matcher: matching methods only
    assert all(getattr(backbone, f) is not None for f in network_fields) and backbone.matcher is None
    assert "EdgeModel_gen.pth" in backbone.checkpoint_hint and "InpaintingModel_gen.pth" in backbone.checkpoint_hint


@needs_reference
@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_state_dict_matches_manifests(net, rule_generator, discriminator):
    module = rule_generator if net == "generator" else discriminator
    expected = [(f"{part}.{k}", shape) for part in PARTS for k, shape in _manifest(part, net)["state_dict"].items()]
    assert [(k, list(v.shape)) for k, v in module.state_dict().items()] == expected
    for part in PARTS:
        own = sum(p.numel() for p in getattr(module, part).parameters())
        assert own == _manifest(part, net)["num_params"]
    assert discriminator.edge.features is discriminator.edge.conv1  # official alias, both names stored


@needs_reference
@pytest.mark.parametrize("part", PARTS)
def test_weight_rule_reproduces_golden_sums(part, rule_generator):
    check = _golden(part, "64x64")["weight_check"]
    sums = weight_sums(getattr(rule_generator, part))
    assert list(sums) == check["keys"].split("\n")
    for i, (key, (total, abs_total)) in enumerate(sums.items()):
        # float64 sums of equal tensors can differ in the last bit with the thread count (golden: 2)
        assert math.isclose(total, check["sum"][i].item(), rel_tol=1e-12, abs_tol=1e-12), key
        assert math.isclose(abs_total, check["abs_sum"][i].item(), rel_tol=1e-12), key


@needs_reference
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("part", PARTS)
def test_golden_outputs(part, size, rule_generator):
    gold = _golden(part, size)
    net = getattr(rule_generator, part)
    captured = {}
    hook = net.decoder.register_forward_hook(lambda m, i, o: captured.update(preact=o))
    try:
        with torch.no_grad():
            output = net(gold["inputs"]["x"])
            features = net.encoder(gold["inputs"]["x"])
    finally:
        hook.remove()
    assert _rel(output, gold["outputs"]["output"]) <= 1e-5
    assert _rel(captured["preact"], gold["preact"]["output"]) <= 1e-5
    assert _rel(features, gold["encoder"]["output"]) <= 1e-5


@needs_reference
@pytest.mark.parametrize("size", SIZES)
def test_inpaint_runs_the_joint_pipeline_on_official_inputs(size, rule_generator):
    edge_gold, inpaint_gold = _golden("edge", size), _golden("inpaint", size)
    image, mask = edge_gold["inputs"]["image"], edge_gold["inputs"]["mask"]
    seen = {}
    hooks = [getattr(rule_generator, p).register_forward_hook(
        lambda m, i, o, p=p: seen.update({p: (i[0], o)})) for p in PARTS]
    try:
        with torch.no_grad():
            result = ec.inpaint(rule_generator, image, mask)
    finally:
        for hook in hooks:
            hook.remove()
    edge_in, edge_out = seen["edge"]
    inpaint_in, inpaint_out = seen["inpaint"]
    assert torch.equal(edge_in, edge_gold["inputs"]["x"])                  # gray, Canny and mask as the original
    assert _rel(edge_out, edge_gold["outputs"]["output"]) <= 1e-5
    merged = edge_out * mask + edge_gold["inputs"]["edges"] * (1 - mask)
    assert torch.equal(inpaint_in[:, :3], inpaint_gold["inputs"]["x"][:, :3])
    assert torch.equal(inpaint_in[:, 3:], merged) and torch.equal(result.extras["edges"], merged)
    assert torch.equal(result.extras["edge_output"], edge_out) and torch.equal(result.output, inpaint_out)
    assert result.stages == [result.output]
    assert torch.equal(result.composite, inpaint_out * mask + image * (1 - mask))
    assert all(0 <= t.min() and t.max() <= 1 for t in [result.output, result.composite, *result.extras.values()])
    x = ec.encoder_input(image, mask)
    assert torch.equal(x, inpaint_gold["inputs"]["x"])
    with torch.no_grad():
        assert _rel(ec.encoder(rule_generator)(x), inpaint_gold["encoder"]["output"]) <= 1e-5


@needs_reference
@pytest.mark.parametrize("size", SIZES)
def test_gray_and_canny_agree_with_the_stored_inputs(size):
    inputs = _golden("edge", size)["inputs"]
    gray, edges = gray_and_edges(inputs["image"])
    assert torch.equal(gray, inputs["gray"])
    assert (edges == inputs["edges"]).float().mean() >= 0.99 and set(edges.unique().tolist()) <= {0.0, 1.0}


def test_spectral_norm_in_eval_mode_uses_stored_vectors(rule_generator):
    x = torch.rand(1, 256, 5, 6)
    for conv, transposed in [(rule_generator.edge.middle[0].conv_block[1], False),
                             (rule_generator.edge.decoder[0], True)]:
        u, v, w = conv.weight_u.clone(), conv.weight_v.clone(), conv.weight_orig
        mat = (w.transpose(0, 1) if transposed else w).reshape(u.numel(), -1)
        weight = w / torch.dot(u, mat @ v)
        with torch.no_grad():
            ours = conv(x)
            want = (F.conv_transpose2d(x, weight, conv.bias, stride=2, padding=1) if transposed
                    else F.conv2d(x, weight, conv.bias, dilation=2))
        assert _rel(ours, want) <= 1e-6
        assert torch.equal(conv.weight_u, u) and torch.equal(conv.weight_v, v)  # no power iteration


def _write(folder, parts):
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in parts.items():
        torch.save(payload, folder / name)


def _split(state, part):
    return {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}


def test_load_pretrained_reads_the_official_files(tmp_path, rule_generator, discriminator):
    gen, dis = rule_generator.state_dict(), discriminator.state_dict()
    _write(tmp_path / "ckpt", {"EdgeModel_gen.pth": {"iteration": 7, "generator": _split(gen, "edge")},
                               "InpaintingModel_gen.pth": {"iteration": 7, "generator": _split(gen, "inpaint")}})
    loaded = ec.load_pretrained(tmp_path / "ckpt")
    assert loaded["discriminator"] is None
    fresh = load_strict(ec.build_generator(), loaded["generator"], source="test")
    assert all(torch.equal(v, gen[k]) for k, v in fresh.state_dict().items())
    _write(tmp_path / "ckpt", {"EdgeModel_dis.pth": {"discriminator": _split(dis, "edge")},
                               "InpaintingModel_dis.pth": {"discriminator": _split(dis, "inpaint")}})
    loaded = ec.load_pretrained(tmp_path / "ckpt" / "EdgeModel_gen.pth")  # a file in the folder works too
    load_strict(ec.build_discriminator(), loaded["discriminator"], source="test")


def test_load_pretrained_accepts_data_parallel_files(tmp_path):
    small = ec.build_generator(width=0.25, blocks=1)
    state = small.state_dict()
    _write(tmp_path, {f"{ec.FILES[p]}_gen.pth": {"iteration": 1, "generator": {
        "module." + k: v for k, v in _split(state, p).items()}} for p in PARTS})
    load_strict(ec.build_generator(width=0.25, blocks=1), ec.load_pretrained(tmp_path)["generator"], source="test")


def test_load_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="EdgeModel_gen.pth") as err:
        ec.load_pretrained(tmp_path / "nowhere")
    assert "drive.google.com" in str(err.value)
    small = ec.build_generator(width=0.25, blocks=1)
    state = small.state_dict()
    _write(tmp_path, {"EdgeModel_gen.pth": {"iteration": 1, "generator": _split(state, "edge")}})
    with pytest.raises(FileNotFoundError, match="InpaintingModel_gen.pth"):
        ec.load_pretrained(tmp_path)
    _write(tmp_path, {"InpaintingModel_gen.pth": {"iteration": 1, "generator": _split(state, "inpaint")},
                      "EdgeModel_dis.pth": {"discriminator": {}}})
    with pytest.raises(FileNotFoundError, match="InpaintingModel_dis.pth"):
        ec.load_pretrained(tmp_path)
    (tmp_path / "EdgeModel_dis.pth").unlink()
    _write(tmp_path / "wrong", {"EdgeModel_gen.pth": {"generator": _split(state, "edge")},
                                "InpaintingModel_gen.pth": {"state_dict": _split(state, "inpaint")}})
    with pytest.raises(CheckpointMismatch, match="'generator'"):
        ec.load_pretrained(tmp_path / "wrong")
    loaded = ec.load_pretrained(tmp_path)["generator"]
    bad = dict(loaded)
    bad["inpaint.encoder.1.bias"] = torch.zeros(3)
    del bad["edge.decoder.7.bias"]
    bad["edge.encoder.1.weight"] = bad.pop("edge.encoder.1.weight_v")   # torch < 1.0's layout, misshapen
    with pytest.raises(CheckpointMismatch) as err:
        load_strict(ec.build_generator(width=0.25, blocks=1), bad, source="EdgeModel_gen.pth")
    message = str(err.value)
    assert "1 missing: edge.decoder.7.bias; 2 misshapen (file vs model): ('edge.encoder.1.weight', (147,), " \
           "(16, 3, 7, 7)), ('inpaint.encoder.1.bias', (3,), (16,))." in message


def _one_training_step(gen, dis):
    """The power iteration a saved model has had: weight_u and weight_v no longer random."""
    image, mask = torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) < 0.3).float()
    with torch.no_grad():
        result = ec.inpaint(gen.train(), image, mask)
        ec.discriminate(dis.train(), image, mask)
        ec.discriminate_edges(dis, result.extras["gray"], result.extras["canny"])
    return gen.eval(), dis.eval()


def _save_pre_1_6(folder, gen, dis):
    """The release files as old torch wrote them: the non-zip format (torch < 1.6), spectral-norm
    layers in torch < 1.0's layout (weight_orig, weight_u, weight)."""
    folder.mkdir(parents=True, exist_ok=True)
    old_gen, old_dis = pre_1_0_spectral_norm(gen), pre_1_0_spectral_norm(dis)
    for part in PARTS:
        torch.save({"iteration": 5, "generator": _split(old_gen, part)}, folder / f"{ec.FILES[part]}_gen.pth",
                   _use_new_zipfile_serialization=False)
        torch.save({"discriminator": _split(old_dis, part)}, folder / f"{ec.FILES[part]}_dis.pth",
                   _use_new_zipfile_serialization=False)
    return old_gen


def test_pre_1_0_spectral_norm_checkpoints_load_and_compute_the_same(tmp_path):
    torch.manual_seed(0)
    gen, dis = _one_training_step(ec.build_generator(width=0.25, blocks=1), ec.build_discriminator(width=0.25))
    old_gen = _save_pre_1_6(tmp_path, gen, dis)
    assert "edge.encoder.1.weight" in old_gen and "edge.encoder.1.weight_v" not in old_gen
    loaded = ec.load_pretrained(tmp_path)
    torch.manual_seed(1)
    fresh_gen = load_strict(ec.build_generator(width=0.25, blocks=1), loaded["generator"], source="gen").eval()
    fresh_dis = load_strict(ec.build_discriminator(width=0.25), loaded["discriminator"], source="dis").eval()
    assert list(fresh_gen.state_dict()) == list(gen.state_dict())       # weight_v is back, computed by torch
    image, mask = torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) < 0.3).float()
    with torch.no_grad():
        want, got = ec.inpaint(gen, image, mask), ec.inpaint(fresh_gen, image, mask)
        assert _rel(got.extras["edge_output"], want.extras["edge_output"]) <= 1e-5
        assert _rel(got.output, want.output) <= 1e-5
        for part in PARTS:
            x = torch.rand(1, 3 if part == "inpaint" else 2, 64, 64)
            assert _rel(getattr(fresh_dis, part)(x)[0], getattr(dis, part)(x)[0]) <= 1e-5


def test_pre_1_0_checkpoints_of_the_wrong_model_or_tampered_fail_clearly(tmp_path):
    torch.manual_seed(0)
    gen, dis = _one_training_step(ec.build_generator(width=0.25, blocks=1), ec.build_discriminator(width=0.25))
    _save_pre_1_6(tmp_path, gen, dis)
    loaded = ec.load_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatch, match=r"EdgeConnectGenerator: 42 misshapen \(file vs model\)") as err:
        load_strict(ec.build_generator(width=0.5, blocks=1), loaded["generator"], source="EdgeModel_gen.pth")
    assert "('edge.encoder.1.weight_orig', (16, 3, 7, 7), (32, 3, 7, 7))" in str(err.value)
    assert "('edge.encoder.1.weight', (16, 3, 7, 7), (32, 3, 7, 7))" in str(err.value)
    with pytest.raises(CheckpointMismatch, match="does not match EdgeConnectDiscriminator: 36 missing: edge.conv1.0"
                                                 ".weight_orig, .* 44 unexpected: edge.encoder.1.bias") as err:
        load_strict(ec.build_discriminator(width=0.25), loaded["generator"], source="EdgeModel_gen.pth")
    assert "Spectral-norm layers" not in str(err.value)           # the layout hint only where it helps
    bad = dict(loaded["generator"])
    bad["edge.middle.0.conv_block.1.weight_x"] = bad.pop("edge.middle.0.conv_block.1.weight_u")
    bad["edge.decoder.0.weight"] = torch.zeros(64, 32, 3, 3)
    with pytest.raises(CheckpointMismatch) as err:
        load_strict(ec.build_generator(width=0.25, blocks=1), bad, source="EdgeModel_gen.pth")
    message = str(err.value)
    assert message.startswith("EdgeModel_gen.pth does not match EdgeConnectGenerator: 2 missing: "
                              "edge.middle.0.conv_block.1.weight_u, edge.middle.0.conv_block.1.weight_v; 2 unexpected: "
                              "edge.middle.0.conv_block.1.weight, edge.middle.0.conv_block.1.weight_x; 1 misshapen "
                              "(file vs model): ('edge.decoder.0.weight', (64, 32, 3, 3), (64, 32, 4, 4)).")
    assert "torch < 1.0's weight_orig, weight_u, weight" in message


@pytest.mark.parametrize("blocks", [None, 2])
def test_scaled_models_keep_official_names(blocks, rule_generator, discriminator):
    small_g, small_d = ec.build_generator(width=0.25, blocks=blocks), ec.build_discriminator(width=0.25)
    names, official = list(small_g.state_dict()), list(rule_generator.state_dict())
    assert names == official if blocks is None else set(names) < set(official)
    assert list(small_d.state_dict()) == list(discriminator.state_dict())
    assert small_g.edge.encoder[7].weight_orig.shape[0] == ec.embed_dim(0.25) == 64
    assert ec.cam_layer(small_g) is ec.encoder(small_g)[7] and ec.embed_dim() == 256


@pytest.mark.parametrize("size", [(64, 64), (96, 128), (8, 16), (20, 36)])
def test_scaled_forward_backward_reaches_every_parameter(size):
    torch.manual_seed(0)
    gen, dis = ec.build_generator(width=0.25, blocks=2).train(), ec.build_discriminator(width=0.25).train()
    h, w = size
    image, mask = torch.rand(2, 3, h, w), (torch.rand(2, 1, h, w) < 0.3).float()
    result = ec.inpaint(gen, image, mask)
    assert result.output.shape == image.shape and result.extras["edges"].shape == mask.shape
    loss = result.output.mean()
    if h >= 64:
        logits, feats = ec.discriminate(dis, result.output, mask)
        edge_logits, edge_feats = ec.discriminate_edges(dis, result.extras["gray"], result.extras["edge_output"])
        assert len(feats) == len(edge_feats) == 5 and logits.shape == edge_logits.shape == (2, 1, h // 8 - 2, w // 8 - 2)
        loss = loss + logits.mean() + edge_logits.mean() + sum(f.mean() for f in feats + edge_feats)
        features = ec.encoder(gen)(ec.encoder_input(image, torch.zeros_like(mask)))
        assert features.shape == (2, ec.embed_dim(0.25), h // 4, w // 4)
        loss = loss + features.mean()
    loss.backward()
    modules = [gen, dis] if h >= 64 else [gen]
    missing = [n for m in modules for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing

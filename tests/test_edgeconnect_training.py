"""EdgeConnect trains as its MODEL=4 (joint) does: the edge generator with its own adversarial and
feature-matching losses against its own discriminator, and the inpainting losses reaching it through
the undetached edges; MODEL=3 (edge_inpaint) detaches them and trains the inpainting pair alone. The
edge networks and their optimiser state are saved and resumed with the rest, the mode is recorded,
and a config without a valid mode is refused."""
import pytest
import torch
import torch.nn.functional as F

from tests.test_torchsets import split_data
from zfutils import config, losses
from zfutils.data.torchsets import InpaintingSet
from zfutils.models import get
from zfutils.models.edgeconnect_training import AUXILIARY, discriminate_edges
from zfutils.train.checkpoint import load_checkpoint
from zfutils.train.inpaint import InpaintTrainer
from zfutils.train.recipe import LossRecipe

NO_VGG = {"inpaint.perceptual.weight": 0.0, "inpaint.style.weight": 0.0}  # the VGG19 terms are not under test


def ec_cfg(mode="joint", **overrides):
    return config.resolve("smoke", "edgeconnect", {**NO_VGG, "inpaint.edge_model.mode": mode, **overrides})["inpaint"]


def ec_nets(mode="joint"):
    torch.manual_seed(0)
    backbone, recipe = get("edgeconnect"), LossRecipe.from_config(ec_cfg(mode))
    generator, discriminator = backbone.build_generator(width=0.125, blocks=1), backbone.build_discriminator(width=0.125)
    recipe.configure(backbone, generator)
    image, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 6:20] = 1
    return backbone, recipe, generator.train(), discriminator, image, mask


def has_grad(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_edge_generator_learns_from_its_own_adversarial_and_feature_matching_losses():
    backbone, recipe, g, d, image, mask = ec_nets()
    d.eval()  # no spectral-norm power iteration: the manual computation below sees the same weights
    result = backbone.inpaint(g, image, mask)
    _, terms, _ = recipe.generator_loss(backbone, g, d, image, mask, result=result)
    gray, canny, predicted = (result.extras[k] for k in ("gray", "canny", "edge_output"))
    with torch.no_grad():
        fake, fake_feats = discriminate_edges(d, gray, predicted)
        _, real_feats = discriminate_edges(d, gray, canny)
    assert terms["edge_adversarial"] == pytest.approx(float(F.softplus(-fake).mean()), rel=1e-5)  # weight 1
    assert terms["edge_feature_matching"] == pytest.approx(
        10.0 * float(sum(F.l1_loss(f, r) for f, r in zip(fake_feats, real_feats))), rel=1e-5)  # x10, summed over 5 layers
    own = AUXILIARY.generator_terms(recipe.cfg["edge_model"], "joint", d, image, mask, result)
    sum(own.values()).backward()
    assert has_grad(g.edge) and not has_grad(g.inpaint)


@pytest.mark.parametrize("mode, reaches_edges", [("joint", True), ("edge_inpaint", False)])
def test_inpainting_losses_reach_the_edge_generator_only_in_joint_mode(mode, reaches_edges):
    """MODEL=4 hands the inpainter the edge output undetached (src/edge_connect.py:163-164), MODEL=3 detached (145)."""
    backbone, recipe, g, d, image, mask = ec_nets(mode)
    total, terms, _ = recipe.generator_loss(backbone, g, d, image, mask, with_auxiliary=False)
    assert not any(k.startswith("edge_") for k in terms)
    total.backward()
    assert has_grad(g.inpaint) and has_grad(g.edge) == reaches_edges


def test_edge_discriminator_judges_canny_edges_real_and_the_raw_edge_output_fake():
    backbone, recipe, g, d, image, mask = ec_nets()
    d.eval()
    result = backbone.inpaint(g, image, mask)
    _, terms = recipe.discriminator_loss(backbone, d, image, mask, result)
    gray, canny, predicted = (result.extras[k] for k in ("gray", "canny", "edge_output"))
    with torch.no_grad():
        want = 0.5 * losses.nsgan_d(discriminate_edges(d, gray, canny)[0], discriminate_edges(d, gray, predicted)[0])
    assert terms["d_edge_adversarial"] == pytest.approx(float(want), rel=1e-5)
    own = AUXILIARY.discriminator_terms(recipe.cfg["edge_model"], "joint", d, image, mask, result)
    sum(own.values()).backward()
    assert has_grad(d.edge) and not has_grad(d.inpaint) and not has_grad(g)  # the fake is detached


def _trainer(run_dir, mode="joint", epochs=1, **overrides):
    torch.manual_seed(0)
    backbone = get("edgeconnect")
    return InpaintTrainer(backbone=backbone, generator=backbone.build_generator(width=0.125, blocks=1),
                          discriminator=backbone.build_discriminator(width=0.125),
                          recipe=LossRecipe.from_config(ec_cfg(mode, **overrides)), run_dir=run_dir, epochs=epochs,
                          batch_size=4, lr_g=1e-3, lr_d=1e-3, betas=(0.0, 0.9), stamp="s1", max_batches=1)


@pytest.mark.parametrize("mode, trained", [("joint", {"g.edge", "g.inpaint", "d.edge", "d.inpaint"}),
                                           ("edge_inpaint", {"g.inpaint", "d.inpaint"})])
def test_a_training_step_changes_the_networks_its_mode_trains(tmp_path, mode, trained):
    trainer = _trainer(tmp_path, mode)
    parts = {f"{n}.{p}": getattr(net, p) for n, net in (("g", trainer.generator), ("d", trainer.discriminator))
             for p in ("edge", "inpaint")}
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in parts.items()}
    image, mask = torch.rand(4, 3, 32, 32), torch.zeros(4, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    terms = trainer.train_step({"image": image, "mask": mask})
    changed = {k for k, m in parts.items() if any(not torch.equal(p, q) for p, q in zip(m.parameters(), before[k]))}
    assert changed == trained
    assert ({"edge_adversarial", "edge_feature_matching", "d_edge_adversarial"} <= set(terms)) == (mode == "joint")


def test_edge_networks_and_their_optimiser_state_are_saved_and_resumed(tmp_path):
    data = split_data(tmp_path / "d", size=32)
    train, val = InpaintingSet(data, "train"), InpaintingSet(data, "val")
    straight = _trainer(tmp_path / "a", epochs=2)
    straight.fit(train, val)
    interrupted = _trainer(tmp_path / "b", epochs=1)
    interrupted.fit(train, val)
    last = load_checkpoint(interrupted.last_path)
    edge_d = [k for k in last["discriminator"] if k.startswith("edge.")]
    assert edge_d and any(k.startswith("edge.") for k in last["generator"])
    d_states = last["opt_d"]["state"]  # Adam state for every discriminator parameter, the edge ones included
    assert len(d_states) == len(list(interrupted.discriminator.parameters()))
    resumed = _trainer(tmp_path / "b", epochs=2)
    resumed.fit(train, val)
    rows = [[r for r in t.log.read() if r["kind"] == "train" and r["epoch"] == 2][0] for t in (straight, resumed)]
    assert rows[0] == rows[1] and rows[0]["edge_feature_matching"] > 0


def test_the_mode_is_recorded_and_a_mode_the_backbone_lacks_is_refused():
    backbone, recipe, generator, *_ = ec_nets()
    assert generator.detach_edges is False
    with pytest.raises(ValueError, match=r"unknown EdgeConnect edge-model mode 'x'; known: joint, edge_inpaint"):
        AUXILIARY.configure(generator, "x")
    described = recipe.describe(backbone)
    assert described["update_order"] == "simultaneous" and described["adv_grads_into_d"] is False
    assert described["edge_model"]["mode"] == "joint" and described["edge_model"]["original"].startswith("MODEL=4")
    assert described["edge_model"]["feature_matching"] == 10.0
    with pytest.raises(ValueError, match=r"inpaint\.edge_model\.mode 'none' is not a way edgeconnect trains; "
                                         r"known: joint: MODEL=4.*edge_inpaint: MODEL=3"):
        LossRecipe.from_config(ec_cfg("none")).describe(backbone)
    aotgan_cfg = config.resolve("smoke", "aotgan", {"inpaint.edge_model.mode": "joint"})["inpaint"]
    with pytest.raises(ValueError, match=r"inpaint\.edge_model\.mode is 'joint', but backbone 'aotgan' has no "
                                         r"edge_model; set it to none"):
        LossRecipe.from_config(aotgan_cfg).describe(get("aotgan"))
    assert "edge_model" not in LossRecipe.from_config(config.resolve("smoke", "aotgan")["inpaint"]).describe(get("aotgan"))


def test_a_checkpoint_of_another_mode_or_order_is_not_resumed(tmp_path):
    """The run stamp covers the training recipe: last.pt of another mode or order starts afresh."""
    from zfutils.train.inpaint_setup import build_trainer

    def stamp(**overrides):
        return build_trainer(config.resolve("smoke", "edgeconnect", {**NO_VGG, **overrides}), tmp_path, "cpu")[0].stamp

    joint = stamp()
    assert joint != stamp(**{"inpaint.edge_model.mode": "edge_inpaint"})
    assert joint != stamp(**{"inpaint.update_order": "d_then_g"})

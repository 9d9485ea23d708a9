"""The trainer's update orders on a tiny model (1x1-conv generator and discriminator): which network
each optimiser step changes, in which order, which discriminator state judged the generator, which
fakes the discriminator learned from, and that each gradient equals a manual computation of that
order; plus gradient clipping of both networks (LaMa)."""
import copy

import pytest
import torch
from torch import nn

from zfutils import config, losses
from zfutils.models.registry import Backbone, InpaintResult
from zfutils.train.inpaint import InpaintTrainer
from zfutils.train.recipe import LossRecipe


class TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


class TinyD(nn.Module):
    """Records, per call, its weight and input, and whether the input carries the generator's graph."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.calls = []

    def forward(self, x):
        self.calls.append({"weight": self.conv.weight.detach().clone(), "input": x.detach().clone(),
                           "from_g": x.requires_grad})
        return self.conv(x)


def _inpaint(generator, image, mask):
    out = generator(image * (1 - mask))
    return InpaintResult(stages=[out], output=out, composite=out * mask + image * (1 - mask))


TINY = Backbone(name="tiny", family="inpainting", build_generator=lambda **_: TinyG(),
                build_discriminator=lambda **_: TinyD(), load_pretrained=lambda *a, **k: {}, inpaint=_inpaint,
                discriminate=lambda d, image, mask: (d(image), []), encoder_input=lambda image, mask: image,
                encoder=lambda g: g.conv, cam_layer=lambda g: g.conv, embed_dim=lambda width=1.0: 3)
ADV, D_WEIGHT = 0.5, 1.0


def tiny_trainer(tmp_path, order: str, into_d: bool = False, clip=None, d_weight=D_WEIGHT, adv=ADV):
    torch.manual_seed(0)
    cfg = config.resolve("smoke", None, {
        "inpaint.update_order": order, "inpaint.adv_grads_into_d": into_d, "inpaint.grad_clip": clip,
        "inpaint.adversarial": {"kind": "nsgan", "weight": adv, "d_weight": d_weight, "judge": "output"}})["inpaint"]
    return InpaintTrainer(backbone=TINY, generator=TinyG(), discriminator=TinyD(), recipe=LossRecipe.from_config(cfg),
                          run_dir=tmp_path, epochs=1, batch_size=2, lr_g=0.1, lr_d=0.1, betas=(0.5, 0.999),
                          grad_clip=clip)


def tiny_batch():
    torch.manual_seed(1)
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1
    return {"image": torch.rand(2, 3, 4, 4), "mask": mask}


def g_loss(g, d, image, mask, adv=ADV):
    out = _inpaint(g, image, mask).output
    return losses.weighted_l1(out, image, mask) + adv * losses.nsgan_g(d(out))


def d_loss(d, fake, image, d_weight=D_WEIGHT):
    return d_weight * losses.nsgan_d(d(image), d(fake.detach()))


def grads(loss, module):
    return [g if g is not None else torch.zeros_like(p)
            for g, p in zip(torch.autograd.grad(loss, list(module.parameters()), allow_unused=True), module.parameters())]


def run_one_step(trainer, batch):
    """One train_step with (network, parameters it changed) per optimiser step, in order."""
    nets = {"g": trainer.generator, "d": trainer.discriminator}
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in nets.items()}
    steps = []

    def record(name):
        def hook(optimizer, args, kwargs):
            changed = {k for k, m in nets.items()
                       if any(not torch.equal(p, q) for p, q in zip(m.parameters(), before[k]))}
            steps.append((name, changed - {s for _, c in steps for s in c}))
        return hook

    trainer.opt_g.register_step_post_hook(record("g"))
    trainer.opt_d.register_step_post_hook(record("d"))
    trainer.train_step(batch)
    return steps


# order -> (optimiser steps in order; D state that judged G; G state whose fakes D learned from)
EXPECTED = {"d_then_g": ([("d", {"d"}), ("g", {"g"})], "post", "pre"),
            "g_then_d": ([("g", {"g"}), ("d", {"d"})], "pre", "post"),
            "simultaneous": ([("g", {"g"}), ("d", {"d"})], "pre", "pre")}


@pytest.mark.parametrize("order", sorted(EXPECTED))
def test_each_order_steps_judges_and_differentiates_as_its_original(tmp_path, order):
    trainer = tiny_trainer(tmp_path, order)
    g0, d0 = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    batch = tiny_batch()
    image, mask = batch["image"], batch["mask"]
    steps = run_one_step(trainer, batch)
    g1, d1 = trainer.generator, trainer.discriminator
    want_steps, judge, fakes_of = EXPECTED[order]
    assert steps == want_steps

    # which D state judged G: the one call whose input carries G's graph
    (g_call,) = [c for c in d1.calls if c["from_g"]]
    judged_by = {"pre": d0, "post": d1}[judge]
    assert torch.equal(g_call["weight"], judged_by.conv.weight.detach())
    assert not torch.equal(g_call["weight"], {"pre": d1, "post": d0}[judge].conv.weight.detach())
    # which fakes D learned from: G before or after its step
    with torch.no_grad():
        fake = _inpaint({"pre": g0, "post": g1}[fakes_of], image, mask).output
        other = _inpaint({"pre": g1, "post": g0}[fakes_of], image, mask).output
    d_inputs = [c["input"] for c in d1.calls if not c["from_g"] and not torch.equal(c["input"], image)]
    assert len(d_inputs) == 1 and torch.allclose(d_inputs[0], fake) and not torch.allclose(d_inputs[0], other)

    # the gradients each step used equal the manual computation of this order
    judge_copy = copy.deepcopy(judged_by)
    want_g = grads(g_loss(g0, judge_copy, image, mask), g0)
    want_d = grads(d_loss(d0, fake, image), d0)
    for got, want in zip([p.grad for p in g1.parameters()] + [p.grad for p in d1.parameters()], want_g + want_d):
        assert torch.allclose(got, want, atol=1e-6)
    wrong_judge = copy.deepcopy({"pre": d1, "post": d0}[judge])
    wrong_g = grads(g_loss(g0, wrong_judge, image, mask), g0)
    assert not all(torch.allclose(p.grad, w, atol=1e-6) for p, w in zip(g1.parameters(), wrong_g))


@pytest.mark.parametrize("into_d", [False, True])
def test_simultaneous_d_step_takes_gs_adversarial_gradient_only_when_asked(tmp_path, into_d):
    """AOT-GAN backprops G's total through an undetached D(comp) before stepping D; EdgeConnect does not."""
    trainer = tiny_trainer(tmp_path, "simultaneous", into_d=into_d)
    d0 = copy.deepcopy(trainer.discriminator)
    batch = tiny_batch()
    image, mask = batch["image"], batch["mask"]
    with torch.no_grad():
        fake = _inpaint(copy.deepcopy(trainer.generator), image, mask).output
    g0 = copy.deepcopy(trainer.generator)
    trainer.train_step(batch)
    d_ref = copy.deepcopy(d0)
    want = grads(d_loss(d_ref, fake, image), d_ref)
    from_g = grads(ADV * losses.nsgan_g(d_ref(_inpaint(g0, image, mask).output)), d_ref)
    if into_d:
        want = [a + b for a, b in zip(want, from_g)]
    assert any(b.abs().sum() > 0 for b in from_g)
    for p, w in zip(trainer.discriminator.parameters(), want):
        assert torch.allclose(p.grad, w, atol=1e-6)


def test_adv_grads_into_d_needs_the_simultaneous_order(tmp_path):
    with pytest.raises(ValueError, match=r"adv_grads_into_d is true but inpaint\.update_order is 'd_then_g'"):
        tiny_trainer(tmp_path, "d_then_g", into_d=True)
    with pytest.raises(ValueError, match=r"unknown inpaint\.update_order 'both'; known: d_then_g, g_then_d"):
        tiny_trainer(tmp_path, "both")


def test_grad_clip_clips_both_networks_own_gradients(tmp_path):
    """LaMa: Lightning's gradient_clip_val clips each optimiser's parameters, the discriminator's too."""
    trainer = tiny_trainer(tmp_path, "g_then_d", clip=1.0, d_weight=1e3, adv=1e3)
    g0, d0 = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    batch = tiny_batch()
    image, mask = batch["image"], batch["mask"]
    trainer.train_step(batch)
    with torch.no_grad():
        fresh = _inpaint(trainer.generator, image, mask).output
    unclipped = {"g": grads(g_loss(g0, copy.deepcopy(d0), image, mask, adv=1e3), g0),
                 "d": grads(d_loss(d0, fresh, image, d_weight=1e3), d0)}
    for name, net in (("g", trainer.generator), ("d", trainer.discriminator)):
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in net.parameters()]))
        want = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in unclipped[name]]))
        assert want > 10 and norm == pytest.approx(1.0, rel=1e-4), name

"""Stage 03's classifier and trainer, for every registered backbone."""
import math

import numpy as np
import pytest
import torch

from tests.test_torchsets import split_data
from zfutils import models
from zfutils.data.torchsets import ClassificationSet
from zfutils.models.classifier import Classifier
from zfutils.train import batchnorm
from zfutils.train.classify import ClassifierTrainer, holds_features

NAMES = sorted(n for n, b in models.BACKBONES.items() if b.matcher is None)  # networks (matchers: test_matching.py)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data = split_data(tmp_path_factory.mktemp("cls"), size=32, per_session=8)  # colour encodes identity: learnable
    return ClassificationSet(data, "train"), ClassificationSet(data, "val")


def classifier(name, head="linear"):
    torch.manual_seed(0)
    backbone = models.get(name)
    scale = {"width": 0.125, "blocks": 1} if backbone.family == "inpainting" else {}
    generator = backbone.build_generator(**scale)
    return Classifier(backbone=backbone, generator=generator, n_classes=3,
                      embed_dim=backbone.embed_dim(scale.get("width", 1.0)), head=head)


@pytest.mark.parametrize("mode", ["shallow", "deep"])
@pytest.mark.parametrize("name", NAMES)
def test_every_backbone_learns_in_both_modes(name, mode, tiny, tmp_path):
    train, _ = tiny
    model = classifier(name)
    trainer = ClassifierTrainer(model=model, mode=mode, run_dir=tmp_path, epochs=8, batch_size=8, lr_head=1e-2,
                                lr_encoder=1e-4, seed=0, stamp="t", precise_bn_batches=4)
    trainer._recalibrate(train, 0, encoder=True)  # a random start's batch-norm statistics are placeholders
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainer.fit(train, train, n_classes=3)  # validated on train: this checks learning, not generalisation
    history = [r for r in trainer.log.read() if r["kind"] == "epoch"]
    # eval-mode loss on the training images: train-mode losses of batch-norm nets at batch 8 and 32 px are too noisy
    assert min(r["val_loss"] for r in history[1:]) < history[0]["val_loss"]
    assert max(r["val_accuracy"] for r in history) > 0.6  # chance is 1/3
    assert {"val_macro_recall", "val_macro_f1"} <= set(history[-1])
    after = model.encoder.state_dict()
    unchanged = all(torch.equal(encoder_before[k], after[k]) for k in after)
    assert unchanged == (mode == "shallow")  # shallow: every encoder weight and statistic bit for bit


@pytest.mark.parametrize("mode", ["shallow", "deep"])
def test_standardizing_neck_whitens_the_training_features_and_stays_fixed(mode, tiny, tmp_path):
    train, _ = tiny
    model = classifier("aotgan")  # its pooled features vary by about 1e-4: batch norm's default eps would flatten them
    trainer = ClassifierTrainer(model=model, mode=mode, run_dir=tmp_path, epochs=1, batch_size=8, lr_head=1e-2,
                                lr_encoder=1e-4, seed=0, stamp="t", precise_bn_batches=0)
    trainer.fit(train, train, n_classes=3)
    features = trainer.frozen_features(train).embedding
    assert features.std(0).max() < 2e-2
    model.train()
    assert not model.neck.training  # a fixed transform in training as in evaluation
    whitened = model.neck(features)
    assert torch.allclose(whitened.mean(0), torch.zeros(features.shape[1]), atol=1e-3)
    var = features.var(0)
    # unit variance well above the variance floor; below it (a channel ReLU keeps near zero) damped, not amplified
    expected = (var / (var + model.neck.floor * var.mean())).sqrt()
    assert torch.allclose(whitened.std(0), expected, atol=1e-3)
    assert (expected > 0.99).sum() > features.shape[1] // 4
    assert torch.equal(whitened, model.eval().neck(features))


def test_random_start_calibrates_batchnorm_before_training(tiny, tmp_path):
    train, _ = tiny
    model = classifier("efficientnet")
    with torch.no_grad():
        model.eval()
        before = model.embed(train[0]["image"][None]).abs().mean()
    trainer = ClassifierTrainer(model=model, mode="shallow", run_dir=tmp_path, epochs=1, batch_size=8, lr_head=1e-2,
                                lr_encoder=1e-4, seed=0, stamp="t", precise_bn_batches=2, calibrate_first=True)
    trainer.fit(train, train, n_classes=3)
    assert [r for r in trainer.log.read() if r["kind"] == "calibration"][0]["batches"] == 2
    with torch.no_grad():
        model.eval()
        after = model.embed(train[0]["image"][None]).abs().mean()
    assert before < 1e-6 < after  # placeholder statistics made the features vanish; calibrated ones do not


def test_arcface_head_learns_and_predicts_by_cosine(tiny, tmp_path):
    train, _ = tiny
    model = classifier("aotgan", head="arcface")
    trainer = ClassifierTrainer(model=model, mode="deep", run_dir=tmp_path, epochs=6, batch_size=8, lr_head=1e-2,
                                lr_encoder=1e-3, seed=0, stamp="t")
    trainer.fit(train, train, n_classes=3)
    assert max(r["val_accuracy"] for r in trainer.log.read() if r["kind"] == "epoch") > 0.6
    emb = model.embed(train[0]["image"][None])
    cos = model.head.get_cosine(model.neck(emb))
    assert torch.equal(model(train[0]["image"][None]).argmax(1), cos.argmax(1))


def test_unknown_head_and_mode_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown classification head 'svm'"):
        classifier("aotgan", head="svm")
    with pytest.raises(ValueError, match="unknown classification mode 'half'"):
        ClassifierTrainer(model=classifier("aotgan"), mode="half", run_dir=tmp_path, epochs=1, batch_size=2,
                          lr_head=1e-3, lr_encoder=1e-3)


def test_evaluate_and_best_checkpoint(tiny, tmp_path):
    train, val = tiny
    trainer = ClassifierTrainer(model=classifier("deepfillv2"), mode="deep", run_dir=tmp_path, epochs=2, batch_size=8,
                                lr_head=1e-2, lr_encoder=1e-3, seed=0, stamp="t")
    summary = trainer.fit(train, val, n_classes=3)
    assert trainer.best_path.is_file() and summary["best_epoch"] in (1, 2)
    best, last = (torch.load(p, weights_only=False) for p in (trainer.best_path, trainer.last_path))
    assert "optimizer" in last and not {"optimizer", "rng"} & set(best)  # best.pt: the weights later stages read
    result = trainer.evaluate(val, n_classes=3)
    truth, pred, _ = trainer.predict(val)
    assert result["accuracy"] == pytest.approx(float(np.mean(truth == pred)))
    assert np.asarray(result["confusion"]).sum() == len(val)


def test_shallow_mode_trains_the_head_on_features_computed_once(tiny, tmp_path):
    """The frozen encoder runs once per image; the head sees the batches an image-by-image loop
    would, so its weights match a reference loop that embeds every batch afresh."""
    train, val = tiny
    model = classifier("aotgan")
    trainer = ClassifierTrainer(model=model, mode="shallow", run_dir=tmp_path, epochs=2, batch_size=8, lr_head=1e-2,
                                lr_encoder=1e-4, seed=0, stamp="t")
    features = trainer.frozen_features(train)
    with torch.no_grad():
        direct = torch.cat([model.embed(train[i]["image"][None]) for i in range(len(train))])
    torch.testing.assert_close(features.embedding, direct, rtol=1e-5, atol=1e-6)
    assert torch.equal(features.label, torch.stack([train[i]["label"] for i in range(len(train))]))

    reference = classifier("aotgan")
    reference.freeze_encoder()
    batchnorm.recalibrate(reference.neck, reference.neck, [features.embedding])  # the neck's statistics, as fit's
    reference.train()
    optimizer = torch.optim.AdamW(reference.head.parameters(), lr=1e-2, weight_decay=0.0)
    for epoch in (1, 2):
        for batch in trainer.epoch_loader(train, epoch):
            loss, _ = reference.loss(batch["image"], batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    trainer.fit(train, val, n_classes=3)
    last = torch.load(trainer.last_path, weights_only=False)["model"]
    torch.testing.assert_close(last["head.weight"], reference.head.weight.detach(), rtol=1e-4, atol=1e-5)


def test_stored_features_skip_the_encoder_and_images_pass_through_it_once(tiny, tmp_path):
    """holds_features tells a trainer what it was given. Stored features (an EmbeddedSet): the
    encoder never runs, not even to calibrate a random start. Images, shallow mode: the frozen
    encoder runs once per image (one pass per set, not one per epoch), and the head ends exactly
    where it ends when given those features stored."""
    train, val = tiny
    extractor = ClassifierTrainer(model=classifier("aotgan"), mode="shallow", run_dir=tmp_path / "x", epochs=0,
                                  batch_size=8, lr_head=1e-2, lr_encoder=1e-4)
    stored = extractor.frozen_features(train), extractor.frozen_features(val)
    assert holds_features(stored[0]) and not holds_features(train)
    options = dict(mode="shallow", epochs=3, batch_size=8, lr_head=1e-2, lr_encoder=1e-4, seed=0, stamp="t")

    def encoder_batches(trainer, train_set, val_set) -> int:
        calls = []
        hook = trainer.model.encoder.register_forward_hook(lambda *_: calls.append(1))
        trainer.fit(train_set, val_set, n_classes=3)
        hook.remove()
        return len(calls)

    given = ClassifierTrainer(model=classifier("aotgan"), run_dir=tmp_path / "stored", precise_bn_batches=2,
                              calibrate_first=True, **options)  # the calibration is for images: skipped
    assert encoder_batches(given, *stored) == 0
    assert not [r for r in given.log.read() if r["kind"] == "calibration"]
    computed = ClassifierTrainer(model=classifier("aotgan"), run_dir=tmp_path / "images", **options)
    assert encoder_batches(computed, train, val) == sum(math.ceil(len(s) / 32) for s in (train, val))
    heads = [torch.load(t.last_path, weights_only=False)["model"]["head.weight"] for t in (given, computed)]
    assert torch.equal(*heads)
    assert computed.state["iteration"] == given.state["iteration"] > 0


def test_standardize_bounds_a_dimension_that_was_dead_on_the_calibration_images():
    """Deep training's train-mode batch norm wakes channels that were dead in eval mode; an
    absolute eps of 1e-12 scaled such a dimension to 2e6 (InceptionV3; batch losses of 2e4)."""
    from zfutils.models.classifier import Standardize

    neck = Standardize(3)
    vectors = torch.tensor([[1.0, 10.0, 0.0], [3.0, 30.0, 0.0], [5.0, 50.0, 0.0]])
    batchnorm.recalibrate(neck, neck, [vectors])
    mean_var = (4.0 + 400.0 + 0.0) / 3
    out = neck.eval()(torch.tensor([[3.0, 30.0, 1.0]]))
    # the woken dimension is scaled by the floor (about 2.7 here), not by 1 / sqrt(1e-12)
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, (neck.floor * mean_var) ** -0.5]]))


def test_jitter_and_cosine_schedule_train_and_resume_like_one_run(tiny, tmp_path, monkeypatch):
    """Deep training with jitter and a warm-up + cosine schedule: the last step's learning rate is
    the schedule's, and a run interrupted after epoch 1 and resumed ends with the weights of one
    uninterrupted run (the jitter and the schedule depend on the epoch, image and iteration, not
    on the process)."""
    from zfutils.train import classify as classify_module
    from zfutils.train.augment import Jitter

    class Interrupted(Exception):
        pass

    train, _ = tiny
    options = dict(mode="deep", batch_size=8, lr_head=1e-2, lr_encoder=1e-3, seed=0, stamp="j",
                   jitter=Jitter(), schedule="cosine", warmup_epochs=0.5)
    whole = ClassifierTrainer(model=classifier("aotgan"), run_dir=tmp_path / "whole", epochs=2, **options)
    whole.fit(train, train, n_classes=3)
    steps = whole.state["iteration"]
    assert [g["lr"] for g in whole.optimizer.param_groups] == pytest.approx(
        [g["base_lr"] * (0.5 * (1 + np.cos(np.pi * (steps - 1 - steps // 4) / (steps - steps // 4))))
         for g in whole.optimizer.param_groups])
    def interrupt():  # called once an epoch's last.pt is written
        raise Interrupted

    monkeypatch.setattr(classify_module.distributed, "barrier", interrupt)
    with pytest.raises(Interrupted):
        ClassifierTrainer(model=classifier("aotgan"), run_dir=tmp_path / "parts", epochs=2, **options).fit(train, train, 3)
    monkeypatch.undo()
    resumed = ClassifierTrainer(model=classifier("aotgan"), run_dir=tmp_path / "parts", epochs=2, **options)
    resumed.fit(train, train, n_classes=3)
    assert resumed.state["iteration"] == steps
    for key, value in whole.model.state_dict().items():
        assert torch.allclose(value, resumed.model.state_dict()[key], atol=1e-6), key
    # the jitter reached the network: without it the same run ends elsewhere
    plain = ClassifierTrainer(model=classifier("aotgan"), run_dir=tmp_path / "plain", epochs=2,
                              **{**options, "jitter": None})
    plain.fit(train, train, n_classes=3)
    assert not all(torch.allclose(v, plain.model.state_dict()[k]) for k, v in whole.model.state_dict().items())


def test_unknown_schedule_is_named_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown classify.schedule 'steps'"):
        ClassifierTrainer(model=classifier("aotgan"), mode="deep", run_dir=tmp_path, epochs=1, batch_size=2,
                          lr_head=1e-3, lr_encoder=1e-3, schedule="steps")

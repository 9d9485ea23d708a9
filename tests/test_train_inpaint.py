"""The inpainting trainer: it learns (a tiny overfit), resumes exactly, stops on NaN, keeps the best."""
import math

import pytest
import torch

from tests.test_torchsets import split_data
from zfutils import config
from zfutils.data.torchsets import InpaintingSet
from zfutils.models import get
from zfutils.train.inpaint import InpaintTrainer, NonFiniteLoss, evaluate_inpainting
from zfutils.train.recipe import LossRecipe


def make_trainer(run_dir, backbone="aotgan", epochs=2, lr=1e-3, **overrides):
    torch.manual_seed(0)
    cfg = config.resolve("smoke", backbone, overrides)
    b = get(backbone)
    return InpaintTrainer(backbone=b, generator=b.build_generator(width=0.125, blocks=1),
                          discriminator=b.build_discriminator(width=0.125),
                          recipe=LossRecipe.from_config(cfg["inpaint"]), run_dir=run_dir, epochs=epochs,
                          batch_size=4, lr_g=lr, lr_d=lr, betas=(0.5, 0.999), seed=0, stamp="s1")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    data = split_data(tmp_path_factory.mktemp("d"), size=32)  # AOT-GAN's discriminator needs 24 px
    return InpaintingSet(data, "train"), InpaintingSet(data, "val"), data


def test_tiny_overfit_masked_l1_falls(tmp_path):
    """Steps on one fixed batch of striped 32x32 images: the masked L1 must fall clearly."""
    trainer = make_trainer(tmp_path, lr=2e-3)
    rows = torch.arange(32, dtype=torch.float32).view(1, 1, 32, 1)
    image = (0.5 + 0.4 * torch.sin(rows / 2 + torch.arange(4).view(4, 1, 1, 1))).expand(4, 3, 32, 32).clone()
    mask = torch.zeros(4, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    batch = {"image": image, "mask": mask}
    from zfutils.metrics import masked_l1
    with torch.no_grad():
        before = masked_l1(trainer.backbone.inpaint(trainer.generator, image, mask).output, image, mask).mean()
    for _ in range(30):
        trainer.train_step(batch)
    with torch.no_grad():
        after = masked_l1(trainer.backbone.inpaint(trainer.generator, image, mask).output, image, mask).mean()
    assert after < 0.7 * before


def test_fit_writes_log_checkpoints_and_table3(tmp_path, sets):
    train, val, _ = sets
    trainer = make_trainer(tmp_path, epochs=2)
    summary = trainer.fit(train, val)
    assert summary["epochs"] == 2 and summary["iterations"] == 2 * (len(train) // 4)
    assert summary["best_iteration"] in {len(train) // 4, 2 * (len(train) // 4)}
    records = trainer.log.read()
    vals = [r for r in records if r["kind"] == "val"]
    assert len(vals) == 2 and math.isclose(min(r["val_g_loss"] for r in vals), summary["best_val_g_loss"])
    assert trainer.last_path.is_file() and trainer.best_path.is_file()
    best, last = (torch.load(p, weights_only=False) for p in (trainer.best_path, trainer.last_path))
    assert {"opt_g", "opt_d"} <= set(last) and not {"opt_g", "opt_d", "rng"} & set(best)  # best.pt: weights only
    assert best["generator"].keys() == last["generator"].keys()


def test_resume_gives_the_identical_next_step_loss(tmp_path, sets):
    train, val, _ = sets
    straight = make_trainer(tmp_path / "a", epochs=2)
    straight.fit(train, val)
    second_epoch = [r for r in straight.log.read() if r["kind"] == "train" and r["epoch"] == 2]

    interrupted = make_trainer(tmp_path / "b", epochs=1)
    interrupted.fit(train, val)
    resumed = make_trainer(tmp_path / "b", epochs=2)  # a fresh process would build exactly this
    resumed.fit(train, val)
    again = [r for r in resumed.log.read() if r["kind"] == "train" and r["epoch"] == 2]
    assert again[0]["g_loss"] == second_epoch[0]["g_loss"] and again[0]["d_loss"] == second_epoch[0]["d_loss"]
    assert len([r for r in resumed.log.read() if r["kind"] == "train" and r["epoch"] == 1]) == len(train) // 4


def test_checkpoint_of_another_config_is_not_resumed(tmp_path, sets):
    train, val, _ = sets
    make_trainer(tmp_path, epochs=1).fit(train, val)
    other = make_trainer(tmp_path, epochs=1)
    other.stamp = "different"
    assert other.resume() is False


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, sets):
    train, val, _ = sets
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit(train, val)
    saved = trainer.last_path.read_bytes()
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.fill_(float("nan"))
    trainer.epochs = 2
    with pytest.raises(NonFiniteLoss, match=r"non-finite at iteration .*last good checkpoint is kept .*last\.pt"):
        trainer.train_step(next(iter(torch.utils.data.DataLoader(train, batch_size=4))))
    assert trainer.last_path.read_bytes() == saved


def test_evaluate_inpainting_on_the_test_split(tmp_path, sets):
    _, _, data = sets
    trainer = make_trainer(tmp_path)
    result = evaluate_inpainting(trainer.backbone, trainer.generator, InpaintingSet(data, "test"), batch_size=4)
    assert set(result) == {"test_l1", "test_psnr", "test_ssim"}
    assert 0 <= result["test_l1"] <= 1 and result["test_psnr"] > 0


def test_recipe_missing_vgg_weights_error_or_drop(tmp_path, monkeypatch):
    import zfutils.pretrained as pretrained

    monkeypatch.setattr(pretrained, "cache_dir", lambda: tmp_path / "empty-cache")
    cfg = config.resolve("paper", "aotgan")["inpaint"]
    with pytest.raises(FileNotFoundError, match=r"vgg19-dcbb9e9d\.pth .*inpaint\.vgg19_weights"):
        LossRecipe.from_config(cfg)
    dropped = LossRecipe.from_config({**cfg, "missing_weights": "drop"})
    assert dropped.dropped == ["perceptual", "style"] and dropped.terms()["style"] == 0.0
    assert dropped.terms()["l1"] == 2.0 and dropped.terms()["adversarial"] == 0.01


def test_recipe_uses_vgg_features_from_a_local_file(tmp_path):
    from torchvision.models import vgg19

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19(weights=None).features[:32].state_dict().items()}
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    cfg = config.resolve("paper", "aotgan", {"inpaint.vgg19_weights": str(path)})["inpaint"]
    recipe = LossRecipe.from_config(cfg)
    assert recipe.vgg is not None and recipe.dropped == []
    b = get("aotgan")
    g, d = b.build_generator(width=0.125, blocks=1), b.build_discriminator(width=0.125)
    image, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 8:16, 8:16] = 1
    _, terms, _ = recipe.generator_loss(b, g, d, image, mask)
    assert terms["perceptual"] > 0 and terms["style"] > 0
    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision VGG19 state_dict"):
        LossRecipe.from_config({**cfg, "vgg19_weights": str(tmp_path / "bad.pth")})

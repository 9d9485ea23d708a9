import numpy as np
import pytest
import torch

from tests.test_torchsets import split_data
from zfutils import metrics
from zfutils.data.torchsets import ClassificationSet
from zfutils.embed import embed, load_embeddings, save_embeddings
from zfutils.models import get


def test_masked_metrics_only_look_at_the_hole():
    target = torch.zeros(2, 3, 16, 16)
    output = target.clone()
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    output[:, :, :2] = 1.0  # errors outside the hole do not count
    assert torch.all(metrics.masked_l1(output, target, mask) == 0)
    output[1, :, 4:12, 4:12] = 0.1
    l1 = metrics.masked_l1(output, target, mask)
    assert l1[0] == 0 and torch.isclose(l1[1], torch.tensor(0.1))
    psnr = metrics.masked_psnr(output, target, mask)
    assert torch.isclose(psnr[1], torch.tensor(20.0)) and psnr[0] > 100
    ssim = metrics.masked_ssim(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), mask)
    same = metrics.masked_ssim(target + 0.5, target + 0.5, mask)
    assert torch.all(same > 0.99) and torch.all(ssim < 0.5)


def test_embed_pools_encoder_features_and_roundtrips(tmp_path):
    data = split_data(tmp_path)
    test = ClassificationSet(data, "test")
    backbone = get("aotgan")
    generator = backbone.build_generator(width=0.125, blocks=1)
    vectors = embed(backbone, generator, test, batch_size=2)
    assert vectors.shape == (len(test), backbone.embed_dim(0.125)) and vectors.dtype == np.float32
    item = test[0]
    with torch.no_grad():
        direct = backbone.encoder(generator)(backbone.encoder_input(item["image"][None], torch.zeros(1, 1, 16, 16)))
    assert np.allclose(vectors[0], direct.mean(dim=(2, 3))[0].numpy(), atol=1e-6)
    path = save_embeddings(tmp_path / "e.npz", vectors, test, kind="inpainting")
    loaded = load_embeddings(path)
    assert (loaded["embeddings"] == vectors).all() and list(loaded["identity"]) == test.rows["identity"].tolist()
    assert [loaded["classes"][k] for k in loaded["label"]] == list(loaded["identity"])
    with pytest.raises(FileNotFoundError, match="run the stage"):
        load_embeddings(tmp_path / "missing.npz")


@pytest.mark.parametrize("pooling, grid", [("flatten", None), ("flatten", 2), ("gem", None)])
def test_embed_follows_the_classifier_pooling(tmp_path, pooling, grid):
    """Stage 02's inpainting-only embeddings live in the space the classification head reads."""
    from zfutils.models.classifier import Classifier

    test = ClassificationSet(split_data(tmp_path), "test")
    backbone = get("aotgan")
    generator = backbone.build_generator(width=0.125, blocks=1)
    vectors = embed(backbone, generator, test, batch_size=2, pooling=pooling, grid=grid)
    model = Classifier(backbone=backbone, generator=generator, n_classes=3, embed_dim=backbone.embed_dim(0.125),
                       neck="none", pooling=pooling, flatten_grid=grid, image_size=16).eval()
    with torch.no_grad():
        direct = model.embed(torch.stack([test[i]["image"] for i in range(len(test))]))
    assert vectors.shape == (len(test), model.embed_dim) == tuple(direct.shape)
    assert np.allclose(vectors, direct.numpy(), atol=1e-5)

"""From feature map to head input (zfutils/models/pooling.py): the flattened map, the study's
reading of its head, keeps the layout that average pooling throws away."""
import pytest
import torch

from zfutils.models import get
from zfutils.models.classifier import Classifier
from zfutils.models.pooling import FlattenMap, GlobalAverage, feature_map_shape, make_pooling, pooled_dim


def test_flatten_keeps_the_layout_that_average_pooling_loses():
    left = torch.zeros(1, 2, 4, 4)
    left[:, :, :, 0] = 1.0  # a mark on the left
    right = left.flip(-1)   # the same mark on the right
    assert torch.equal(GlobalAverage()(left), GlobalAverage()(right))
    assert not torch.equal(FlattenMap()(left), FlattenMap()(right))
    assert not torch.equal(FlattenMap(grid=2)(left), FlattenMap(grid=2)(right))
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(FlattenMap()(x), x.reshape(2, -1))  # channel-major, as a view of the map
    assert torch.equal(FlattenMap()(x.contiguous(memory_format=torch.channels_last)), x.reshape(2, -1))
    cells = FlattenMap(grid=2)(x).reshape(2, 3, 2, 2)
    assert torch.allclose(cells[:, :, 0, 0], x[:, :, :2, :2].mean(dim=(2, 3)))


def test_make_pooling_and_dimensions():
    assert isinstance(make_pooling("avg"), GlobalAverage)
    assert make_pooling("flatten", grid=3).grid == 3
    gem = make_pooling("gem")
    assert float(gem.p) == 3.0 and not gem.p.requires_grad
    assert pooled_dim("flatten", (8, 5, 6)) == 240
    assert pooled_dim("flatten", (8, 5, 6), grid=2) == 32
    assert pooled_dim("avg", (8, 5, 6)) == pooled_dim("gem", (8, 5, 6)) == 8
    with pytest.raises(ValueError, match="unknown classification pooling 'max'; known poolings: flatten, avg, gem"):
        make_pooling("max")
    with pytest.raises(ValueError, match="flatten_grid must be a positive"):
        FlattenMap(grid=0)


def test_feature_map_shape_runs_the_encoder_once_without_touching_its_statistics():
    backbone = get("efficientnet")
    encoder = backbone.encoder(backbone.build_generator()).train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    assert feature_map_shape(encoder, backbone.encoder_input, 64) == (backbone.embed_dim(1.0), 2, 2)
    assert encoder.training
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


@pytest.mark.parametrize("name", ["aotgan", "deepfillv2", "edgeconnect", "lama"])
def test_flattened_head_reads_the_whole_map(name):
    backbone = get(name)
    generator = backbone.build_generator(width=0.125, blocks=1)
    model = Classifier(backbone=backbone, generator=generator, n_classes=3, embed_dim=backbone.embed_dim(0.125),
                       pooling="flatten", neck="none", image_size=32).eval()
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = model.encoder(backbone.encoder_input(image, torch.zeros(2, 1, 32, 32)))
        embedding = model.embed(image)
    assert model.head.in_features == model.embed_dim == features[0].numel()
    assert torch.equal(embedding, features.flatten(1))
    assert model(image).shape == (2, 3)
    gridded = Classifier(backbone=backbone, generator=generator, n_classes=3, embed_dim=backbone.embed_dim(0.125),
                         pooling="flatten", flatten_grid=2, neck="standardize")
    assert gridded.head.in_features == 4 * backbone.embed_dim(0.125) == gridded.neck.num_features


def test_flattened_head_without_a_size_says_what_it_needs():
    backbone = get("aotgan")
    with pytest.raises(ValueError, match="needs image_size"):
        Classifier(backbone=backbone, generator=backbone.build_generator(width=0.125, blocks=1), n_classes=3,
                   embed_dim=backbone.embed_dim(0.125), pooling="flatten")


def test_images_of_another_size_than_the_head_was_built_for_are_named():
    backbone = get("aotgan")
    model = Classifier(backbone=backbone, generator=backbone.build_generator(width=0.125, blocks=1), n_classes=3,
                       embed_dim=backbone.embed_dim(0.125), pooling="flatten", neck="none", image_size=32).eval()
    with pytest.raises(ValueError, match="set data.image_size to the data's image size"):
        model.embed(torch.rand(1, 3, 64, 64))

import torch

from tests.helpers import write_tiny_dataset
from zfutils import config
from zfutils.data.format import read_dataset
from zfutils.data.splits import assign_splits
from zfutils.data.torchsets import ClassificationSet, InpaintingSet


def split_data(tmp_path, masks=True, size=16, per_session=3):
    data = read_dataset(write_tiny_dataset(tmp_path / "ds", masks=masks, size=size, per_session=per_session))
    meta, _ = assign_splits(data.meta, config.resolve("quick")["split"], seed=0, has_pattern_masks=masks)
    data.write_metadata(meta)
    return read_dataset(data.root)


def test_inpainting_set_expands_flips_and_uses_pattern_as_hole(tmp_path):
    data = split_data(tmp_path)
    train = InpaintingSet(data, "train")
    n_rows = ((data.meta["task"] == "inpaint") & (data.meta["split_inpaint"] == "train")).sum()
    assert len(train) == 4 * n_rows
    item, flipped = train[0], train[1]  # the same image, no flip then horizontal flip
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert torch.equal(item["mask"].bool(), item["pattern"])
    assert torch.equal(flipped["image"], item["image"].flip(2)) and torch.equal(flipped["mask"], item["mask"].flip(2))
    assert "label" not in item  # labels dropped, as the study


def test_classification_set_zero_mask_and_labels(tmp_path):
    data = split_data(tmp_path)
    test = ClassificationSet(data, "test")
    assert len(test) == ((data.meta["task"] == "classify") & (data.meta["split"] == "test")).sum()
    item = test[0]
    assert item["mask"].sum() == 0 and item["mask"].shape == (1, 16, 16)
    assert test.classes == ["fish_0", "fish_1", "fish_2"]
    labels = {int(test[i]["label"]) for i in range(len(test))}
    assert labels == {0, 1, 2}
    assert test.classes[int(item["label"])] == test.rows.loc[0, "identity"]


def test_batches_through_a_dataloader(tmp_path):
    data = split_data(tmp_path)
    batch = next(iter(torch.utils.data.DataLoader(ClassificationSet(data, "train"), batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].shape == (4,)


def test_no_masks_no_inpainting_set(tmp_path):
    import pytest

    data = split_data(tmp_path, masks=False)
    with pytest.raises(ValueError, match="has no pattern masks"):
        InpaintingSet(data, "train")
    item = ClassificationSet(data, "train")[0]
    assert item["fish"].sum() == 0


def test_classification_set_of_several_splits(tmp_path):
    data = split_data(tmp_path)
    every = ClassificationSet(data, ("train", "val", "test"))
    assert len(every) == sum(len(ClassificationSet(data, s)) for s in ("train", "val", "test"))
    assert every.classes == ClassificationSet(data, "test").classes

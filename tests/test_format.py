import json

import numpy as np
import pytest

from tests.helpers import write_tiny_dataset
from zfutils.data.format import DataFormatError, DatasetWriter, read_dataset


def test_roundtrip_images_masks_and_metadata(tmp_path):
    data = read_dataset(write_tiny_dataset(tmp_path / "ds"))
    assert len(data.meta) == 3 * 4 * 3 and data.identities == ["fish_0", "fish_1", "fish_2"]
    first = data.meta.iloc[0]
    image = data.image(first["image_id"])
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    fish, pattern = data.mask(first["image_id"], "fish"), data.mask(first["image_id"], "pattern")
    assert fish.dtype == bool and fish.sum() == 8 * 12 and (pattern <= fish).all()
    assert list(data.meta.columns[:5]) == ["image_id", "identity", "session", "frame", "source"]
    assert data.info["masks"] == "exact" and data.info["n_images"] == 36


def test_mask_size_mismatch_names_image(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        with pytest.raises(DataFormatError, match="fish mask of image 'a' is 8x8 but the image is 16x16"):
            writer.add("a", np.zeros((16, 16, 3), np.uint8), np.zeros((8, 8), bool), np.zeros((16, 16), bool),
                       identity="x", session="s", frame=0, source="t")
        writer.abort()


def test_failed_write_keeps_existing_dataset(tmp_path):
    root = write_tiny_dataset(tmp_path / "ds")
    before = (root / "metadata.csv").read_text()
    with pytest.raises(RuntimeError):
        with DatasetWriter(root) as writer:
            writer.add("a", np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), bool), np.ones((16, 16), bool),
                       identity="x", session="s", frame=0, source="t")
            raise RuntimeError("source failed half way")
    assert (root / "metadata.csv").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no staging folder left behind


def test_commit_replaces_dataset_atomically(tmp_path):
    root = write_tiny_dataset(tmp_path / "ds", identities=3)
    write_tiny_dataset(root, identities=2)
    assert read_dataset(root).meta["identity"].nunique() == 2
    assert json.loads((root / "dataset.json").read_text())["n_identities"] == 2


def test_read_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.csv does not exist"):
        read_dataset(tmp_path)
    root = write_tiny_dataset(tmp_path / "nomask", masks=False)
    data = read_dataset(root)
    with pytest.raises(DataFormatError, match="has no masks"):
        data.mask(data.meta.iloc[0]["image_id"], "fish")
    (root / "images" / f"{data.meta.iloc[0]['image_id']}.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match="cannot read"):
        data.image(data.meta.iloc[0]["image_id"])


def test_missing_metadata_field_is_an_error(tmp_path):
    with DatasetWriter(tmp_path / "ds", with_masks=False) as writer:
        with pytest.raises(DataFormatError, match=r"lacks metadata \['session', 'frame', 'source'\]"):
            writer.add("a", np.zeros((4, 4, 3), np.uint8), identity="x")
        writer.abort()

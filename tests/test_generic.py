"""The CSV and folder-per-individual readers write the project's format from arbitrary images."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from zfutils.data.format import DataFormatError
from zfutils.data.generic import write_csv, write_folder


def _png(path):
    with Image.open(path) as img:
        return np.asarray(img)


def _fish_image(w, h, colour=(50, 60, 150)):
    y, x = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 220, np.uint8)
    img[((x - w / 2) / (w * 0.35)) ** 2 + ((y - h / 2) / (h * 0.2)) ** 2 <= 1] = colour
    return img


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def csv_set(tmp_path):
    """Two identities, non-square images, masks in a sibling folder, paths relative to the CSV."""
    base = tmp_path / "mine"
    rows = []
    for i, (ident, w, h) in enumerate([("a", 80, 40), ("a", 60, 60), ("b", 40, 100)]):
        _save(base / "img" / f"{ident}{i}.png", _fish_image(w, h))
        fish = np.zeros((h, w), np.uint8)
        fish[: h // 2] = 255                      # top half: easy to follow through padding
        pattern = np.zeros((h, w), np.uint8)
        pattern[: h // 4] = 255
        _save(base / "masks" / f"{ident}{i}_fish.png", fish)
        _save(base / "masks" / f"{ident}{i}_pattern.png", pattern)
        rows.append({"path": f"img/{ident}{i}.png", "identity": ident,
                     "fish_mask": f"masks/{ident}{i}_fish.png",
                     "pattern_mask": f"masks/{ident}{i}_pattern.png",
                     "session": f"day{i % 2}", "frame": i, "tank": "T1"})
    pd.DataFrame(rows).to_csv(base / "list.csv", index=False)
    return base / "list.csv"


def test_csv_with_given_masks(csv_set, tmp_path):
    out = write_csv(csv_set, tmp_path / "out", size=32, progress=False)
    meta = pd.read_csv(out / "metadata.csv")
    assert list(meta.columns[:5]) == ["image_id", "identity", "session", "frame", "source"]
    assert len(meta) == 3 and set(meta.identity) == {"a", "b"}
    assert set(meta.session) == {"day0", "day1"} and sorted(meta.frame) == [0, 1, 2]
    assert (meta.source == "csv").all() and (meta.tank == "T1").all()
    assert json.loads((out / "dataset.json").read_text())["masks"] == "given"
    row = meta[meta.identity == "b"].iloc[0]
    img = _png(out / "images" / f"{row.image_id}.png")
    fish = _png(out / "masks" / "fish" / f"{row.image_id}.png")
    assert img.shape == (32, 32, 3) and fish.shape == (32, 32)
    assert set(np.unique(fish)) <= {0, 255}           # nearest neighbour keeps masks binary
    # 40x100 image padded left/right: mask covers the top half and only the central columns
    assert fish[:14, 14:18].all() and not fish[18:].any() and not fish[:, :4].any()
    wide = meta[meta.image_id.str.startswith("a_a0")].iloc[0]
    fish = _png(out / "masks" / "fish" / f"{wide.image_id}.png")
    assert not fish[:6].any() and fish[10:14].all()   # 80x40 image padded top/bottom


def test_csv_without_masks_defaults_to_none_and_unknown_session(tmp_path):
    _save(tmp_path / "x.jpg", _fish_image(50, 30))
    _save(tmp_path / "sub" / "y.bmp", _fish_image(30, 30))
    (tmp_path / "l.csv").write_text("path,identity\nx.jpg,f1\nsub/y.bmp,f2\n")
    out = write_csv(tmp_path / "l.csv", tmp_path / "out", size=24, progress=False)
    meta = pd.read_csv(out / "metadata.csv")
    assert (meta.session == "unknown").all() and (meta.frame == -1).all()
    assert not (out / "masks").exists()
    assert json.loads((out / "dataset.json").read_text())["masks"] == "none"
    # the 50x30 image was padded with its edge colour, not black
    img = _png(out / "images" / f"{meta.image_id[0]}.png")
    assert img[0, 12].min() > 200


def test_csv_estimated_masks(tmp_path):
    _save(tmp_path / "x.png", _fish_image(64, 64))
    (tmp_path / "l.csv").write_text("path,identity\nx.png,f1\n")
    out = write_csv(tmp_path / "l.csv", tmp_path / "out", size=32, masks="estimate", progress=False)
    fish = _png(out / "masks" / "fish" / "f1_x.png") > 0
    assert fish[16, 16] and not fish[0, 0]


def test_mask_size_mismatch_names_both_files(csv_set, tmp_path):
    _save(csv_set.parent / "masks" / "b2_fish.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataFormatError, match=r"b2_fish\.png.*10x10.*b2\.png.*40x100"):
        write_csv(csv_set, tmp_path / "out", progress=False)


def test_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        write_csv(tmp_path / "nothere.csv", tmp_path / "out", progress=False)
    (tmp_path / "l.csv").write_text("file,identity\nx.png,f1\n")
    with pytest.raises(DataFormatError, match="'path'"):
        write_csv(tmp_path / "l.csv", tmp_path / "out", progress=False)
    (tmp_path / "l.csv").write_text("path,identity,fish_mask\nx.png,f1,m.png\n")
    with pytest.raises(DataFormatError, match="pattern_mask"):
        write_csv(tmp_path / "l.csv", tmp_path / "out", progress=False)


def test_unreadable_image_is_named_and_output_kept(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    _save(tmp_path / "ok.png", _fish_image(20, 20))
    (tmp_path / "ok.csv").write_text("path,identity\nok.png,f1\n")
    out = write_csv(tmp_path / "ok.csv", tmp_path / "out", size=16, progress=False)
    (tmp_path / "l.csv").write_text("path,identity\nok.png,f1\nbad.png,f2\n")
    with pytest.raises(DataFormatError, match="bad.png"):
        write_csv(tmp_path / "l.csv", out, size=16, progress=False)
    assert len(pd.read_csv(out / "metadata.csv")) == 1
    (tmp_path / "m.csv").write_text("path,identity\nmissing.png,f1\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_csv(tmp_path / "m.csv", tmp_path / "out2", progress=False)


def test_folder_per_individual(tmp_path):
    root = tmp_path / "fish"
    _save(root / "nemo" / "1.png", _fish_image(40, 30))
    _save(root / "nemo" / "2.JPG", _fish_image(30, 40))
    _save(root / "dory" / "a.tif", _fish_image(32, 32))
    (root / "dory" / "notes.txt").write_text("not an image")
    out = write_folder(root, tmp_path / "out", size=32, progress=False)
    meta = pd.read_csv(out / "metadata.csv")
    assert sorted(meta.identity) == ["dory", "nemo", "nemo"]
    assert (meta.source == "folder").all() and (meta.session == "unknown").all()
    assert json.loads((out / "dataset.json").read_text())["masks"] == "estimate"
    for image_id in meta.image_id:
        assert _png(out / "images" / f"{image_id}.png").shape[:2] == (32, 32)
        assert (out / "masks" / "pattern" / f"{image_id}.png").exists()


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        write_folder(tmp_path / "nowhere", tmp_path / "out", progress=False)
    (tmp_path / "empty" / "nemo").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="no images"):
        write_folder(tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="masks"):
        write_folder(tmp_path / "empty", tmp_path / "out", masks="given", progress=False)

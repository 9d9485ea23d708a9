"""The AAU reader on a tiny copy of the data set's layout (small frames, drawn fish, markers)."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from zfutils.data.aau import FLAG_COLUMN, read_annotations, write_aau
from zfutils.data.format import DataFormatError


def _png(path):
    with Image.open(path) as img:
        return np.asarray(img)


W, H = 320, 200
HEADER = ["Filename", "Object ID", "Annotation tag", "Upper left corner X", "Upper left corner Y",
          "Lower right corner X", "Lower right corner Y", FLAG_COLUMN]
# fish id -> box (x0, y0, x1, y1); fish 3 touches the bottom and fish 6 the top frame edge
BOXES = {1: (20, 30, 100, 60), 2: (150, 80, 210, 120), 3: (260, 180, 320, 200),
         4: (10, 120, 70, 190), 5: (120, 20, 200, 70), 6: (250, 0, 320, 30)}
COLOURS = {1: (40, 60, 160), 2: (160, 120, 40), 3: (40, 140, 60), 4: (90, 40, 120),
           5: (150, 60, 60), 6: (60, 120, 140)}
# (video, frame) -> {fish: flags}; default flags "1,0,0,0"
FRAMES = {("Vid1", 1): {}, ("Vid1", 2): {2: "0,1,0,0"}, ("Vid1", 240): {}, ("Vid1", 300): {1: "1,0,1,1"},
          ("Vid2", 1): {5: "0,0,1,0"}, ("Vid2", 2): {6: "1,0,0,1"}}


def _frame(fish_ids):
    y, x = np.mgrid[0:H, 0:W]
    img = np.full((H, W, 3), 230, np.uint8)
    for f in fish_ids:
        x0, y0, x1, y1 = BOXES[f]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        inside = ((x - cx) / ((x1 - x0) / 2)) ** 2 + ((y - cy) / ((y1 - y0) / 2)) ** 2 <= 1
        img[inside] = COLOURS[f]
        img[int(cy) - 1:int(cy) + 2, int(cx) - 1:int(cx) + 2] = (255, 0, 0)  # centre marker
    return img


@pytest.fixture
def aau(tmp_path):
    root = tmp_path / "aau"
    (root / "data").mkdir(parents=True)
    lines = [";".join(HEADER)]
    for (video, frame), flags in FRAMES.items():
        name = f"{video}_{frame:04d}.png"
        fish_ids = (1, 2, 3) if video == "Vid1" else (4, 5, 6)
        Image.fromarray(_frame(fish_ids)).save(root / "data" / name)
        for f in fish_ids:
            fname = f"data/{name}" if f % 2 else name  # both spellings occur
            lines.append(";".join([fname, str(f), "zebrafish", *map(str, BOXES[f]), flags.get(f, "1,0,0,0")]))
    (root / "annotations.csv").write_text("\n".join(lines) + "\n")
    return root


def _meta(out):
    return pd.read_csv(out / "metadata.csv")


def test_read_annotations_parses_flags_and_names(aau):
    ann = read_annotations(aau)
    assert len(ann) == 18
    assert ann[["right", "turning", "occlusion", "glitch"]].dtypes.eq(bool).all()
    row = ann[(ann.video == "Vid1") & (ann.frame == 300) & (ann.identity == "fish_1")].iloc[0]
    assert (row.right, row.turning, row.occlusion, row.glitch) == (True, False, True, True)
    row = ann[(ann.video == "Vid1") & (ann.frame == 2) & (ann.identity == "fish_2")].iloc[0]
    assert (row.right, row.turning) == (False, True)
    assert set(ann.identity) == {f"fish_{i}" for i in range(1, 7)}
    assert set(ann[ann.video == "Vid2"].identity) == {"fish_4", "fish_5", "fish_6"}
    assert set(ann.file) == {f"data/{v}_{f:04d}.png" for v, f in FRAMES}
    assert ann.frame.dtype.kind == "i"


def test_bad_flag_value_is_reported(aau):
    text = (aau / "annotations.csv").read_text().replace("0,1,0,0", "0,1,0")
    (aau / "annotations.csv").write_text(text)
    with pytest.raises(DataFormatError, match="0,1,0"):
        read_annotations(aau)


def test_default_filters_and_columns(aau, tmp_path):
    out = write_aau(aau, tmp_path / "out", size=48, progress=False)
    meta = _meta(out)
    ids = set(meta.image_id)
    assert "Vid1_0002_fish_2" not in ids          # turning
    assert "Vid1_0300_fish_1" not in ids          # occluded
    assert "Vid2_0001_fish_5" not in ids          # occluded
    assert "Vid2_0002_fish_6" in ids              # glitch kept by default
    assert "Vid1_0240_fish_1" in ids                        # gaps are the splitter's business
    assert len(meta) == 15  # 18 boxes - turning - 2 occluded
    row = meta.set_index("image_id").loc["Vid1_0300_fish_2"]
    assert (row.identity, row.video, row.frame, row.session, row.source) == ("fish_2", "Vid1", 300, "Vid1-b01", "aau")
    assert meta.set_index("image_id").loc["Vid2_0001_fish_4", "session"] == "Vid2-b00"
    assert meta.set_index("image_id").loc["Vid1_0001_fish_1", "orientation"] == "right"
    for col in ("right", "turning", "occlusion", "glitch", "box_x0", "box_y0", "box_x1", "box_y1"):
        assert col in meta.columns
    info = json.loads((out / "dataset.json").read_text())
    assert info["source"] == "aau" and info["image_size"] == 48 and info["masks"] == "estimate"
    assert info["keep_occluded"] is False and info["time_block_frames"] == 250
    for image_id in meta.image_id:
        assert _png(out / "images" / f"{image_id}.png").shape[:2] == (48, 48)
        assert (out / "masks" / "fish" / f"{image_id}.png").exists()


def test_options_keep_occluded_turning_and_drop_glitch(aau, tmp_path):
    out = write_aau(aau, tmp_path / "out", size=32, keep_occluded=True, keep_turning=True,
                    keep_glitch=False, masks="none", progress=False)
    ids = set(_meta(out).image_id)
    assert {"Vid1_0002_fish_2", "Vid2_0001_fish_5", "Vid1_0240_fish_1"} <= ids
    assert "Vid2_0002_fish_6" not in ids and "Vid1_0300_fish_1" not in ids  # glitch
    assert not (out / "masks").exists()
    assert json.loads((out / "dataset.json").read_text())["masks"] == "none"


@pytest.mark.parametrize("image_id", ["Vid1_0001_fish_1", "Vid1_0001_fish_2", "Vid2_0001_fish_4"])
def test_marker_at_box_centre_lands_at_crop_centre(aau, tmp_path, image_id):
    out = write_aau(aau, tmp_path / "out", size=64, masks="none", progress=False)
    img = _png(out / "images" / f"{image_id}.png").astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 110) & (img[..., 2] < 110)
    ys, xs = np.nonzero(red)
    assert len(ys) > 0
    assert abs(ys.mean() - 31.5) <= 1.0 and abs(xs.mean() - 31.5) <= 1.0


def test_edge_box_gives_full_centred_square(aau, tmp_path):
    out = write_aau(aau, tmp_path / "out", size=60, crop_scale=1.0, masks="none", progress=False)
    img = _png(out / "images" / "Vid1_0001_fish_3.png").astype(int)
    assert img.shape == (60, 60, 3)
    # the 60x20 box at the bottom edge: the fish fills the middle rows, padding repeats the edge row
    assert abs(img[30, 30] - np.array([255, 0, 0])).sum() < 120
    assert np.array_equal(img[-1], img[-5])


def test_crop_scale_widens_the_crop(aau, tmp_path):
    out = write_aau(aau, tmp_path / "out", size=64, crop_scale=2.0, masks="none", progress=False)
    img = _png(out / "images" / "Vid1_0001_fish_2.png").astype(int)
    assert (img[2, 2] == 230).all()  # corner is background, the fish sits in the middle half


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="aau-zebrafish-reid"):
        write_aau(tmp_path / "nowhere", tmp_path / "out", progress=False)


def test_missing_annotations(aau, tmp_path):
    (aau / "annotations.csv").unlink()
    with pytest.raises(FileNotFoundError, match="annotations.csv"):
        read_annotations(aau)


def test_missing_column_is_named(aau):
    text = (aau / "annotations.csv").read_text().replace("Object ID", "Fish")
    (aau / "annotations.csv").write_text(text)
    with pytest.raises(DataFormatError, match="Object ID"):
        read_annotations(aau)


def test_missing_frame_is_named(aau, tmp_path):
    (aau / "data" / "Vid2_0002.png").unlink()
    with pytest.raises(FileNotFoundError, match="Vid2_0002.png"):
        write_aau(aau, tmp_path / "out", progress=False)


def test_failing_run_keeps_existing_output(aau, tmp_path):
    out = write_aau(aau, tmp_path / "out", size=32, masks="none", progress=False)
    before = _meta(out)
    (aau / "data" / "Vid2_0002.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match="Vid2_0002.png"):
        write_aau(aau, out, size=32, masks="none", progress=False)
    assert _meta(out).equals(before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_bad_options(aau, tmp_path):
    with pytest.raises(ValueError, match="masks"):
        write_aau(aau, tmp_path / "out", masks="given", progress=False)
    with pytest.raises(ValueError, match="time_block_frames=0"):
        write_aau(aau, tmp_path / "out", time_block_frames=0, progress=False)

"""Pose normalisation (zfutils/data/align.py): hand-drawn fish of known pose come out level, head
right, centred and of the configured length; a mirrored frame gives the same aligned fish; the
aligned data set and stage 01's switch."""
import json

import cv2
import numpy as np
import pytest

from tests.helpers import write_tiny_dataset
from zfutils import config
from zfutils.data.align import ALIGN_COLUMNS, align_dataset, align_fish, fish_pose
from zfutils.data.build import build_key, prepare_dataset, summarize
from zfutils.data.format import read_dataset

SIZE = 96


def drawn_fish(angle: float, centre=(40.0, 52.0), head_right: bool = True):
    """A side-view fish of length 48: a deep head-and-trunk ellipse and a thin tail, with a red
    spot on the head and a stripe pattern on the trunk, turned by `angle` degrees."""
    image = np.full((SIZE, SIZE, 3), 90, np.uint8)
    fish = np.zeros((SIZE, SIZE), np.uint8)
    pattern = np.zeros((SIZE, SIZE), np.uint8)
    side = 1 if head_right else -1
    cx, cy = centre
    cv2.ellipse(fish, (int(cx + side * 6), int(cy)), (18, 7), 0, 0, 360, 1, -1)            # head and trunk
    cv2.rectangle(fish, (int(cx - side * 24), int(cy - 2)), (int(cx - side * 10), int(cy + 2)), 1, -1)  # tail
    cv2.ellipse(pattern, (int(cx), int(cy)), (8, 4), 0, 0, 360, 1, -1)
    image[fish > 0] = (200, 200, 160)
    image[pattern > 0] = (40, 40, 90)
    cv2.circle(image, (int(cx + side * 19), int(cy)), 2, (255, 0, 0), -1)                  # eye on the head
    turn = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    warp = lambda a, f: cv2.warpAffine(a, turn, (SIZE, SIZE), flags=f, borderMode=cv2.BORDER_REPLICATE)  # noqa: E731
    return warp(image, cv2.INTER_LINEAR), warp(fish, cv2.INTER_NEAREST) > 0, warp(pattern, cv2.INTER_NEAREST) > 0


@pytest.mark.parametrize("angle", [0.0, 25.0, -40.0])
@pytest.mark.parametrize("head_right", [True, False])
def test_a_drawn_fish_comes_out_level_head_right_centred_and_scaled(angle, head_right):
    image, fish, pattern = drawn_fish(angle, head_right=head_right)
    aligned, afish, apattern, record = align_fish(image, fish, pattern, fill=0.8)
    assert record["align_ok"] and record["align_mirrored"] == (not head_right)
    pose = fish_pose(afish)
    assert abs(pose.heading[0]) > 0.99 and pose.heading[0] > 0            # level, head to +x
    assert np.allclose(pose.centre, [SIZE / 2, SIZE / 2], atol=2.0)         # centred
    assert pose.length == pytest.approx(0.8 * SIZE, rel=0.05)               # spans the fill share
    red = np.argwhere((aligned[..., 0] > 180) & (aligned[..., 1] < 90))
    assert len(red) and red[:, 1].mean() > SIZE * 0.7                       # the eye ended up on the right
    assert apattern.sum() > 0 and (apattern & ~afish).sum() == 0            # masks moved together
    assert abs(record["align_angle"] - (angle if head_right else -angle)) < 3
    assert record["align_scale"] == pytest.approx(0.8 * SIZE / fish_pose(fish).length, rel=1e-3)


def test_a_mirrored_frame_aligns_to_the_same_fish():
    image, fish, pattern = drawn_fish(15.0)
    straight = align_fish(image, fish, pattern)
    mirrored = align_fish(image[:, ::-1].copy(), fish[:, ::-1].copy(), pattern[:, ::-1].copy())
    assert straight[3]["align_mirrored"] != mirrored[3]["align_mirrored"]
    overlap = (straight[1] & mirrored[1]).sum() / (straight[1] | mirrored[1]).sum()
    assert overlap > 0.9


def test_an_empty_fish_mask_keeps_the_frame_and_bad_input_is_named():
    image = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    empty = np.zeros((SIZE, SIZE), bool)
    out, fish, pattern, record = align_fish(image, empty, empty)
    assert out is image and not record["align_ok"]
    with pytest.raises(ValueError, match="must have one size"):
        align_fish(image, empty[:10], empty)
    with pytest.raises(ValueError, match="align_fill"):
        align_fish(*drawn_fish(0.0), fill=1.5)


def test_align_dataset_replaces_a_data_set_with_its_aligned_copy(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", identities=2, sessions=2, per_session=2, size=32)
    before = read_dataset(root)
    align_dataset(before, root, fill=0.5)
    after = read_dataset(root)
    assert list(after.meta.columns[: len(before.meta.columns)]) == list(before.meta.columns)
    assert set(ALIGN_COLUMNS) <= set(after.meta.columns) and after.meta["align_ok"].all()
    assert after.info["aligned"] == {"fill": 0.5, "aligned": 8, "kept_frame": 0}
    # the tiny fish is a 16x8 box: aligned, it spans half of 32 px, centred
    fish = after.mask(after.meta["image_id"][0], "fish")
    xs = np.nonzero(fish.any(axis=0))[0]
    assert xs.min() >= 7 and xs.max() <= 24 and 14 <= xs.max() - xs.min() + 1 <= 18
    assert not list(tmp_path.glob(".d.*"))  # no staging folder left behind


def test_align_dataset_needs_masks_and_leaves_the_data_set_alone(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", identities=2, sessions=1, per_session=1, size=16, masks=False)
    before = (root / "metadata.csv").read_text()
    with pytest.raises(ValueError, match="needs fish masks"):
        align_dataset(read_dataset(root), root)
    assert (root / "metadata.csv").read_text() == before


def test_stage_01_aligns_when_asked_and_the_build_key_says_so(tmp_path, monkeypatch):
    from tests.helpers import tiny_synth
    from zfutils.data import build

    monkeypatch.setitem(build.SOURCES, "synth", tiny_synth)
    plain = config.resolve("smoke", None, {"data.align": False})
    aligned = config.resolve("smoke", None, {"data.align": True, "data.align_fill": 0.6})
    assert build_key(plain)["align"] is False and "align_fill" not in build_key(plain)
    assert build_key(aligned)["align_fill"] == 0.6
    data = prepare_dataset(aligned, root=tmp_path / "d")
    assert data.meta["align_ok"].all() and "split" in data.meta.columns
    assert summarize(data)["aligned"] == {"fill": 0.6, "aligned": len(data.meta), "kept_frame": 0}
    assert json.loads((data.root / "dataset.json").read_text())["build_key"] == build_key(aligned)
    rebuilt = prepare_dataset(plain, root=tmp_path / "d")
    assert "align_ok" not in rebuilt.meta.columns


def test_a_source_without_masks_fails_alignment_and_leaves_the_old_data_set(tmp_path, monkeypatch):
    from zfutils.data import build

    monkeypatch.setitem(build.SOURCES, "synth", lambda cfg, out: write_tiny_dataset(out, size=16))
    prepare_dataset(config.resolve("smoke", None, {"data.image_size": 16, "data.align": False}), root=tmp_path / "d")
    before = (tmp_path / "d" / "metadata.csv").read_text()
    monkeypatch.setitem(build.SOURCES, "synth", lambda cfg, out: write_tiny_dataset(out, size=16, masks=False))
    with pytest.raises(ValueError, match="data.align needs fish masks"):
        prepare_dataset(config.resolve("smoke", None, {"data.image_size": 16, "data.align": True}), root=tmp_path / "d")
    assert (tmp_path / "d" / "metadata.csv").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no frames or staging folder left

import numpy as np
import pandas as pd
import pytest

from zfutils import config
from zfutils.data.splits import SplitError, assign_splits, session_labels, split_table, stratified_labels


def table(identities=6, sessions=5, per_session=8, unequal=False):
    rows = []
    for i in range(identities):
        for s in range(sessions):
            for f in range(per_session + (i if unequal else 0)):
                rows.append({"image_id": f"f{i}_s{s}_{f}", "identity": f"fish_{i}", "session": f"s{s}",
                             "frame": f, "source": "synth"})
    return pd.DataFrame(rows)


SPLIT_CFG = config.resolve("quick")["split"]


def test_stratified_labels_exact_per_identity():
    meta = table(unequal=True)
    labels = stratified_labels(meta["identity"], [0.8, 0.1, 0.1], np.random.default_rng(0))
    for ident, rows in labels.groupby(meta["identity"]):
        counts = rows.value_counts()
        n = len(rows)
        assert abs(counts["train"] - 0.8 * n) <= 1 and abs(counts["val"] - 0.1 * n) <= 1
        assert set(counts.index) == {"train", "val", "test"}


def test_assign_splits_no_overlap_and_all_columns():
    meta, notes = assign_splits(table(), SPLIT_CFG, seed=1, has_pattern_masks=True)
    inpaint = meta["task"] == "inpaint"
    assert 0.25 < inpaint.mean() < 0.35
    # each image belongs to exactly one task and one split per rule
    assert (meta.loc[inpaint, ["split_random", "split_session", "split_open"]] == "").all().all()
    assert (meta.loc[~inpaint, "split_inpaint"] == "").all()
    assert set(meta.loc[inpaint, "split_inpaint"]) == {"train", "val", "test"}
    for col in ("split_random", "split_session"):
        assert set(meta.loc[~inpaint, col]) <= {"train", "val", "test"}
    assert (meta["split"] == meta["split_session"]).all()  # quick selects the session split
    assert notes == {}


def test_inpaint_images_are_drawn_within_every_identity_and_session():
    meta, _ = assign_splits(table(sessions=3, per_session=4), SPLIT_CFG, seed=2, has_pattern_masks=True)
    per_cell = meta.groupby(["identity", "session"])["task"].apply(lambda t: (t == "classify").sum())
    assert set(per_cell) <= {2, 3}  # 4 images per cell: 1.2 for inpainting on average, the rest classify
    meta, _ = assign_splits(table(sessions=3, per_session=1), SPLIT_CFG, seed=2, has_pattern_masks=True)
    assert (meta["task"] == "classify").all()  # a lone image always stays for classification


def test_inpaint_ratios_close_to_80_16_4():
    meta, _ = assign_splits(table(per_session=40), SPLIT_CFG, seed=0, has_pattern_masks=True)
    share = meta.loc[meta["task"] == "inpaint", "split_inpaint"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.80, abs=0.02)
    assert share["val"] == pytest.approx(0.16, abs=0.02)
    assert share["test"] == pytest.approx(0.04, abs=0.02)


def test_session_split_keeps_sessions_apart_and_every_identity_everywhere():
    meta, _ = assign_splits(table(sessions=10), SPLIT_CFG, seed=3, has_pattern_masks=True)
    cls = meta[meta["task"] == "classify"]
    per_session = cls.groupby("session")["split_session"].nunique()
    assert (per_session == 1).all()
    for split in ("train", "val", "test"):
        assert cls.loc[cls["split_session"] == split, "identity"].nunique() == 6


def test_session_split_groups_by_individuals_shown():
    # two "videos": fish 0-2 only in v1 blocks, fish 3-5 only in v2 blocks (as AAU)
    meta = table(identities=6, sessions=4)
    meta["video"] = np.where(meta["identity"].str[-1].astype(int) < 3, "v1", "v2")
    meta["session"] = meta["video"] + "-" + meta["session"]
    labels = session_labels(meta, [0.5, 0.25, 0.25], np.random.default_rng(0))
    for split in ("train", "val", "test"):
        assert meta.loc[labels == split, "identity"].nunique() == 6
    assert (meta.groupby("session").apply(lambda r: labels[r.index].nunique()) == 1).all()


def test_session_split_names_an_individual_it_cannot_place():
    meta = table(identities=3, sessions=6)
    meta = meta[~((meta["identity"] == "fish_2") & (meta["session"] != "s0"))]  # fish_2 only in s0
    with pytest.raises(SplitError, match=r"left \['fish_2'\] without"):
        session_labels(meta, [0.8, 0.1, 0.1], np.random.default_rng(0))


def test_session_split_with_too_few_sessions_says_why():
    with pytest.raises(SplitError, match="at least 3 sessions"):
        session_labels(table(sessions=2), [0.8, 0.1, 0.1], np.random.default_rng(0))
    cfg = {**SPLIT_CFG, "classify": "session"}
    with pytest.raises(SplitError, match="at least 3 sessions"):
        assign_splits(table(sessions=2), cfg, seed=0, has_pattern_masks=False)
    # not selected: recorded as a note instead of failing
    meta, notes = assign_splits(table(sessions=2), {**cfg, "classify": "random"}, seed=0, has_pattern_masks=False)
    assert "session" in notes and (meta["split_session"] == "").all()


def test_gap_frames_dropped_at_block_changes():
    meta = pd.DataFrame({"image_id": [f"i{k}" for k in range(60)], "identity": "fish_1", "video": "Vid1",
                         "frame": range(60), "session": [f"b{k // 10}" for k in range(60)], "source": "aau"})
    labels = session_labels(meta, [0.6, 0.2, 0.2], np.random.default_rng(0), gap_frames=3)
    kept = labels[labels != "gap"]
    assert (labels == "gap").sum() > 0
    frames = meta.loc[kept.index, "frame"].to_numpy()
    splits = kept.to_numpy()
    for a in range(len(frames)):
        for b in range(len(frames)):
            if splits[a] != splits[b]:
                assert abs(frames[a] - frames[b]) > 3  # neighbours across splits are gone
    # the first block keeps its start: gaps only follow a change
    assert labels[meta["frame"] == 0].item() != "gap"


def test_open_split_holds_out_whole_individuals():
    meta, _ = assign_splits(table(), {**SPLIT_CFG, "classify": "open", "open_holdout": 2}, seed=0, has_pattern_masks=True)
    cls = meta[meta["task"] == "classify"]
    test_ids = set(cls.loc[cls["split_open"] == "test", "identity"])
    known_ids = set(cls.loc[cls["split_open"].isin(["train", "val"]), "identity"])
    assert len(test_ids) == 2 and len(known_ids) == 4 and not test_ids & known_ids


def test_no_pattern_masks_means_no_inpainting_set():
    meta, notes = assign_splits(table(), SPLIT_CFG, seed=0, has_pattern_masks=False)
    assert (meta["task"] == "classify").all() and "inpaint" in notes


def test_splits_are_deterministic_by_seed():
    a, _ = assign_splits(table(), SPLIT_CFG, seed=5, has_pattern_masks=True)
    b, _ = assign_splits(table(), SPLIT_CFG, seed=5, has_pattern_masks=True)
    c, _ = assign_splits(table(), SPLIT_CFG, seed=6, has_pattern_masks=True)
    assert a.equals(b) and not a["split_random"].equals(c["split_random"])


def test_split_table_counts():
    meta, _ = assign_splits(table(), SPLIT_CFG, seed=0, has_pattern_masks=True)
    t = split_table(meta)
    assert t.loc["inpaint"].sum() == (meta["task"] == "inpaint").sum()
    assert t.loc["random"].sum() == (meta["task"] == "classify").sum()

import numpy as np
import pandas as pd
import pytest
import torch

from tests.test_torchsets import split_data
from zfutils.data.ablation import (CONDITIONS, AblationSet, ablation_sets, apply_condition, kept_region,
                              select_ablation_rows)
from zfutils.data.format import read_dataset
from zfutils.data.splits import SplitError
from zfutils.data.torchsets import ClassificationSet


def grid(*rows: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row] for row in rows])


# Regions of the hand-made example, pixel by pixel (row-major):
#   B F P B
#   B F P B
#   B F P F
#   P B B B      (bottom-left: a pattern pixel outside the fish, so P)
FISH = grid("0110", "0110", "0111", "0000")
PATTERN = grid("0010", "0010", "0010", "1000")
EXPECTED = {
    "background_only": grid("1001", "1001", "1000", "0111"),
    "fish_only": grid("0100", "0100", "0101", "0000"),
    "pattern_only": grid("0010", "0010", "0010", "1000"),
    "no_background": grid("0110", "0110", "0111", "1000"),
    "no_fish": grid("1011", "1011", "1010", "1111"),
    "no_pattern": grid("1101", "1101", "1101", "0111"),
    "all": grid("1111", "1111", "1111", "1111"),
}
FILL = (0.25, 0.5, 1.0)


def test_conditions_in_the_study_order():
    assert CONDITIONS == ("background_only", "fish_only", "pattern_only", "no_background", "no_fish",
                          "no_pattern", "all")


@pytest.mark.parametrize("condition", CONDITIONS)
def test_kept_region_on_a_hand_made_example(condition):
    assert torch.equal(kept_region(condition, FISH, PATTERN), EXPECTED[condition])
    assert torch.equal(kept_region(condition, FISH[None], PATTERN[None]), EXPECTED[condition][None])


def test_regions_partition_the_image():
    rng = torch.Generator().manual_seed(0)
    fish, pattern = (torch.rand(2, 1, 8, 8, generator=rng) > 0.5 for _ in range(2))
    b, f, p = (kept_region(c, fish, pattern) for c in ("background_only", "fish_only", "pattern_only"))
    assert not (b & f).any() and not (b & p).any() and not (f & p).any()
    assert (b | f | p).all()
    for condition, parts in {"no_background": f | p, "no_fish": b | p, "no_pattern": b | f, "all": b | f | p}.items():
        assert torch.equal(kept_region(condition, fish, pattern), parts)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_apply_condition_fills_exactly_the_removed_pixels(condition):
    image = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1))
    out = apply_condition(image, FISH[None], PATTERN[None], condition, FILL)
    kept = EXPECTED[condition]
    assert out.shape == image.shape and out.dtype == image.dtype
    assert torch.equal(out[:, kept], image[:, kept])
    for channel, value in enumerate(FILL):
        assert (out[channel][~kept] == value).all()
    assert torch.equal(image, torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1)))  # input untouched


def test_apply_condition_on_a_batch_uses_each_image_s_masks():
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    fish = torch.stack([FISH, ~FISH])[:, None]
    pattern = torch.stack([PATTERN, torch.zeros_like(PATTERN)])[:, None]
    out = apply_condition(images, fish, pattern, "pattern_only", FILL)
    assert out.shape == (2, 3, 4, 4)
    assert torch.equal(out[0], apply_condition(images[0], FISH, PATTERN, "pattern_only", FILL))
    assert torch.equal(out[1], torch.tensor(FILL).view(3, 1, 1).expand(3, 4, 4))  # no pattern: all filled
    assert kept_region("fish_only", fish, pattern).shape == (2, 1, 4, 4)


def test_unknown_condition_and_bad_fill_say_what_to_do():
    with pytest.raises(ValueError, match="unknown ablation condition 'no_tail'.*background_only.*all"):
        kept_region("no_tail", FISH, PATTERN)
    with pytest.raises(ValueError, match="fill must be 3 values in"):
        apply_condition(torch.rand(3, 4, 4), FISH, PATTERN, "all", (0, 128, 255))


def fake_meta() -> pd.DataFrame:
    """3 individuals x 6 sessions x 5 frames; frame 0 is inpainting; sessions 4-5 are test (only 5 for fish_2)."""
    rows = []
    for i in range(3):
        for s in range(6):
            for f in range(5):
                test = s == 5 or (s == 4 and i < 2)
                split = "" if f == 0 else ("test" if test else ("val" if s == 3 else "train"))
                rows.append({"image_id": f"fish_{i}_s{s}_{f}", "identity": f"fish_{i}", "session": f"s{s}",
                             "frame": f, "task": "inpaint" if f == 0 else "classify", "split": split})
    return pd.DataFrame(rows)


RATIOS = (0.8, 0.1, 0.1)


def test_selection_takes_at_most_n_per_individual_from_the_test_split():
    meta = fake_meta()
    rows = select_ablation_rows(meta, per_individual=6, seed=0, ratios=RATIOS, rule="random")
    assert (rows["task"] == "classify").all() and (rows["split"] == "test").all()
    assert rows["identity"].value_counts().to_dict() == {"fish_0": 6, "fish_1": 6, "fish_2": 4}  # fish_2 has 4
    assert rows.attrs["ablation"]["taken"] == {"fish_0": 6, "fish_1": 6, "fish_2": 4}
    assert rows.attrs["ablation"]["available"] == {"fish_0": 8, "fish_1": 8, "fish_2": 4}
    assert "split_ablation" not in meta.columns  # the caller's table is not changed


def test_selection_is_deterministic_by_seed():
    meta = fake_meta()
    pick = lambda seed: select_ablation_rows(meta, per_individual=5, seed=seed, ratios=RATIOS, rule="random")
    first, again = pick(3), pick(3)
    assert first.equals(again)
    assert any(not set(pick(s)["image_id"]) == set(first["image_id"]) for s in (4, 5, 6))


def test_random_resplit_is_disjoint_and_has_every_individual_everywhere():
    rows = select_ablation_rows(fake_meta(), per_individual=6, seed=1, ratios=RATIOS, rule="random")
    assert set(rows["split_ablation"]) == {"train", "val", "test"}
    assert not rows["image_id"].duplicated().any()  # one split per image
    for split in ("train", "val", "test"):
        assert set(rows.loc[rows["split_ablation"] == split, "identity"]) == {"fish_0", "fish_1", "fish_2"}


def test_classify_source_takes_every_split_and_session_rule_keeps_sessions_apart():
    meta = fake_meta()
    rows = select_ablation_rows(meta, per_individual=100, seed=0, ratios=RATIOS, rule="session", source="classify")
    assert len(rows) == (meta["task"] == "classify").sum()
    assert set(rows["split"]) == {"train", "val", "test"}
    assert (rows.groupby("session")["split_ablation"].nunique() == 1).all()
    for split in ("train", "val", "test"):
        assert rows.loc[rows["split_ablation"] == split, "identity"].nunique() == 3


def test_too_few_sessions_is_a_clear_error():
    with pytest.raises(SplitError, match="cannot be split by session.*ablation.source: classify"):
        select_ablation_rows(fake_meta(), per_individual=6, seed=0, ratios=RATIOS, rule="session")
    with pytest.raises(SplitError, match="too few images of \\['fish_0', 'fish_1', 'fish_2'\\]"):
        select_ablation_rows(fake_meta(), per_individual=2, seed=0, ratios=RATIOS, rule="random")
    with pytest.raises(ValueError, match="unknown ablation source 'val'"):
        select_ablation_rows(fake_meta(), per_individual=2, seed=0, ratios=RATIOS, rule="random", source="val")


def test_ablation_sets_ablate_images_and_keep_labels(tmp_path):
    data = split_data(tmp_path)
    columns = list(data.meta.columns)
    rows = select_ablation_rows(data.meta, per_individual=6, seed=0, ratios=RATIOS, rule="random",
                                source="classify")
    sets = ablation_sets(data, rows, "pattern_only", FILL)
    assert sum(len(s) for s in sets.values()) == len(rows) == 18
    assert list(data.meta.columns) == columns and list(read_dataset(data.root).meta.columns) == columns

    train = sets["train"]
    plain = train.dataset  # the wrapped ClassificationSet over the same rows
    assert train.classes == ["fish_0", "fish_1", "fish_2"] and train.rows is plain.rows
    assert set(train.rows["image_id"]) == set(rows.loc[rows["split_ablation"] == "train", "image_id"])
    item, original = train[0], plain[0]
    assert torch.equal(item["label"], original["label"]) and item["mask"].sum() == 0
    assert torch.equal(item["pattern"], original["pattern"])
    pattern = original["pattern"][0]
    assert torch.equal(item["image"][:, pattern], original["image"][:, pattern])
    assert torch.equal(item["image"][:, 0, 0], torch.tensor(FILL))  # background pixel removed
    assert torch.equal(item["image"][:, 8, 2], torch.tensor(FILL))  # fish outside the pattern removed
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].shape == (4,)


def test_ablation_set_wraps_any_classification_set(tmp_path):
    data = split_data(tmp_path)
    test = ClassificationSet(data, "test")
    ablated = AblationSet(test, condition="all", fill=FILL)
    assert len(ablated) == len(test) and ablated.class_index == test.class_index
    assert torch.equal(ablated[0]["image"], test[0]["image"])
    with pytest.raises(ValueError, match="unknown ablation condition"):
        AblationSet(test, condition="none", fill=FILL)
    assert np.array_equal(ablated.rows["image_id"], test.rows["image_id"])

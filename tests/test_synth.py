"""Tests of the synthetic zebrafish generator: determinism, identity, masks, shortcuts, errors."""
from __future__ import annotations

import dataclasses
import json
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from zfutils.data.synth import (SynthSpec, iter_samples, make_individuals, make_sessions, render_sample,
                                write_synthetic)
from zfutils.data.synth import individuals as ind_mod
from zfutils.data.synth import pattern, render
from zfutils.data.synth.paint import sample_texture


@lru_cache(maxsize=None)
def _individual(seed: int, family: str, index: int):
    """Patterns take ~0.3 s each; tests share them (the generator itself is tested uncached)."""
    return ind_mod.make_individual(seed, family, index)


def _individuals(spec: SynthSpec):
    return [_individual(spec.seed, spec.family, i) for i in range(spec.individuals)]


def _darkness_correlation(sample: dict, individual) -> float:
    m = sample["pattern_mask"]
    dark = 1 - sample["image"].mean(axis=-1)[m] / 255.0
    tex = sample_texture(individual.levels, sample["u"][m], sample["v"][m], 0.0)
    return float(np.corrcoef(dark, tex)[0, 1])


@pytest.mark.parametrize("field, value", [("individuals", 0), ("image_size", 16), ("sessions", 0),
                                          ("family", "zebra"), ("per_individual", 0)])
def test_bad_spec_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SynthSpec(**{field: value})


def test_unknown_family_lists_known_ones():
    with pytest.raises(ValueError, match="spots") as err:
        SynthSpec(family="zebra")
    assert "stripes" in str(err.value)


def test_same_spec_gives_identical_samples_and_other_seed_differs():
    spec = SynthSpec(individuals=2, per_individual=2, sessions=2, image_size=64)
    a = list(iter_samples(spec))
    b = list(iter_samples(spec, make_individuals(spec)))
    assert [s["image_id"] for s in a] == [s["image_id"] for s in b]
    for sa, sb in zip(a, b):
        for key in ("image", "fish_mask", "pattern_mask"):
            np.testing.assert_array_equal(sa[key], sb[key])
    other = SynthSpec(individuals=2, per_individual=2, sessions=2, image_size=64, seed=1)
    c = list(iter_samples(other, _individuals(other)))
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    assert not np.array_equal(_individual(0, "stripes", 0).texture, _individual(1, "stripes", 0).texture)


def test_individual_does_not_depend_on_how_many_there_are():
    few = make_individuals(SynthSpec(individuals=1))
    many = _individuals(SynthSpec(individuals=2))
    assert few[0].identity == many[0].identity == "fish_01"
    np.testing.assert_array_equal(few[0].texture, many[0].texture)
    assert few[0].body == many[0].body
    assert not np.array_equal(many[0].texture, many[1].texture)


def test_every_session_shows_every_individual_and_ids_are_unique():
    spec = SynthSpec(individuals=2, per_individual=5, sessions=3, image_size=32)
    rows = [{k: s[k] for k in ("image_id", "identity", "session", "frame", "flip", "angle", "scale", "bend", "occluded")}
            for s in iter_samples(spec, _individuals(spec))]
    meta = pd.DataFrame(rows)
    assert meta["image_id"].is_unique
    assert (meta.groupby("identity").size() == 5).all()
    assert (meta.groupby("session")["identity"].nunique() == 2).all()
    assert meta["session"].nunique() == 3


def test_pattern_in_images_is_the_individuals_texture():
    """Mapped back to body coordinates, image darkness follows the fish's own texture closely
    and other individuals' textures clearly less, in every session."""
    spec = SynthSpec(individuals=3, image_size=128, occlusion=0.0)
    fish = _individuals(spec)
    sessions = make_sessions(spec)
    for who in range(2):
        for session in sessions[:2]:
            sample = render_sample(spec, fish[who], session, 0, coords=True)
            own = _darkness_correlation(sample, fish[who])
            others = [_darkness_correlation(sample, f) for f in fish if f is not fish[who]]
            assert own > 0.8, own
            assert own - max(others) > 0.1, (own, others)


def test_masks_agree_with_what_is_drawn():
    spec = SynthSpec(individuals=2, image_size=96, blur=0.0, occlusion=0.0)
    a, b = _individuals(spec)
    session = make_sessions(spec)[0]
    for frame in range(3):
        params = render.sample_params(np.random.default_rng(frame), spec.image_size, session, blur=0.0, occlusion=0)
        ra = render.render(a.levels, params, session, coords=True)
        rb = render.render(b.levels, params, session, coords=True)
        fish, pat = ra["fish_mask"], ra["pattern_mask"]
        assert pat.sum() > 0.3 * fish.sum() and not (pat & ~fish).any()
        # another skin changes nothing outside the fish (one pixel of anti-aliased edge allowed)
        diff = np.abs(ra["image"].astype(int) - rb["image"].astype(int)).max(axis=-1)
        assert diff[~ndimage.binary_dilation(fish, np.ones((3, 3)))].max() == 0
        assert diff[pat].mean() > 10
        # every pixel that received stripe colour on the body lies inside the pattern mask
        striped = ra["dark"] > 0.5
        assert striped.sum() > 0.2 * pat.sum()
        assert (striped & ~pat).sum() <= 0.01 * striped.sum()


def test_occluders_are_removed_from_masks():
    spec = SynthSpec(individuals=1, image_size=64, occlusion=1.0)
    fish = _individuals(spec)[0]
    seen = 0
    sessions = make_sessions(spec)
    for k in range(12):
        session = sessions[k % len(sessions)]
        params = render.sample_params(np.random.default_rng(k), 64, session, occlusion=1.0)
        clear = render.render(fish.levels, dataclasses.replace(params, occluder=None), session)
        hidden = render.render(fish.levels, params, session)
        assert not (hidden["fish_mask"] & ~clear["fish_mask"]).any()
        assert not (hidden["pattern_mask"] & ~hidden["fish_mask"]).any()
        if hidden["occluded"]:
            seen += 1
            assert hidden["fish_mask"].sum() < clear["fish_mask"].sum()
    assert seen >= 3


def _background_hue(sample: dict) -> np.ndarray:
    """Mean background colour divided by its brightness (exposure varies per image)."""
    bg = ~ndimage.binary_dilation(sample["fish_mask"], iterations=3)
    colour = sample["image"][bg].mean(axis=0)
    return colour / colour.mean()


@pytest.mark.parametrize("knob", [False, True])
def test_shortcut_background_ties_background_to_identity(knob):
    spec = SynthSpec(individuals=2, sessions=3, image_size=64, occlusion=0.0, shortcut_background=knob)
    a, b = _individuals(spec)
    gaps = [np.abs(_background_hue(render_sample(spec, a, s, 0)) - _background_hue(render_sample(spec, b, s, 0))).max()
            for s in make_sessions(spec)]
    assert (min(gaps) > 0.05) if knob else (max(gaps) < 0.03), gaps


@pytest.mark.parametrize("knob", [False, True])
def test_shortcut_body_ties_size_to_identity(knob):
    """F statistic of fish area between vs within identities: ~1 without the knob, large with."""
    spec = SynthSpec(individuals=3, sessions=4, image_size=64, occlusion=0.0, shortcut_body=knob)
    areas = np.array([[render_sample(spec, f, s, k)["fish_mask"].sum() for s in make_sessions(spec) for k in range(2)]
                      for f in _individuals(spec)], float)
    between = areas.mean(axis=1).var(ddof=1) * areas.shape[1]
    within = areas.var(axis=1, ddof=1).mean()
    assert (between / within > 10) if knob else (between / within < 4), between / within


def test_stripes_run_along_the_body_in_the_zebrafish_plan_and_spots_do_not():
    stripes = _individual(0, "stripes", 0).texture
    spots = _individual(0, "spots", 0).texture
    rows = stripes.shape[0]
    body = slice(int(0.03 / pattern.V_MAX * rows), int(0.97 / pattern.V_MAX * rows))

    def along_vs_across(tex):
        return np.abs(np.diff(tex, axis=0)).mean() / np.abs(np.diff(tex, axis=1)).mean()
    assert along_vs_across(stripes) > 3 > 1.5 > along_vs_across(spots)
    dark = stripes[body] > 0.5
    bands = (np.diff(dark.astype(int), axis=0) == 1).sum(axis=0) + dark[0]
    assert 4 <= np.median(bands) <= 5
    midline = stripes[int(0.47 / pattern.V_MAX * rows):int(0.53 / pattern.V_MAX * rows)]
    assert midline.mean() < 0.3                       # light central interstripe
    assert 0.1 < (spots[body] > 0.5).mean() < 0.45   # separate spots on a light ground


def test_write_synthetic_writes_the_common_format(tmp_path):
    spec = SynthSpec(individuals=1, per_individual=3, sessions=2, image_size=32)
    root = write_synthetic(spec, tmp_path / "synth")
    meta = pd.read_csv(root / "metadata.csv")
    assert len(meta) == 3 and set(meta["session"]) == {"s01", "s02"}
    assert list(meta.columns[:5]) == ["image_id", "identity", "session", "frame", "source"]
    for image_id in meta["image_id"]:
        assert (root / "images" / f"{image_id}.png").exists()
        assert (root / "masks" / "pattern" / f"{image_id}.png").exists()
    info = json.loads((root / "dataset.json").read_text())
    assert info["masks"] == "exact" and info["spec"]["image_size"] == 32

"""Stage 06 (training-set size): exactly N images per individual from the session split's training
part only, seeded and reproducible; the pattern families' data folders; the sweep end to end on a
tiny data set (shallow, deep and matching); its tables and figures."""
import json

import pytest

from tests.helpers import prepare_tiny_study
from tests.test_torchsets import split_data
from zfutils import config, fewshot, paths, plots
from zfutils.data import families
from zfutils.stage import open_stage
from zfutils.stages import vary_training_size


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    overrides = {"classify.init": "random", "size_study.per_individual": [1, 2, 50], "size_study.seeds": [0, 1],
                 "size_study.min_steps": 4, "classify.batch_size": 4}
    return prepare_tiny_study(tmp_path, monkeypatch, overrides)  # stage 01


def test_select_exactly_n_per_individual_from_the_training_split_only(tmp_path):
    data = split_data(tmp_path, per_session=6)
    meta = data.meta  # every row: inpainting images and the val / test sessions included
    train = (meta["task"] == "classify") & (meta["split_session"] == "train")
    available = fewshot.available_per_individual(meta)
    assert available == meta[train].groupby("identity").size().min() >= 3
    for n in (1, 3, available):
        for seed in (0, 1):
            chosen = meta.iloc[fewshot.select_per_individual(meta, n, seed)]
            assert chosen.groupby("identity").size().to_dict() == {f"fish_{i}": n for i in range(3)}
            assert (chosen["split_session"] == "train").all() and (chosen["task"] == "classify").all()
    def pick(frame, n, seed):
        return sorted(frame.iloc[fewshot.select_per_individual(frame, n, seed)]["image_id"])

    assert pick(meta, 3, 0) == pick(meta, 3, 0)  # reproducible
    assert pick(meta, 3, 0) != pick(meta, 3, 1)  # another seed, another draw
    assert set(pick(meta, 2, 0)) <= set(pick(meta, 3, 0))  # nested: a larger N keeps the smaller draw
    shuffled = meta.sample(frac=1, random_state=3).reset_index(drop=True)
    assert pick(shuffled, 3, 0) == pick(meta, 3, 0)  # the draw does not depend on the row order
    with pytest.raises(ValueError, match=f"fewer than n = {available + 1}"):
        fewshot.select_per_individual(meta, available + 1, 0)
    assert fewshot.usable_sizes([50, 1, 2, 2], available) == ([1, 2], [50])


def test_pattern_families_get_their_own_data_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke")
    assert paths.data_dir("smoke", "synth") == tmp_path / "data" / "smoke" / "synth"  # unchanged for stage 01
    assert families.every(cfg) == ["stripes", "spots"]
    assert families.root(cfg, "stripes") == paths.data_dir("smoke", "synth")
    assert families.root(cfg, "spots") == tmp_path / "data" / "smoke" / "synth-spots"
    spots = config.resolve("smoke", None, {"data.synth.family": "spots"})
    assert families.root(spots, "spots") == paths.data_dir("smoke", "synth")
    assert families.root(spots, "stripes") == tmp_path / "data" / "smoke" / "synth-stripes"
    assert families.family_config(cfg, "spots")["data"]["synth"]["family"] == "spots"
    assert cfg["data"]["synth"]["family"] == "stripes"  # the run's config is left alone
    real = config.resolve("smoke", None, {"data.source": "folder", "data.path": str(tmp_path)})
    assert families.every(real) == ["folder"] and families.others(real) == []
    with pytest.raises(ValueError, match="unknown pattern family 'dots'"):
        families.family_config(cfg, "dots")


def test_size_sweep_end_to_end_on_tiny_data(tiny):
    stage = open_stage(vary_training_size.STAGE, "smoke", backbone="aotgan", overrides=tiny)
    results = vary_training_size.run_study(stage)
    assert list(results["families"]) == ["stripes", "spots"]
    for family, f in results["families"].items():
        assert f["sizes"] == [1, 2] and f["dropped"] == [50] and f["n_individuals"] == 4
        assert set(f["accuracy"]) == {"shallow"}
        assert {n: set(s) for n, s in f["accuracy"]["shallow"].items()} == {"1": {"0", "1"}, "2": {"0", "1"}}
        assert all(0 <= a <= 1 for s in f["accuracy"]["shallow"].values() for a in s.values())
        result = json.loads((stage.dir / "runs" / family / "shallow" / "n002_seed1" / "result.json").read_text())
        assert result["result"]["n_train"] == 8 and result["result"]["epochs"] >= 2
        assert not (stage.dir / "runs" / family / "shallow" / "n002_seed1" / "checkpoints").exists()
    assert (paths.data_dir("smoke", "synth", "spots") / "metadata.csv").is_file()  # built on first use
    assert json.loads((stage.dir / "metrics.json").read_text())["families"]["spots"]["accuracy"] == \
        results["families"]["spots"]["accuracy"]
    again = vary_training_size.run_study(stage)  # stored results come back as they were
    assert again["families"] == results["families"]

    table = vary_training_size.accuracy_table(results, "aotgan")
    assert len(table) == 4 and table.loc[("aotgan", "spots", "shallow", 2), "seeds"] == 2
    assert set(vary_training_size.curves(results)) == {"stripes", "spots"}
    assert list(vary_training_size.plan_table(results)["sizes dropped"]) == ["50", "50"]
    fig = plots.size_curves({"aotgan": vary_training_size.curves(results)}, {"aotgan": vary_training_size.chance(results)})
    assert len(fig.axes[0].lines) >= 3  # two curves and chance

    cfg = config.resolve("smoke", None, tiny)
    [report] = vary_training_size.report_tables(cfg, ["aotgan", "lama"])
    assert list(report.values.columns) == ["N=1", "N=2"] and list(report.values.index) == [
        "aotgan (random init) shallow, stripes", "aotgan (random init) shallow, spots"]
    assert len(report.values.iloc[0, 0]) == 2  # one accuracy per seed: the report shows mean ± std
    assert vary_training_size.report_figure(cfg, ["aotgan"]) == paths.figures_dir("smoke") / "size_study.png"
    assert (paths.figures_dir("smoke") / "size_study.png").is_file()


def test_deep_mode_trains_the_whole_classifier_on_n_images(tiny):
    overrides = {**tiny, "size_study.modes": ["deep"], "size_study.per_individual": [1], "size_study.seeds": [0]}
    stage = open_stage(vary_training_size.STAGE, "smoke", backbone="aotgan", overrides=overrides)
    results = vary_training_size.run_study(stage)
    f = results["families"]["stripes"]
    assert set(f["accuracy"]) == {"deep"} and 0 <= f["accuracy"]["deep"]["1"]["0"] <= 1
    log = (stage.dir / "runs" / "stripes" / "deep" / "n001_seed0" / "train_log.jsonl").read_text().splitlines()
    assert len([line for line in log if '"kind": "epoch"' in line]) == fewshot.epochs_for(4, stage.cfg, 4)


def test_epochs_for_small_training_sets():
    cfg = config.resolve("smoke", None, {"classify.batch_size": 8, "classify.max_batches": None, "classify.epochs": 2})
    assert fewshot.epochs_for(6, cfg, 10) == 10    # one batch per epoch
    assert fewshot.epochs_for(80, cfg, 10) == 2    # ten batches: classify.epochs suffices
    assert fewshot.epochs_for(17, cfg, 10) == 5    # two full batches per epoch


def test_matching_backbone_puts_n_images_in_its_gallery(tiny):
    stage = open_stage(vary_training_size.STAGE, "smoke", backbone="sift", overrides={**tiny, "size_study.seeds": [0]})
    results = vary_training_size.run_study(stage)
    assert results["method"] == "matching" and results["modes"] == ["matching"]
    for f in results["families"].values():
        assert set(f["accuracy"]) == {"matching"} and set(f["accuracy"]["matching"]) == {"1", "2"}
        assert f["cost"]["gallery_images"] <= 4 * 2 and f["cost"]["queries"] == f["n_test"]
    [report] = vary_training_size.report_tables(config.resolve("smoke", None, {**tiny, "size_study.seeds": [0]}), ["sift"])
    assert list(report.values.index) == ["sift (no training), stripes", "sift (no training), spots"]


def test_report_table_merges_over_training_seeds(tmp_path, monkeypatch):
    """With several training seeds each seed's cell is its mean over draws, so the report's seed
    merge reads mean ± std over training seeds."""
    from zfutils import tables
    from zfutils.stages import report

    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke", None, {"seeds": [0, 7]})
    for run_seed, acc in ((0, [0.2, 0.4]), (7, [0.6, 0.8])):
        d = paths.stage_dir("smoke", vary_training_size.STAGE, "lama", run_seed)
        d.mkdir(parents=True)
        accuracy = {"shallow": {"1": {"0": acc[0], "1": acc[1]}}}
        (d / "metrics.json").write_text(json.dumps({"families": {"stripes": {
            "chance": 0.25, "dropped": [50], "init": {"init": "inpainting"}, "accuracy": accuracy}}}))
    per_seed = [vary_training_size.report_tables(cfg, ["lama"], s) for s in (0, 7)]
    assert per_seed[0][0].values.loc["lama shallow, stripes", "N=1"] == pytest.approx(0.3)
    [merged] = report.merge_seeds(per_seed)
    assert tables.marked(merged).loc["lama shallow, stripes", "N=1"] == "0.500 ± 0.200"
    assert "stripes: N=50" in merged.caption
    assert vary_training_size.report_figure(cfg, ["lama"]).is_file()

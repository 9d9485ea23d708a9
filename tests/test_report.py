"""The report's formatting: best bold, worst italic, ties, direction, mean ± std; and its tables."""
import json

import numpy as np
import pandas as pd

from zfutils import config, paths, tables
from zfutils.stages import report


def test_mean_std_formats_one_or_several_seeds():
    assert tables.mean_std(0.5) == "0.500"
    assert tables.mean_std([0.5, 0.7]) == "0.600 ± 0.100"
    assert tables.mean_std(None) == "–" and tables.mean_std(float("nan")) == "–"
    assert tables.mean_std([0.5, float("nan")]) == "0.500"


def test_row_marking_best_bold_worst_italic_with_ties():
    t = tables.Table("t", "T", pd.DataFrame({"a": [0.9, 0.2], "b": [0.1, 0.2], "c": [0.9, 0.5]}, index=["x", "y"]),
                     "caption", mark="row")
    text = tables.marked(t)
    assert text.loc["x", "a"] == "**0.900**" and text.loc["x", "c"] == "**0.900**"  # tied best both bold
    assert text.loc["x", "b"] == "*0.100*"
    assert text.loc["y", "c"] == "**0.500**" and text.loc["y", "a"] == "*0.200*" and text.loc["y", "b"] == "*0.200*"


def test_column_marking_follows_each_metrics_direction():
    values = pd.DataFrame({"Silhouette": [0.1, 0.5], "Davies-Bouldin": [0.4, 1.2]}, index=["m", "ref-m"])
    t = tables.Table("t4", "T4", values, "c", mark="column", higher_is_better={"Silhouette": True, "Davies-Bouldin": False})
    text = tables.marked(t)
    assert text.loc["ref-m", "Silhouette"] == "**0.500**" and text.loc["m", "Silhouette"] == "*0.100*"
    assert text.loc["m", "Davies-Bouldin"] == "**0.400**" and text.loc["ref-m", "Davies-Bouldin"] == "*1.200*"


def test_marking_uses_the_mean_of_seeds_and_skips_constant_lines():
    values = pd.DataFrame({"acc": [[0.5, 0.7], [0.4, 0.4]]}, index=["a", "b"], dtype=object)
    text = tables.marked(tables.Table("t", "T", values, "c", mark="column"))
    assert text.loc["a", "acc"] == "**0.600 ± 0.100**" and text.loc["b", "acc"] == "*0.400 ± 0.000*"
    flat = tables.marked(tables.Table("t", "T", pd.DataFrame({"acc": [0.3, 0.3]}), "c", mark="column"))
    assert not flat["acc"].str.contains(r"\*").any()


def test_write_builds_tables_from_stage_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke")
    d = paths.stage_dir("smoke", "04_ablate_regions", "lama")
    d.mkdir(parents=True)
    d.joinpath("metrics.json").write_text(json.dumps({"results": [
        {"condition": "pattern_only", "mode": "deep", "accuracy": 0.8},
        {"condition": "no_pattern", "mode": "deep", "accuracy": 0.3},
        {"condition": "pattern_only", "mode": "shallow", "accuracy": 0.5},
        {"condition": "no_pattern", "mode": "shallow", "accuracy": 0.4}]}))
    d3 = paths.stage_dir("smoke", "03_finetune_classifier", "lama")
    d3.mkdir(parents=True)
    mode = {"init": {"init": "inpainting"}, "test": {"accuracy": 0.7, "macro_recall": 0.7, "macro_f1": 0.6},
            "retrieval": {"test": {"top1": 0.5, "top5": 0.9, "mAP": 0.4}, "open": {"top1": 0.3, "top5": 0.8, "mAP": 0.3}},
            "history": [{"cam_pattern": 0.6, "cam_fish_outside_pattern": 0.3, "cam_background": 0.1, "cam_n_empty": 2}]}
    session_bound = {**mode, "retrieval": {**mode["retrieval"], "test": {
        "top1": 0.1, "top5": 0.6, "mAP": 0.2, "top1_same_session": 0.9, "same_session_chance": 0.15}}}
    d3.joinpath("metrics.json").write_text(json.dumps({"shallow": mode, "deep": session_bound, "chance": 1 / 6,
                                                       "leakage": {"random": 0.9, "session": 0.7},
                                                       "cam_method": "hirescam",
                                                       "cam_area": {"pattern": 0.1, "fish_outside_pattern": 0.2,
                                                                    "background": 0.7}}))
    found = report.write(cfg, ["lama", "aotgan"])
    names = {t.name for t in found}
    assert {"table1_ablation_deep", "table2_ablation_shallow", "classification", "retrieval", "pattern_focus", "leakage",
            "session_shortcut"} <= names
    shortcut = pd.read_csv(paths.figures_dir("smoke") / "session_shortcut.csv", index_col=0)
    assert len(shortcut) == 1  # only the deep row's metrics carry sessions
    assert shortcut.iloc[0].to_dict() == {"top-1 from own session": 0.9, "chance": 0.15, "top-1 same individual": 0.1}
    table1 = pd.read_csv(paths.figures_dir("smoke") / "table1_ablation_deep.csv", index_col=0)
    assert table1.loc["lama", "pattern_only"] == 0.8
    md = (paths.figures_dir("smoke") / "table1_ablation_deep.md").read_text()
    assert "**0.800**" in md and "*0.300*" in md and "chance = 0.167" in md and "Split: session" in md
    leakage = pd.read_csv(paths.figures_dir("smoke") / "leakage.csv", index_col=0)
    assert np.isclose(leakage.loc["lama", "inflation"], 0.2)
    assert "Table 1" in (paths.figures_dir("smoke") / "report.md").read_text()
    focus = pd.read_csv(paths.figures_dir("smoke") / "pattern_focus.csv", index_col=0)
    assert focus.loc["lama deep"].to_dict() == {"pattern": 0.6, "fish outside pattern": 0.3, "background": 0.1,
                                                "empty maps": 2}
    assert focus.loc["uniform map (area)", "pattern"] == 0.1 and np.isnan(focus.loc["uniform map (area)", "empty maps"])
    focus_md = (paths.figures_dir("smoke") / "pattern_focus.md").read_text()
    assert "Maps: hirescam (classify.cam_method)" in focus_md and "| 2 " in focus_md


def test_shortcut_table_compares_with_the_base_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    for preset, pattern, nopattern in (("quick", 0.8, 0.2), ("shortcut", 0.8, 0.9)):
        d = paths.stage_dir(preset, "04_ablate_regions", "lama")
        d.mkdir(parents=True)
        d.joinpath("metrics.json").write_text(json.dumps({"results": [
            {"condition": "pattern_only", "mode": m, "accuracy": pattern} for m in ("deep", "shallow")] + [
            {"condition": "no_pattern", "mode": m, "accuracy": nopattern} for m in ("deep", "shallow")]}))
    found = {t.name: t for t in report.tables(config.resolve("shortcut"), ["lama"])}
    table = found["shortcut"].values
    assert table.loc["lama deep", "no_pattern (quick)"] == 0.2 and table.loc["lama deep", "no_pattern (shortcuts)"] == 0.9
    assert "shortcut" not in {t.name for t in report.tables(config.resolve("quick"), ["lama"])}


def test_count_columns_read_as_integers():
    values = pd.DataFrame({"batch size": [8.0, 8.0], "iterations": [252.0, 100.0], "loss": [0.5, 1.0]}, index=["a", "b"])
    text = tables.marked(tables.Table("t3", "T3", values, "c"))
    assert text.loc["a", "batch size"] == "8" and text.loc["b", "iterations"] == "100" and text.loc["b", "loss"] == "1.000"


def test_several_training_seeds_give_mean_and_std_cells(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke", None, {"seeds": [0, 1, 2]})
    for seed, acc in ((0, 0.6), (1, 0.8), (2, None)):  # seed 2's run is missing: its cells say so
        if acc is None:
            continue
        d = paths.stage_dir("smoke", "04_ablate_regions", "lama", run_seed=seed)
        d.mkdir(parents=True)
        d.joinpath("metrics.json").write_text(json.dumps({"results": [
            {"condition": "pattern_only", "mode": "deep", "accuracy": acc},
            {"condition": "no_pattern", "mode": "deep", "accuracy": acc / 2}]}))
    found = {t.name: t for t in report.write(cfg, ["lama"])}
    cell = found["table1_ablation_deep"].values.loc["lama", "pattern_only"]
    assert cell == [0.6, 0.8, None]
    md = (paths.figures_dir("smoke") / "table1_ablation_deep.md").read_text()
    assert "**0.700 ± 0.100**" in md and "*0.350 ± 0.050*" in md and "3 training seeds" in md
    means = pd.read_csv(paths.figures_dir("smoke") / "table1_ablation_deep.csv", index_col=0)
    stds = pd.read_csv(paths.figures_dir("smoke") / "table1_ablation_deep_std.csv", index_col=0)
    assert np.isclose(means.loc["lama", "pattern_only"], 0.7) and np.isclose(stds.loc["lama", "no_pattern"], 0.05)


def test_head_comparison_table_gives_mean_std_per_pooling_and_the_chance_range(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke")
    d3 = paths.stage_dir("smoke", "03_finetune_classifier", "aotgan")
    d3.mkdir(parents=True)
    rows = [{"pooling": p, "mode": "shallow", "seed": s, "accuracy": a, "n_test": 60, "main_run": False}
            for p, s, a in (("flatten", 0, 0.6), ("flatten", 1, 0.8), ("avg", 0, 0.2), ("avg", 1, 0.2))]
    mode = {"init": {"init": "inpainting"}, "test": {"accuracy": 0.6, "macro_recall": 0.6, "macro_f1": 0.6},
            "retrieval": {}, "history": []}
    d3.joinpath("metrics.json").write_text(json.dumps({"shallow": mode, "chance": 1 / 6, "head_comparison": rows}))
    found = {t.name: t for t in report.write(cfg, ["aotgan"])}
    table = pd.read_csv(paths.figures_dir("smoke") / "head_comparison.csv", index_col=0)
    assert np.isclose(table.loc["aotgan shallow", "flatten"], 0.7) and np.isclose(table.loc["aotgan shallow", "avg"], 0.2)
    md = (paths.figures_dir("smoke") / "head_comparison.md").read_text()
    low, high = tables.chance_range(1 / 6, 60)
    assert "**0.700 ± 0.100**" in md and "*0.200 ± 0.000°*" in md and "2 training seeds" in md
    assert f"{low:.3f}-{high:.3f} on 60 test images" in md and low < 1 / 6 < high
    assert found["head_comparison"].mark == "row"


def test_chance_range_holds_a_guessers_accuracy_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    low, high = tables.chance_range(1 / 6, 64)
    scores = rng.binomial(64, 1 / 6, 20000) / 64
    inside = ((scores >= low) & (scores <= high)).mean()
    assert 0.95 <= inside <= 0.99 and tables.chance_range(0.5, 1000)[0] > 0.45


def test_pretraining_table_sets_each_start_beside_its_random_control_and_marks_chance(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke")
    confusion = [[10, 0], [0, 10], [0, 0]]  # 20 test images
    for b, (pre, rnd) in {"aotgan": (0.8, 0.2), "lama": (0.3, 0.7)}.items():
        d3 = paths.stage_dir("smoke", "03_finetune_classifier", b)
        d3.mkdir(parents=True)
        mode = {"init": {"init": "inpainting"}, "test": {"accuracy": pre, "macro_recall": pre, "macro_f1": pre,
                                                        "confusion": confusion},
                "retrieval": {}, "history": []}
        d3.joinpath("metrics.json").write_text(json.dumps({"deep": mode, "chance": 1 / 3, "random_start": {
            "deep": {"accuracy": rnd, "macro_f1": rnd, "best_epoch": 3, "n_test": 20}}}))
    report.write(cfg, ["aotgan", "lama"])
    table = pd.read_csv(paths.figures_dir("smoke") / "pretraining.csv", index_col=0)
    assert np.isclose(table.loc["aotgan deep", "difference"], 0.6) and np.isclose(table.loc["lama deep", "random start"], 0.7)
    md = (paths.figures_dir("smoke") / "pretraining.md").read_text()
    low, high = tables.chance_range(1 / 3, 20)
    assert low <= 0.3 <= high and not low <= 0.7 <= high
    assert "0.300°" in md and "0.200°" in md and "0.800°" not in md and "Starting weights: inpainting" in md
    assert "on 20 test images 95% of the time" in md
    classification = (paths.figures_dir("smoke") / "classification.md").read_text()
    assert "0.300°" in classification  # the accuracy column; macro F1 is not an accuracy


def test_an_ablation_mode_no_network_ran_has_no_table_and_matchers_join_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    cfg = config.resolve("smoke")
    for b, results in {"lama": [{"condition": "all", "mode": "shallow", "accuracy": 0.5}],
                       "sift": [{"condition": "all", "mode": "matching", "accuracy": 0.9}]}.items():
        d = paths.stage_dir("smoke", "04_ablate_regions", b)
        d.mkdir(parents=True)
        d.joinpath("metrics.json").write_text(json.dumps({"results": results}))
    names = {t.name for t in report.write(cfg, ["lama", "sift"])}
    assert "table2_ablation_shallow" in names and "table1_ablation_deep" not in names
    table2 = pd.read_csv(paths.figures_dir("smoke") / "table2_ablation_shallow.csv", index_col=0)
    assert table2.loc["sift", "all"] == 0.9 and table2.loc["lama", "all"] == 0.5


def test_row_label_says_random_weights_and_no_training():
    assert tables.row_label("lama", "inpainting") == "lama"
    assert tables.row_label("efficientnet", "random") == "efficientnet (random init)"
    assert tables.row_label("sift", "none") == "sift (no training)" and tables.row_label("lama", None) == "lama"


def test_key_figures_size_study_first_then_projections_and_ablation(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    published = paths.figures_dir("smoke")
    published.mkdir(parents=True)
    for name in ("lama_05_cluster_embeddings_projections.png", "aotgan_05_cluster_embeddings_projections.png",
                 "aotgan_04_ablate_regions_ablation_accuracy.png", "aotgan_01_prepare_dataset_sample_grid.png"):
        (published / name).write_bytes(b"png")
    size = published / "size_study.png"
    assert [f.name for f in report.key_figures("smoke", size)] == [
        "size_study.png", "aotgan_05_cluster_embeddings_projections.png", "lama_05_cluster_embeddings_projections.png",
        "aotgan_04_ablate_regions_ablation_accuracy.png"]
    assert len(report.key_figures("smoke", None, n=2)) == 2


def test_count_columns_read_as_whole_numbers_even_at_zero():
    t = tables.Table("t", "T", pd.DataFrame({"share": [0.5, 0.25], "empty maps": [0, 3]}, index=["a", "b"]), "c",
                     count_columns=("empty maps",))
    text = tables.marked(t)
    assert text["empty maps"].tolist() == ["0", "3"] and text["share"].tolist() == ["0.500", "0.250"]
    [merged] = report.merge_seeds([[t], [t]])  # a table's settings survive the seed merge
    assert merged.count_columns == ("empty maps",) and merged.caption.endswith("over 2 training seeds.")


def test_a_row_tested_on_fewer_images_gets_its_own_chance_range():
    values = pd.DataFrame({"pattern_only": [0.30, 0.30]}, index=["lama", "sift (no training)"])
    t = tables.Table("t2", "T2", values, "c", mark="row", chance=(1 / 6, 60), row_test_sizes={"sift (no training)": 28})
    low60, high60 = tables.chance_range(1 / 6, 60)
    low28, high28 = tables.chance_range(1 / 6, 28)
    assert high60 < 0.30 < high28  # 0.30 is a signal on 60 images, noise on 28
    text = tables.marked(t)
    assert text.loc["lama", "pattern_only"] == "0.300"
    assert text.loc["sift (no training)", "pattern_only"] == "0.300" + tables.NEAR_CHANCE
    assert f"sift (no training): {low28:.3f}-{high28:.3f} on its 28" in t.full_caption()

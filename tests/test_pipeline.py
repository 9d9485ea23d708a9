"""The papermill runner on stand-in notebooks (order, per-backbone fan-out, skipping, failures)
and, under the smoke preset, on the project's real stage notebooks."""
import json

import nbformat
import pytest

from zfutils import config, paths, pipeline


def _notebook(path, body, per_backbone, families=None):
    params = 'preset = "smoke"\noverrides = "{}"' + ('\nbackbone = "none"' if per_backbone else "")
    nb = nbformat.v4.new_notebook()
    if families:
        nb.metadata["zfutils"] = {"families": families}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_shared.ipynb", "import json, pathlib\n"
              "from zfutils import paths\n"
              "d = paths.stage_dir(preset, '01_shared'); d.mkdir(parents=True, exist_ok=True)\n"
              "(d / 'metrics.json').write_text(json.dumps({'n': 1}))", per_backbone=False)
    _notebook(nbs / "02_each.ipynb", "import json\n"
              "from zfutils import paths\n"
              "assert backbone != 'lama', 'lama is broken in this stand-in'\n"
              "d = paths.stage_dir(preset, '02_each', backbone); d.mkdir(parents=True, exist_ok=True)\n"
              "(d / 'metrics.json').write_text(json.dumps({'backbone': backbone}))", per_backbone=True)
    _notebook(nbs / "03_after.ipynb", "import json\n"
              "from zfutils import paths\n"
              "d = paths.stage_dir(preset, '03_after', backbone); d.mkdir(parents=True, exist_ok=True)\n"
              "(d / 'metrics.json').write_text('{}')", per_backbone=True)
    _notebook(nbs / "04_inpainting_only.ipynb", "import json\n"
              "from zfutils import paths\n"
              "d = paths.stage_dir(preset, '04_inpainting_only', backbone); d.mkdir(parents=True, exist_ok=True)\n"
              "(d / 'metrics.json').write_text('{}')", per_backbone=True, families=["inpainting"])
    return nbs


def _statuses(jobs):
    return {(j.stage.name, j.backbone): j.status for j in jobs}


def test_discover_stages_reads_per_backbone_from_parameters(stand_ins):
    stages = pipeline.discover_stages(stand_ins)
    assert [(s.name, s.per_backbone) for s in stages] == [("01_shared", False), ("02_each", True), ("03_after", True),
                                                          ("04_inpainting_only", True)]
    assert stages[-1].families == ("inpainting",) and stages[0].families is None
    assert [s.name for s in pipeline.select(stages, ["03", "01_shared"])] == ["01_shared", "03_after"]
    with pytest.raises(Exception, match="unknown stage '09'"):
        pipeline.select(stages, ["09"])


def test_run_order_failures_skips_and_reruns(stand_ins):
    jobs = pipeline.run("smoke", ["aotgan", "lama", "efficientnet"], stage_names=["01", "02", "03"],
                        notebooks_dir=stand_ins)
    assert _statuses(jobs) == {("01_shared", None): "done", ("02_each", "aotgan"): "done",
                               ("02_each", "lama"): "failed", ("02_each", "efficientnet"): "done",
                               ("03_after", "aotgan"): "done", ("03_after", "lama"): "blocked",
                               ("03_after", "efficientnet"): "done"}
    only = pipeline.run("smoke", ["aotgan", "efficientnet"], stage_names=["04"], notebooks_dir=stand_ins)
    assert _statuses(only) == {("04_inpainting_only", "aotgan"): "done", ("04_inpainting_only", "efficientnet"): "n/a"}
    assert "lama is broken" in next(j.message for j in jobs if j.status == "failed")
    run_dir = paths.stage_dir("smoke", "02_each", "aotgan")
    assert (run_dir / "02_each.ipynb").is_file() and json.loads((run_dir / "metrics.json").read_text()) == {"backbone": "aotgan"}
    assert "failed" in pipeline.summary(jobs, "smoke")

    again = pipeline.run("smoke", ["aotgan"], stage_names=["01", "02", "03"], notebooks_dir=stand_ins)
    assert set(_statuses(again).values()) == {"skipped"}

    # a changed parameter reruns everything that depends on it
    changed = pipeline.run("smoke", ["aotgan"], stage_names=["01", "02", "03"], overrides={"seed": 1},
                           notebooks_dir=stand_ins)
    assert set(_statuses(changed).values()) == {"done"}

    # a changed upstream notebook reruns the stages after it
    nb = nbformat.read(stand_ins / "01_shared.ipynb", as_version=4)
    nb.cells[1].source += "\n# edited"
    nbformat.write(nb, stand_ins / "01_shared.ipynb")
    rerun = pipeline.run("smoke", ["aotgan"], stage_names=["01", "02", "03"], overrides={"seed": 1},
                         notebooks_dir=stand_ins)
    assert set(_statuses(rerun).values()) == {"done"}


def test_several_seeds_run_per_backbone_stages_once_per_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    write = ("import json\nfrom zfutils import config, paths\n"
             "cfg = config.resolve(preset, {backbone}, json.loads(overrides))\n"
             "d = paths.run_stage_dir(cfg, '{stage}', {backbone}); d.mkdir(parents=True, exist_ok=True)\n"
             "(d / 'metrics.json').write_text(json.dumps({{'seed': config.training_seed(cfg)}}))")
    _notebook(nbs / "01_shared.ipynb", write.format(stage="01_shared", backbone="None"), per_backbone=False)
    _notebook(nbs / "02_each.ipynb", write.format(stage="02_each", backbone="backbone"), per_backbone=True)
    _notebook(nbs / "03_report.ipynb", write.format(stage="03_report", backbone="None"), per_backbone=False)
    jobs = pipeline.run("smoke", ["aotgan"], overrides={"seeds": [0, 7]}, notebooks_dir=nbs)
    assert [(j.stage.name, j.backbone, j.run_seed, j.status) for j in jobs] == [
        ("01_shared", None, None, "done"), ("02_each", "aotgan", 0, "done"), ("02_each", "aotgan", 7, "done"),
        ("03_report", None, None, "done")]
    for seed in (0, 7):
        got = json.loads((paths.stage_dir("smoke", "02_each", "aotgan", seed) / "metrics.json").read_text())
        assert got == {"seed": seed}
    assert "seed 7" in jobs[2].label and "  7 done" in pipeline.summary(jobs, "smoke")
    again = pipeline.run("smoke", ["aotgan"], overrides={"seeds": [0, 7]}, notebooks_dir=nbs)
    assert {j.status for j in again} == {"skipped"}


def test_unknown_backbone_fails_before_running(stand_ins):
    with pytest.raises(Exception, match="unknown backbone 'resnet'"):
        pipeline.run("smoke", ["resnet"], notebooks_dir=stand_ins)
    assert not (paths.runs_dir("smoke") / "01_shared").exists()


def test_main_exit_codes_and_summary(stand_ins, monkeypatch, capsys):
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", stand_ins)
    assert pipeline.main(["--preset", "smoke", "--backbones", "aotgan", "--stages", "01,02"]) == 0
    out = capsys.readouterr().out
    assert "02_each" in out and "figures and tables" in out and "wall time: " in out
    assert pipeline.main(["--preset", "smoke", "--backbones", "lama", "--stages", "02"]) == 1
    assert pipeline.main(["--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_smoke_pipeline_runs_every_stage_for_every_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    four = ["aotgan", "deepfillv2", "edgeconnect", "lama"]
    others = ["efficientnet", "inceptionv3", "efficientnetv2"]  # baselines and the embedding model: no stage 02
    nets, everyone = four + others, four + others + ["sift"]
    overrides = {"data.synth.per_individual": 16, "data.synth.sessions": 4}
    jobs = pipeline.run("smoke", everyone, overrides=overrides)
    assert all(j.status in ("done", "n/a") for j in jobs), [(j.label, j.message) for j in jobs]
    assert {(j.stage.name, j.backbone) for j in jobs if j.status == "n/a"} == {
        ("02_inpaint_patterns", b) for b in others + ["sift"]}
    # the data facts notebook 01 prints: checked here, not by nbval (notebooks are stored without outputs)
    facts = json.loads((paths.stage_dir("smoke", "01_prepare_dataset") / "metrics.json").read_text())
    assert facts["n_identities"] == 6 and facts["n_sessions"] == 4 and facts["image_size"] == 64
    assert sum(facts["splits"]["split"].values()) == facts["tasks"]["classify"]
    for backbone in four:
        run_dir = paths.stage_dir("smoke", "02_inpaint_patterns", backbone)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["init"]["generator"] == "random" and metrics["table3"]["iterations"] > 0
        assert set(metrics["test"]) == {"test_l1", "test_psnr", "test_ssim"}
        assert (run_dir / "embeddings.npz").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
        assert (paths.figures_dir("smoke") / f"{backbone}_02_inpaint_patterns_examples.png").is_file()
    for backbone in nets:
        run_dir = paths.stage_dir("smoke", "03_finetune_classifier", backbone)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for mode in ("shallow", "deep"):
            m = metrics[mode]
            assert m["init"]["init"] == ("inpainting" if backbone in four else "random")
            assert len(m["history"]) == 2 and {"val_accuracy", "val_macro_f1", "cam_pattern"} <= set(m["history"][0])
            assert {"accuracy", "macro_recall", "macro_f1", "confusion"} <= set(m["test"])
            assert {"top1", "top5", "mAP"} <= set(m["retrieval"]["test"]) and m["retrieval"]["open"]["n_queries"] > 0
        assert metrics["cam_method"] == "hirescam" and abs(sum(metrics["cam_area"].values()) - 1) < 1e-6
        assert (run_dir / "embeddings_ref.npz").is_file()
        assert (paths.figures_dir("smoke") / f"{backbone}_03_finetune_classifier_gradcam_deep.png").is_file()
    sift = json.loads((paths.stage_dir("smoke", "03_finetune_classifier", "sift") / "metrics.json").read_text())
    assert sift["matching"]["init"]["init"] == "none" and "cam_pattern" in sift["matching"]["history"][0]
    assert {"top1", "mAP"} <= set(sift["matching"]["retrieval"]["test"]) and sift["leakage"]["session"] is not None
    conditions = config.resolve("smoke")["ablation"]["conditions"]  # smoke runs a subset of the seven
    assert {"pattern_only", "no_pattern", "all"} <= set(conditions)
    for backbone in everyone:
        ablation = json.loads((paths.stage_dir("smoke", "04_ablate_regions", backbone) / "metrics.json").read_text())
        modes = ("matching",) if backbone == "sift" else ("shallow", "deep")
        assert {(r["condition"], r["mode"]) for r in ablation["results"]} == {(c, m) for c in conditions for m in modes}
        size = json.loads((paths.stage_dir("smoke", "06_vary_training_size", backbone) / "metrics.json").read_text())
        transfer = json.loads((paths.stage_dir("smoke", "07_transfer_species", backbone) / "metrics.json").read_text())
        assert size and transfer, backbone
    for backbone in everyone:
        clusters = json.loads((paths.stage_dir("smoke", "05_cluster_embeddings", backbone) / "metrics.json").read_text())
        expected = {backbone} if backbone == "sift" else {f"ref-{backbone}"} | ({backbone} if backbone in four else set())
        assert set(clusters["table4"]) == expected and set(clusters["table4_open"]) == expected
    figures = paths.figures_dir("smoke")
    for name in ("table1_ablation_deep", "table2_ablation_shallow", "table3_inpainting", "table4_clustering_test",
                 "table4_clustering_open", "classification", "retrieval", "pattern_focus", "leakage", "size_study",
                 "cross_species_zero_shot"):
        assert (figures / f"{name}.csv").is_file() and (figures / f"{name}.md").is_file(), name
    assert "sift (no training)" in (figures / "table1_ablation_deep.md").read_text()
    assert "Table 4" in (figures / "report.md").read_text() and (figures / "size_study.png").is_file()
    again = pipeline.run("smoke", everyone, overrides=overrides)
    assert {j.status for j in again} <= {"skipped", "n/a"}  # a rerun skips up-to-date stages

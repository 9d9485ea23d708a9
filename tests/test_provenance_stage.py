import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from zfutils import paths
from zfutils.provenance import device_info, git_sha, library_versions, write_run_record
from zfutils.stage import open_stage


def test_git_sha_of_this_checkout_or_unknown(tmp_path):
    sha = git_sha()
    assert sha == "unknown" or len(sha.split("-")[0]) == 40
    assert git_sha(tmp_path) == "unknown"  # not a git repository


def test_library_versions_and_device():
    versions = library_versions()
    assert versions["torch"].startswith("2.14.1") and versions["python"].startswith("3.11")
    info = device_info("cpu")
    assert info["device"] == "cpu" and info["cpu_count"] >= 1


def test_write_run_record(tmp_path):
    cfg = {"preset": "smoke", "device": "cpu", "seed": 3}
    write_run_record(tmp_path / "run", cfg, extra={"stage": "x"})
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == cfg
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {"git_sha", "versions", "device", "started"} <= set(record) and record["stage"] == "x"


def test_open_stage_resolves_config_and_writes_record(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    stage = open_stage("07_transfer_species", "smoke", backbone="lama", seed=5, overrides='{"data.image_size": 48}',
                       data_source="", data_path="")
    assert stage.dir == tmp_path / "runs" / "smoke" / "lama" / "07_transfer_species"
    assert stage.cfg["seed"] == 5 and stage.cfg["data"]["image_size"] == 48 and stage.cfg["data"]["source"] == "synth"
    assert yaml.safe_load((stage.dir / "config.yaml").read_text())["backbone"]["name"] == "lama"
    stage.log_metrics(accuracy=0.5)
    stage.log_metrics(n=3)
    assert json.loads((stage.dir / "metrics.json").read_text()) == {"accuracy": 0.5, "n": 3}
    fig, _ = plt.subplots()
    stage.save_figure(fig, "curve", publish=True)
    assert (stage.dir / "figures" / "curve.png").is_file()
    assert (paths.figures_dir("smoke") / "lama_07_transfer_species_curve.png").is_file()
    stage.save_table(pd.DataFrame({"a": [1]}), "tab")
    markdown = (stage.dir / "tab.md").read_text()
    assert markdown.startswith("|") and " a " in markdown.splitlines()[0]
    assert pd.read_csv(stage.dir / "tab.csv", index_col=0)["a"].tolist() == [1]


def test_open_stage_shared_stage_dir_and_data_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    stage = open_stage("01_prepare_dataset", "smoke", data_source="aau", data_path="/data/aau")
    assert stage.dir == tmp_path / "runs" / "smoke" / "01_prepare_dataset"
    assert stage.cfg["data"]["source"] == "aau" and stage.cfg["data"]["path"] == "/data/aau"


def test_open_stage_refuses_a_name_that_is_no_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown stage '03_classify'; the stages are the notebooks' names: "
                                         r"01_prepare_dataset, .*08_report"):
        open_stage("03_classify", "smoke", backbone="lama")
    assert not (tmp_path / "runs").exists()  # nothing written

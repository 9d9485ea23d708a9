"""The pipeline fanned out through submitit's local executor (each job its own process, as on a
cluster): the same order, statuses, stamps and skips as a local run; and clear errors."""
import shutil

import pytest

from tests.test_pipeline import _statuses, stand_ins  # noqa: F401  (the stand-in notebooks fixture)
from zfutils import config, executors, paths, pipeline


def test_submitit_local_runs_waves_and_skips_like_local(stand_ins, capsys):  # noqa: F811
    jobs = pipeline.run("smoke", ["aotgan", "lama"], stage_names=["01", "02", "03"], notebooks_dir=stand_ins,
                        executor="submitit-local")
    assert _statuses(jobs) == {("01_shared", None): "done", ("02_each", "aotgan"): "done",
                               ("02_each", "lama"): "failed", ("03_after", "aotgan"): "done",
                               ("03_after", "lama"): "blocked"}
    assert "lama is broken" in next(j.message for j in jobs if j.status == "failed")
    assert all(j.seconds > 0 for j in jobs if j.status == "done")  # measured in the job's process
    assert capsys.readouterr().out.count("submitted as submitit-local job") == 4
    logs = paths.runs_dir("smoke") / "submitit"
    n_folders = len(list(logs.iterdir()))

    # the stamps written by the jobs are the local run's: nothing to do for either executor
    again = pipeline.run("smoke", ["aotgan"], stage_names=["01", "02", "03"], notebooks_dir=stand_ins,
                         executor="submitit-local")
    assert set(_statuses(again).values()) == {"skipped"} and len(list(logs.iterdir())) == n_folders
    local = pipeline.run("smoke", ["aotgan"], stage_names=["01", "02", "03"], notebooks_dir=stand_ins)
    assert set(_statuses(local).values()) == {"skipped"}


def test_a_job_that_dies_is_a_failed_job(stand_ins, monkeypatch):  # noqa: F811
    broken = {**executors.CLUSTER_DEFAULTS, "timeout_min": 5, "setup": ["exit 3"]}  # e.g. a wrong `module load`
    monkeypatch.setattr(executors, "cluster_settings", lambda cfg: broken)
    jobs = pipeline.run("smoke", ["aotgan"], stage_names=["01", "02"], notebooks_dir=stand_ins,
                        executor="submitit-local")
    assert _statuses(jobs) == {("01_shared", None): "failed", ("02_each", "aotgan"): "blocked"}
    assert jobs[0].message.startswith("submitit-local job") and "failed" in jobs[0].message


def test_slurm_without_sbatch_is_one_clear_error(stand_ins, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", stand_ins)
    assert pipeline.main(["--preset", "smoke", "--backbones", "aotgan", "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "--executor slurm needs SLURM, but `sbatch` is not on PATH" in err and "submitit-local" in err
    assert not (paths.runs_dir("smoke") / "01_shared").exists()  # nothing ran


def test_cluster_parameters_reach_submitit(stand_ins):  # noqa: F811
    cfg = config.resolve("smoke")
    notebook = stand_ins / "01_shared.ipynb"
    moved = {**cfg, "pipeline": {**cfg["pipeline"], "cluster": {"partition": "gpu"}}}
    assert pipeline.stamp(moved, notebook, []) == pipeline.stamp(cfg, notebook, [])  # where a job runs: no rerun
    settings = executors.cluster_settings(cfg)
    assert settings["timeout_min"] == 600 // 60 + 10  # pipeline.timeout_s plus 10 minutes
    cfg["pipeline"]["cluster"] = {"partition": "gpu", "qos": "high", "additional": {"gres": "gpu:a100:1"},
                                  "setup": ["module load cuda"], "timeout_min": 90}
    params = executors.submitit_parameters(executors.cluster_settings(cfg), "slurm")
    assert params == {"timeout_min": 90, "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 32, "slurm_partition": "gpu",
                      "slurm_qos": "high", "slurm_additional_parameters": {"gres": "gpu:a100:1"},
                      "slurm_setup": ["module load cuda"]}
    cfg["pipeline"]["cluster"] = {"partitoin": "gpu"}
    with pytest.raises(executors.ExecutorError, match="unknown key.*pipeline.cluster.partitoin; known: partition"):
        executors.cluster_settings(cfg)

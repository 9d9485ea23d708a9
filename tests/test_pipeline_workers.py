"""The local executor with several workers: a stage's jobs run at once, each notebook kernel with
its share of the cores, with the statuses, stamps and skips of a one-at-a-time run; a backbone's
next stage does not wait for another backbone's slow one."""
import json

import pytest

from tests.test_pipeline import _notebook, _statuses
from zfutils import config, executors, paths, pipeline

RECORD = ("import json, os, time\n"
          "from zfutils import paths\n"
          "start = time.time()\n"
          "assert backbone != 'lama', 'lama is broken in this stand-in'\n"
          "time.sleep(12 if backbone == '{slow}' else 3)\n"
          "d = paths.stage_dir(preset, '{stage}', backbone); d.mkdir(parents=True, exist_ok=True)\n"
          "(d / 'metrics.json').write_text(json.dumps({{'start': start, 'end': time.time(), "
          "'threads': {{v: os.environ.get(v) for v in ('OMP_NUM_THREADS', 'OPENCV_FOR_THREADS_NUM')}}}}))")


@pytest.fixture
def timed_stages(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_each.ipynb", RECORD.format(stage="01_each", slow="none"), per_backbone=True)
    _notebook(nbs / "02_after.ipynb", RECORD.format(stage="02_after", slow="none"), per_backbone=True)
    return nbs


def test_a_line_goes_on_while_another_backbone_is_slow(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_each.ipynb", RECORD.format(stage="01_each", slow="efficientnet"), per_backbone=True)
    _notebook(nbs / "02_after.ipynb", RECORD.format(stage="02_after", slow="none"), per_backbone=True)
    _notebook(nbs / "03_report.ipynb", "import json, time\nfrom zfutils import paths\n"
              "d = paths.stage_dir(preset, '03_report'); d.mkdir(parents=True, exist_ok=True)\n"
              "(d / 'metrics.json').write_text(json.dumps({'start': time.time()}))", per_backbone=False)
    jobs = pipeline.run("smoke", ["aotgan", "efficientnet"], overrides={"pipeline.workers": 2}, notebooks_dir=nbs)
    assert set(_statuses(jobs).values()) == {"done"}
    assert [(j.stage.name, j.backbone) for j in jobs] == [  # listed stage by stage, as a one-at-a-time run
        ("01_each", "aotgan"), ("01_each", "efficientnet"), ("02_after", "aotgan"), ("02_after", "efficientnet"),
        ("03_report", None)]
    run = lambda s, b=None: json.loads((paths.stage_dir("smoke", s, b) / "metrics.json").read_text())  # noqa: E731
    # aotgan's second stage ran while efficientnet's first (12 s) was still going: no wave waited for it
    assert run("02_after", "aotgan")["start"] < run("01_each", "efficientnet")["end"]
    assert run("01_each", "aotgan")["end"] < run("02_after", "aotgan")["start"]  # a line keeps its order
    assert run("01_each", "efficientnet")["end"] < run("02_after", "efficientnet")["start"]
    assert run("03_report")["start"] > max(run("02_after", b)["end"] for b in ("aotgan", "efficientnet"))
    assert "started (2 at once" in capsys.readouterr().out


def test_workers_run_a_stage_at_once_with_the_cores_shared_out(timed_stages, capsys):
    backbones = ["aotgan", "efficientnet", "lama"]  # the two that run first start together: their overlap is certain
    jobs = pipeline.run("smoke", backbones, overrides={"pipeline.workers": 2}, notebooks_dir=timed_stages)
    assert _statuses(jobs) == {("01_each", "aotgan"): "done", ("01_each", "lama"): "failed",
                               ("01_each", "efficientnet"): "done", ("02_after", "aotgan"): "done",
                               ("02_after", "lama"): "blocked", ("02_after", "efficientnet"): "done"}
    assert "lama is broken" in next(j.message for j in jobs if j.status == "failed")
    assert all(j.seconds > 3 for j in jobs if j.status == "done")  # measured in the worker
    runs = {(s, b): json.loads((paths.stage_dir("smoke", s, b) / "metrics.json").read_text())
            for s in ("01_each", "02_after") for b in ("aotgan", "efficientnet")}
    share = str(executors.threads_per_worker(2))
    assert all(r["threads"] == {"OMP_NUM_THREADS": share, "OPENCV_FOR_THREADS_NUM": share} for r in runs.values())
    for stage in ("01_each", "02_after"):  # the two backbones of a stage ran side by side
        a, b = runs[(stage, "aotgan")], runs[(stage, "efficientnet")]
        assert a["start"] < b["end"] and b["start"] < a["end"]
    assert runs[("01_each", "aotgan")]["end"] < runs[("02_after", "aotgan")]["start"]  # a stage after the one before
    assert "2 at once" in capsys.readouterr().out

    # where a job ran is not part of its stamp: one at a time, everything is up to date
    again = pipeline.run("smoke", ["aotgan", "efficientnet"], overrides={"pipeline.workers": 1},
                         notebooks_dir=timed_stages)
    assert set(_statuses(again).values()) == {"skipped"}

    # a wave of one job gets every core
    shared = pipeline.run("smoke", ["aotgan"], stage_names=["01"], overrides={"pipeline.workers": 2, "seed": 1},
                          notebooks_dir=timed_stages)
    assert _statuses(shared) == {("01_each", "aotgan"): "done"}
    every = str(executors.threads_per_worker(1))
    assert json.loads((paths.stage_dir("smoke", "01_each", "aotgan") / "metrics.json").read_text())["threads"] == {
        "OMP_NUM_THREADS": every, "OPENCV_FOR_THREADS_NUM": every}


def test_threads_per_worker_share_the_cores_out():
    assert executors.threads_per_worker(2, cores=2) == 1
    assert executors.threads_per_worker(3, cores=8) == 2
    assert executors.threads_per_worker(4, cores=2) == 1  # never fewer than one


def test_workers_below_one_is_a_clear_error():
    cfg = config.resolve("smoke", None, {"pipeline.workers": 0})
    with pytest.raises(executors.ExecutorError, match="pipeline.workers must be at least 1, not 0"):
        executors.get("local", cfg, None)
    assert executors.get("local", config.resolve("smoke", None, {"pipeline.workers": 1}), None) is executors.run_local
    assert isinstance(executors.get("local", config.resolve("smoke"), None), executors.LocalWorkers)  # the preset's 2

"""Run the study: every stage notebook, with papermill, once per backbone where the stage is per
backbone, in order.

`python -m zfutils.pipeline --preset quick [--backbones a,b] [--stages s,t] [--set key=value ...]
[--executor local|submitit-local|slurm]`

Stages are the notebooks `notebooks/NN_name.ipynb`; a stage is per backbone when its
`parameters` cell has a `backbone` parameter, and a notebook whose metadata lists
`zfutils.families` runs only for backbones of those families (params/backbones/<name>.yaml,
`backbone.family`; e.g. inpainting fine-tuning has nothing to do for a classification baseline).
Nothing here knows which stages exist.
A stage is skipped when its outputs exist and a stamp of its resolved config, its notebook and
the stamps of the stages before it is unchanged. A failing backbone does not stop the others.
Jobs run here one after another, or fanned out as submitit jobs, a stage at a time, or with
local workers each backbone's line of stages at its own pace (zfutils/executors.py).
One run at a time per preset and work folder: a run holds `runs/<preset>/pipeline.lock` (an
flock, which the system releases when the process ends, killed or not), and a second run started
beside it stops at once with exit code 2, naming the lock and the other run's pid.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from zfutils import atomic, config, executors, paths
from zfutils.provenance import git_sha

try:
    import fcntl
except ImportError:  # not on Windows: runs are not locked there
    fcntl = None

log = logging.getLogger("zfutils.pipeline")


class PipelineBusy(RuntimeError):
    """Another pipeline run holds this preset's work folder."""


@contextlib.contextmanager
def run_lock(preset: str):
    """Hold runs/<preset>/pipeline.lock for the block, or raise PipelineBusy at once. The lock is
    an flock on the open file, so it dies with this process however it ends; the file stays."""
    path = paths.runs_dir(preset) / "pipeline.lock"
    if fcntl is None:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
            raise PipelineBusy(f"another pipeline run ({holder}) is working on {path.parent}: it holds the lock "
                               f"{path}. Wait for it to finish (or stop it), or give this run its own work folder "
                               "(ZF_WORKDIR=/another/folder)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class StageNotebook:
    name: str
    path: Path
    per_backbone: bool
    families: tuple[str, ...] | None = None  # None: every backbone family


@dataclass
class Job:
    stage: StageNotebook
    backbone: str | None
    status: str = "pending"   # pending | done | skipped | failed | blocked | n/a
    seconds: float = 0.0
    message: str = ""
    run_seed: int | None = None   # one of several training seeds (`seeds`), for per-backbone stages

    @property
    def label(self) -> str:
        seed = f" seed {self.run_seed}" if self.run_seed is not None else ""
        return f"{self.stage.name}" + (f" [{self.backbone}{seed}]" if self.backbone else "")

    def overrides(self, overrides: dict) -> dict:
        """The pipeline's overrides plus this job's training seed."""
        return {**overrides, "run_seed": self.run_seed} if self.run_seed is not None else dict(overrides)


def discover_stages(notebooks_dir: Path | None = None) -> list[StageNotebook]:
    """Stage notebooks in order, with whether each runs per backbone (from its parameters)."""
    import papermill

    notebooks_dir = Path(notebooks_dir or paths.NOTEBOOKS_DIR)
    stages = []
    for path in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        params = papermill.inspect_notebook(str(path))
        families = json.loads(path.read_text()).get("metadata", {}).get("zfutils", {}).get("families")
        stages.append(StageNotebook(path.stem, path, per_backbone="backbone" in params,
                                    families=tuple(families) if families else None))
    if not stages:
        raise FileNotFoundError(f"no stage notebooks (NN_name.ipynb) in {notebooks_dir}")
    return stages


def select(stages: list[StageNotebook], names: list[str] | None) -> list[StageNotebook]:
    if not names:
        return stages
    known = {s.name: s for s in stages}
    by_prefix = {s.name.split("_", 1)[0]: s for s in stages}
    picked = []
    for name in names:
        stage = known.get(name) or by_prefix.get(name)
        if stage is None:
            raise config.ConfigError(f"unknown stage '{name}'; known stages: {', '.join(known)}")
        picked.append(stage)
    return [s for s in stages if s in picked]


def stamp(cfg: dict, notebook: Path, upstream: list[str]) -> str:
    """Changes whenever the resolved config, the notebook or an earlier stage's stamp changes;
    where jobs run (`pipeline.cluster`, `pipeline.workers`) changes no result, so it is left out."""
    h = hashlib.sha256()
    cfg = {**cfg, "pipeline": {k: v for k, v in cfg["pipeline"].items() if k not in ("cluster", "workers")}}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    h.update(notebook.read_bytes())
    for s in upstream:
        h.update(s.encode())
    return h.hexdigest()


def _up_to_date(run_dir: Path, stage: StageNotebook, expected: str) -> bool:
    try:
        recorded = json.loads((run_dir / "stamp.json").read_text())["stamp"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return False
    outputs = (run_dir / f"{stage.name}.ipynb").is_file() and (run_dir / "metrics.json").is_file()
    return outputs and recorded == expected


def _expected(job: Job, preset: str, overrides: dict, upstream: list[str]) -> tuple[dict, Path, str]:
    """The job's resolved config, run folder and the stamp its outputs must carry."""
    cfg = config.resolve(preset, job.backbone, job.overrides(overrides))
    return cfg, paths.run_stage_dir(cfg, job.stage.name, job.backbone), stamp(cfg, job.stage.path, upstream)


def run_job(job: Job, preset: str, overrides: dict, upstream: list[str], force: bool) -> str | None:
    """Execute one notebook with papermill unless it is up to date; returns its stamp, or None."""
    import papermill

    cfg, run_dir, expected = _expected(job, preset, overrides, upstream)
    if not force and _up_to_date(run_dir, job.stage, expected):
        job.status = "skipped"
        return expected
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stamp.json").unlink(missing_ok=True)
    params = {"preset": preset, "overrides": json.dumps(job.overrides(overrides))}
    if job.backbone:
        params["backbone"] = job.backbone
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(job.stage.path), str(run_dir / f"{job.stage.name}.ipynb"),
                                   parameters=params, cwd=str(run_dir), kernel_name="python3",
                                   progress_bar=False, execution_timeout=cfg["pipeline"]["timeout_s"])
    except Exception as err:  # a failing notebook must not stop the other backbones
        job.status, job.message = "failed", _first_line(err)
        log.exception("%s failed", job.label)
        return None
    finally:
        job.seconds = time.perf_counter() - start
    record = {"stamp": expected, "seconds": job.seconds, "git_sha": git_sha(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic.write_text(run_dir / "stamp.json", json.dumps(record))
    job.status = "done"
    return expected


def run_job_returning(job: Job, preset: str, overrides: dict, upstream: list[str], force: bool) -> tuple:
    """run_job, returning the job too: run in another process (an executor's), its Job is a copy."""
    return run_job(job, preset, overrides, upstream, force), job


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    lines = [l for l in text if l.strip() and not set(l.strip()) <= set("-")]
    return (lines[-1] if lines else type(err).__name__)[:200]


def run(preset: str, backbones: list[str] | None = None, stage_names: list[str] | None = None,
        overrides: dict | None = None, force: bool = False, notebooks_dir: Path | None = None,
        executor: str = "local") -> list[Job]:
    """Run the selected stages in order, each stage's jobs on `executor` (see zfutils.executors;
    local workers run each backbone's consecutive per-backbone stages as one line instead);
    returns every job with its status."""
    overrides = overrides or {}
    base = config.resolve(preset, None, overrides)
    backbones = backbones or base["pipeline"]["backbones"]
    for name in backbones:
        config.resolve(preset, name, overrides)  # unknown backbone: fail before running anything
    stages = select(discover_stages(notebooks_dir), stage_names or base["pipeline"]["stages"])
    with run_lock(preset):
        return _run(preset, backbones, stages, overrides, force, executor, base)


def _run(preset: str, backbones: list[str], stages: list[StageNotebook], overrides: dict, force: bool,
         executor: str, base: dict) -> list[Job]:
    execute = executors.get(executor, base, paths.runs_dir(preset) / "submitit")
    seeds = config.training_seeds(base)  # [None]: one run; else per-backbone stages once per seed
    plan = _Plan(preset, overrides, force, [(b, s) for b in backbones for s in seeds])
    for segment in _segments(stages):
        if segment[0].per_backbone and hasattr(execute, "lines"):
            grid = {(stage, line): plan.new_job(stage, line) for stage in segment for line in plan.lines}
            execute.lines([plan.chain([grid[(stage, line)] for stage in segment]) for line in plan.lines])
            continue
        for stage in segment:
            wave = []  # this stage's jobs to run (their upstream stages are done)
            for line in (plan.lines if stage.per_backbone else [(None, None)]):
                job = plan.new_job(stage, line)
                work = plan.prepare(job)
                if work is not None:
                    wave.append((job, work))
            for (job, _), result in zip(wave, execute(wave)):
                plan.record(job, result)
    return plan.jobs


def _segments(stages: list[StageNotebook]) -> list[list[StageNotebook]]:
    """Consecutive per-backbone stages together, every shared stage on its own."""
    out: list[list[StageNotebook]] = []
    for stage in stages:
        if out and stage.per_backbone and out[-1][0].per_backbone:
            out[-1].append(stage)
        else:
            out.append([stage])
    return out


class _Plan:
    """What the pipeline knows while it runs: every job, the stamps each line (backbone, seed)
    and the shared stages have produced, and which lines a failure blocked."""

    def __init__(self, preset: str, overrides: dict, force: bool, lines: list[tuple]):
        self.preset, self.overrides, self.force, self.lines = preset, overrides, force, lines
        self.jobs: list[Job] = []
        self.shared: list[str] = []
        self.line_stamps: dict[tuple, list[str]] = {line: [] for line in lines}
        self.blocked: set = set()

    def new_job(self, stage: StageNotebook, line: tuple) -> Job:
        job = Job(stage, line[0] if stage.per_backbone else None, run_seed=line[1] if stage.per_backbone else None)
        self.jobs.append(job)
        return job

    def prepare(self, job: Job):
        """The job's work (a callable for an executor), or None when it has nothing to run: n/a
        for its backbone's family, blocked by a failure, or skipped as up to date (recorded)."""
        backbone, line = job.backbone, (job.backbone, job.run_seed)
        family = config.resolve(self.preset, backbone, self.overrides)["backbone"]["family"] if backbone else None
        if job.stage.families and family not in job.stage.families:
            job.status, job.message = "n/a", f"{family} backbones have no {job.stage.name} stage"
            return None
        if None in self.blocked or line in self.blocked:
            job.status, job.message = "blocked", "an earlier stage failed"
            return None
        # a per-backbone stage depends on the shared stages and its backbone's (and seed's)
        # earlier stages; a shared stage after per-backbone ones (the report) depends on all
        upstream = self.shared + (self.line_stamps[line] if backbone
                                  else [x for each in self.lines for x in self.line_stamps[each]])
        _, run_dir, expected = _expected(job, self.preset, self.overrides, upstream)
        if not self.force and _up_to_date(run_dir, job.stage, expected):  # as run_job would, without an executor
            job.status = "skipped"
            executors.announce(job, ": skipped")
            self.record(job, expected)
            return None
        return partial(run_job_returning, job, self.preset, self.overrides, upstream, self.force)

    def record(self, job: Job, result: str | None) -> None:
        if result is None:
            self.blocked.add((job.backbone, job.run_seed) if job.backbone else None)
        elif job.backbone:
            self.line_stamps[(job.backbone, job.run_seed)].append(result)
        else:
            self.shared.append(result)

    def chain(self, jobs: list[Job]):
        """One line's jobs, for LocalWorkers.lines: yields (job, work) for each job to run and
        is sent its stamp back."""
        for job in jobs:
            work = self.prepare(job)
            if work is not None:
                self.record(job, (yield job, work))


def summary(jobs: list[Job], preset: str, wall_s: float | None = None) -> str:
    lines = [f"{'stage':<28} {'backbone':<14} {'seed':>4} {'status':<8} {'seconds':>8}  note"]
    for j in jobs:
        seed = "-" if j.run_seed is None else str(j.run_seed)
        lines.append(f"{j.stage.name:<28} {j.backbone or '-':<14} {seed:>4} {j.status:<8} {j.seconds:>8.1f}  {j.message}")
    lines.append("")
    if wall_s is not None:
        busy = sum(j.seconds for j in jobs)
        lines.append(f"wall time: {wall_s / 60:.1f} min ({wall_s:.0f} s; the notebooks' own seconds sum to {busy:.0f})")
    lines.append(f"runs (executed notebooks, config.yaml, metrics.json): {paths.runs_dir(preset)}")
    lines.append(f"figures and tables: {paths.figures_dir(preset)}")
    report = paths.figures_dir(preset) / "report.md"
    if report.is_file():
        lines.append(f"report: {report}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zfutils.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick", help=f"one of: {', '.join(config.available('presets'))}")
    parser.add_argument("--backbones", help="comma-separated; default: the preset's pipeline.backbones")
    parser.add_argument("--stages", help="comma-separated stage names or numbers (01,02); default: all")
    parser.add_argument("--data-source", help="synth | aau | csv | folder (default: synth)")
    parser.add_argument("--data-path", help="local copy of the real data for aau, csv or folder")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. data.image_size=96")
    parser.add_argument("--force", action="store_true", help="rerun stages that are up to date")
    parser.add_argument("--executor", default="local", choices=executors.EXECUTORS,
                        help="local: here, one job after another, or pipeline.workers at once (default); "
                             "submitit-local: each job its own process "
                             "on this machine; slurm: each job a SLURM job (parameters: pipeline.cluster)")
    args = parser.parse_args(argv)
    try:
        overrides = config.overrides_from_args(args.set)
        if args.data_source:
            overrides["data.source"] = args.data_source
        if args.data_path:
            overrides["data.path"] = str(Path(args.data_path).expanduser().resolve())
        config.resolve(args.preset, None, overrides)
        split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
        paths.runs_dir(args.preset).mkdir(parents=True, exist_ok=True)
        logging.basicConfig(filename=paths.runs_dir(args.preset) / "pipeline.log", level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(message)s")
        started = time.monotonic()
        jobs = run(args.preset, split(args.backbones), split(args.stages), overrides, args.force,
                   executor=args.executor)
        wall_s = time.monotonic() - started
    except (config.ConfigError, executors.ExecutorError, PipelineBusy, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(jobs, args.preset, wall_s))
    log.info("wall time %.0f s", wall_s)
    return 1 if any(j.status in ("failed", "blocked") for j in jobs) else 0


if __name__ == "__main__":
    sys.exit(main())

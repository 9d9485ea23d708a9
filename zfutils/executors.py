"""Where the pipeline's jobs (stage x backbone) run.

- `local` (default): on this machine, one after another; with `pipeline.workers: N` (N > 1), N
  jobs at once (each backbone's line of stages at its own pace, see below), each notebook kernel
  with cores // N threads. Most of a small job is
  single-threaded (a fresh kernel importing torch, scikit-learn and OpenCV: about 5 s; figures),
  so N kernels with fewer threads each finish a stage sooner than one kernel with every thread,
  without oversubscribing the cores (the threads are split, never multiplied).
- `submitit-local`: each job in its own process on this machine, through submitit: the cluster
  fan-out without a cluster (to try it, or to use several GPUs of one machine).
- `slurm`: each job a SLURM job, through submitit, with the parameters of `pipeline.cluster`.

The pipeline hands over one wave at a time: the jobs of one stage, whose upstream stages have
all finished. A job's stamp includes its upstream stamps, so it cannot be judged, or skipped,
before they are known; waves keep that rule, and the skip logic, exactly as in a local run (SLURM
`afterok` chains would need the stamps at submission time). The cost: a wave waits for its
slowest backbone before the next stage starts. The local workers avoid it: they take a backbone's
per-backbone stages as one line (`LocalWorkers.lines`), and a line's next stage starts as soon as
its own previous stage has finished and a worker is free, whatever the other backbones do.
"""
from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterator

EXECUTORS = ("local", "submitit-local", "slurm")

# pipeline.cluster: every key a run may set, with its default
CLUSTER_DEFAULTS = {
    "partition": None,      # SLURM partition; None: the cluster's default
    "account": None,
    "qos": None,
    "constraint": None,
    "timeout_min": None,    # per job; None: pipeline.timeout_s plus 10 minutes
    "gpus_per_node": 1,
    "cpus_per_task": 8,
    "mem_gb": 32,
    "max_parallel": None,   # jobs running at once; None: a whole wave
    "setup": [],            # shell lines run before each job, e.g. "module load cuda"
    "additional": None,     # further sbatch options, e.g. {"gres": "gpu:a100:1"}
}

# [(Job, work)]: work() runs the job wherever it is called and returns (its stamp or None, the Job)
Wave = list[tuple]


class ExecutorError(RuntimeError):
    """An executor that cannot run here (no SLURM), or cluster parameters that do not exist."""


def cluster_settings(cfg: dict) -> dict:
    """`pipeline.cluster` over the defaults; an unknown key is an error naming the known ones."""
    given = dict(cfg["pipeline"].get("cluster") or {})
    unknown = sorted(set(given) - set(CLUSTER_DEFAULTS))
    if unknown:
        raise ExecutorError(f"unknown key(s) {', '.join(f'pipeline.cluster.{k}' for k in unknown)}; "
                            f"known: {', '.join(CLUSTER_DEFAULTS)}")
    settings = {**CLUSTER_DEFAULTS, **given}
    if settings["timeout_min"] is None:
        settings["timeout_min"] = math.ceil(cfg["pipeline"]["timeout_s"] / 60) + 10
    return settings


def submitit_parameters(settings: dict, cluster: str) -> dict:
    """submitit's AutoExecutor parameters: generic ones, and slurm_* ones that the local executor
    ignores."""
    params = {k: settings[k] for k in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb")}
    params.update({f"slurm_{k}": settings[k] for k in ("partition", "account", "qos", "constraint") if settings[k]})
    if settings["additional"]:
        params["slurm_additional_parameters"] = dict(settings["additional"])
    if settings["setup"]:
        params[f"{cluster}_setup"] = list(settings["setup"])
    return params


def get(name: str, cfg: dict, folder) -> Callable[[Wave], Iterator]:
    """The executor `name`: a function that runs a wave and yields each job's stamp (or None) in
    order. Fails here, before anything runs, when the executor cannot work."""
    if name == "local":
        workers = int(cfg["pipeline"]["workers"])
        if workers < 1:
            raise ExecutorError(f"pipeline.workers must be at least 1, not {workers}")
        return run_local if workers == 1 else LocalWorkers(workers)
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor '{name}'; known executors: {', '.join(EXECUTORS)}")
    if name == "slurm" and shutil.which("sbatch") is None:
        raise ExecutorError("--executor slurm needs SLURM, but `sbatch` is not on PATH: run the pipeline on a "
                            "login node of the cluster, or use --executor submitit-local (this machine) or local")
    return SubmititWaves(name, cluster_settings(cfg), folder)


def announce(job, text: str) -> None:
    """A timed progress line about a job."""
    print(f"[{time.strftime('%H:%M:%S')}] {job.label}{text}".rstrip(), flush=True)


def run_local(wave: Wave) -> Iterator:
    """Each job in this process, in order (the pipeline's behaviour without an executor)."""
    for job, work in wave:
        announce(job, " ...")
        stamp, _ = work()
        announce(job, f": {job.status} {job.message}")
        yield stamp


# libraries that size their thread pools from these at start-up: torch (OpenMP), numpy and scikit-learn
# (BLAS), UMAP (numba), OpenCV's SIFT and RANSAC (its pthreads pool ignores OMP_NUM_THREADS)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "OPENCV_FOR_THREADS_NUM")


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """The cores shared out: every worker's kernel gets cores // workers threads (at least one)."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def _start_worker(threads: int, log_file: str | None) -> None:
    """In each worker process: the thread limits its notebook kernels inherit, and the pipeline log."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if log_file:
        logging.basicConfig(filename=log_file, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


class LocalWorkers:
    """A wave's jobs in `workers` processes of this machine at once (see the module docstring);
    results come back in the wave's order. Processes are spawned afresh for every wave, so a
    worker never carries state from one stage to the next."""

    def __init__(self, workers: int):
        self.workers = workers

    def __call__(self, wave: Wave) -> Iterator:
        if not wave:
            return
        with self._pool(len(wave)) as (pool, _, note):  # a wave of one job (data, report) gets every core
            running = []
            for job, work in wave:
                running.append((job, pool.submit(work)))
                announce(job, f" queued ({note})")
            for job, future in running:
                yield _collect(job, future)

    def lines(self, chains: list) -> None:
        """Run lines of dependent jobs: each chain is a generator that yields (job, work) for
        its next job and is sent that job's stamp (None: it failed) back. A job starts when a
        worker is free, in the order the jobs became ready (the lines' order at first), so a
        line never waits for another line's slow stage."""
        ready = deque()

        def advance(chain, stamp=None, first=False) -> None:
            try:
                ready.append((chain, *(next(chain) if first else chain.send(stamp))))
            except StopIteration:
                pass

        for chain in chains:
            advance(chain, first=True)
        if not ready:
            return
        with self._pool(len(chains)) as (pool, workers, note):
            running = {}
            while ready or running:
                while ready and len(running) < workers:
                    chain, job, work = ready.popleft()
                    running[pool.submit(work)] = (chain, job)
                    announce(job, f" started ({note})")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    chain, job = running.pop(future)
                    advance(chain, _collect(job, future))

    @contextlib.contextmanager
    def _pool(self, jobs: int):
        """Spawned worker processes, min(workers, jobs) of them, with the cores shared out."""
        workers = min(self.workers, jobs)
        threads = threads_per_worker(workers)
        log_file = next((h.baseFilename for h in logging.getLogger().handlers
                         if isinstance(h, logging.FileHandler)), None)
        with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(threads, log_file),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool, workers, f"{workers} at once, {threads} thread(s) each"


def _collect(job, future):
    """The stamp a worker's job returned, with its status, seconds and message copied into the
    pipeline's Job (a failed worker process: failed, with its last line)."""
    try:
        stamp, remote = future.result()
        job.status, job.seconds, job.message = remote.status, remote.seconds, remote.message
    except Exception as err:  # the worker process itself died (memory, a signal)
        stamp, job.status = None, "failed"
        job.message = f"local worker failed: {_last_line(err)}"[:200]
    announce(job, f": {job.status} {job.message}")
    return stamp


class SubmititWaves:
    """Submit a wave's jobs through submitit (at most `max_parallel` at a time), wait for them,
    and copy what each found back into the pipeline's Job."""

    def __init__(self, name: str, settings: dict, folder):
        import submitit

        self.name, self.max_parallel = name, settings["max_parallel"]
        self.executor = submitit.AutoExecutor(folder=f"{folder}/%j", cluster="local" if name == "submitit-local"
                                              else "slurm")
        self.executor.update_parameters(name="zfutils", **submitit_parameters(settings, self.executor.cluster))

    def __call__(self, wave: Wave) -> Iterator:
        step = self.max_parallel or max(len(wave), 1)
        for start in range(0, len(wave), step):
            yield from self._run(wave[start:start + step])

    def _run(self, chunk: Wave) -> Iterator:
        submitted = []
        for job, work in chunk:
            handle = self.executor.submit(work)
            submitted.append((job, handle))
            announce(job, f" submitted as {self.name} job {handle.job_id} (log: {handle.paths.stdout})")
        for job, handle in submitted:
            try:
                stamp, remote = handle.result()
                job.status, job.seconds, job.message = remote.status, remote.seconds, remote.message
            except Exception as err:  # the job itself died (time limit, memory, node failure)
                stamp, job.status = None, "failed"
                job.message = f"{self.name} job {handle.job_id} failed: {_last_line(err)}"[:200]
            announce(job, f": {job.status} {job.message}")
            yield stamp


def _last_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__

"""Speed of the synthetic zebrafish generator on one CPU thread.

    python -m benchmarks.bench_synth [--size 128 --n 300 --individuals 6 --family stripes]

Times the pattern simulation per individual, the one-off session setup (tank backgrounds) and
rendering of `--n` images once patterns exist; prints images/s and writes
benchmarks/results/synth.json (with the git commit that was measured).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from benchmarks.measure import machine_info
from zfutils.data.synth import SynthSpec, make_individuals, make_sessions, render_sample
from zfutils.provenance import git_sha

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the environment variables above already pin the thread pools
    threadpool_limits = None

RESULTS = Path(__file__).resolve().parent / "results" / "synth.json"


def run(size: int, n: int, individuals: int, family: str, seed: int) -> dict:
    spec = SynthSpec(individuals=individuals, image_size=size, family=family, seed=seed)
    t0 = time.perf_counter()
    fish = make_individuals(spec)
    t_pattern = (time.perf_counter() - t0) / individuals

    t0 = time.perf_counter()
    sessions = make_sessions(spec)
    for session in sessions:  # backgrounds and anti-aliasing levels are made once, on first use
        for f in fish:
            render_sample(spec, f, session, 0)
    t_setup = time.perf_counter() - t0

    jobs = [(f, s, k) for k in range(1, n + 1) for s in sessions for f in fish][:n]
    t0 = time.perf_counter()
    for f, s, k in jobs:
        render_sample(spec, f, s, k)
    t_render = time.perf_counter() - t0
    return {
        "image_size": size, "images": len(jobs), "individuals": individuals, "family": family,
        "pattern_seconds_per_individual": round(t_pattern, 4), "pattern_shape": list(fish[0].texture.shape),
        "session_setup_seconds": round(t_setup, 4),
        "render_images_per_second": round(len(jobs) / t_render, 1),
        "render_ms_per_image": round(1000 * t_render / len(jobs), 3),
        "threads": 1, "numpy": np.__version__, "machine": machine_info(), "git_sha": git_sha(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--individuals", type=int, default=6)
    parser.add_argument("--family", default="stripes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with threadpool_limits(1) if threadpool_limits else nullcontext():
        result = run(args.size, args.n, args.individuals, args.family, args.seed)
    print(f"pattern: {result['pattern_seconds_per_individual']:.3f} s per individual {tuple(result['pattern_shape'])}")
    print(f"session setup: {result['session_setup_seconds']:.2f} s")
    print(f"render {args.size}x{args.size}: {result['render_images_per_second']:.1f} images/s "
          f"({result['render_ms_per_image']:.2f} ms/image, 1 thread)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The benchmark suite's entry point (`make bench`, `python -m benchmarks`): runs every piece in
its own process, one after another, prints one table per backbone x size x device and writes
benchmarks/results/<piece>.json plus summary.json.

    python -m benchmarks [--sizes quick,paper --devices cpu,cuda --steps N --quick-only
                          --only inpaint,classify --threads T --set KEY=VALUE --out DIR]

Pieces: synth (synthetic data rate), inpaint (generator + discriminator step), classify (deep
and shallow step, embedding throughput), localfeatures (the matching methods' extraction and
per-query cost at each size's image size), stages (wall times recorded by the pipeline under
runs/smoke and runs/quick). cuda rows are measured only where torch sees a GPU. summary.json
holds the machine (CPU model, cores, torch, threads, devices), the git sha, the load average
before and after, each piece's command, wall time and exit status, and the combined rows.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import bench_stages, measure
from zfutils import config
from zfutils.models import BACKBONES
from zfutils.paths import PROJECT_ROOT
from zfutils.provenance import git_sha

RESULTS = Path(__file__).resolve().parent / "results"
PIECES = ("synth", "inpaint", "classify", "localfeatures", "stages")
STAGE_PRESETS = ("smoke", "quick")


def matchers() -> list[str]:
    return sorted(name for name, b in BACKBONES.items() if b.matcher is not None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=measure.names_of("size", config.available("presets")),
                        default=["quick", "paper"])
    parser.add_argument("--devices", type=measure.names_of("device", ["cpu", "cuda"]), default=["cpu", "cuda"],
                        help="cuda rows only where torch sees a GPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default: each piece's per size)")
    parser.add_argument("--quick-only", action="store_true",
                        help="a short run: the quick size only, 1 timed step per row (unless --steps), "
                             "fewer synthetic images")
    parser.add_argument("--only", type=measure.names_of("piece", list(PIECES)), default=list(PIECES),
                        help="pieces to run")
    parser.add_argument("--threads", type=int, default=measure.default_threads(), help="torch threads of every row")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for the inpaint and classify rows, e.g. compute.precision=bf16")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON files")
    args = parser.parse_args(argv)
    try:  # a wrong key fails here, not once per row in every subprocess
        config.resolve("quick", None, config.overrides_from_args(args.overrides))
    except config.ConfigError as err:
        parser.error(str(err))
    if args.quick_only:
        args.sizes, args.steps = ["quick"], args.steps or 1
    args.skipped_devices = [d for d in args.devices if d == "cuda" and not torch.cuda.is_available()]
    args.devices = [d for d in args.devices if d not in args.skipped_devices]
    if not args.devices:
        parser.error("no device left to measure: torch sees no CUDA GPU; add cpu to --devices")
    return args


def image_sizes(args) -> dict[str, int]:
    """The image side of every size asked for, overrides included."""
    overrides = config.overrides_from_args(args.overrides)
    return {size: config.resolve(size, None, overrides)["data"]["image_size"] for size in args.sizes}


def commands(args) -> dict[str, list[str]]:
    """The command line of every piece asked for."""
    py, out = [sys.executable, "-m"], args.out
    steps = ["--steps", str(args.steps)] if args.steps else []
    device = "all" if len(args.devices) == 2 else args.devices[0]
    network = ["--sizes", ",".join(args.sizes), "--device", device, "--threads", str(args.threads), *steps,
               *[arg for item in args.overrides for arg in ("--set", item)]]
    cmds = {
        "synth": py + ["benchmarks.bench_synth", "--out", str(out / "synth.json")] + ["--n", "100"] * args.quick_only,
        "inpaint": py + ["benchmarks.bench_inpaint", *network, "--out", str(out / "inpaint.json")],
        "classify": py + ["benchmarks.bench_classify", *network, "--out", str(out / "classify.json")],
        "localfeatures": py + ["benchmarks.bench_localfeatures", "--sizes", *map(str, sorted(set(image_sizes(args).values()))),
                               "--methods", *matchers(), "--out", str(out / "localfeatures.json")],
        "stages": py + ["benchmarks.bench_stages", "--presets", ",".join(STAGE_PRESETS),
                        "--out", str(out / "stages.json")],
    }
    return {name: cmds[name] for name in PIECES if name in args.only}


def run_piece(name: str, cmd: list[str]) -> dict:
    """Run one piece in its own process (its progress on stderr shows); its stdout is kept."""
    print(f"[{name}] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    seconds = time.perf_counter() - start
    print(f"[{name}] {'done' if out.returncode == 0 else f'FAILED (exit {out.returncode})'} in {seconds:.0f} s",
          file=sys.stderr, flush=True)
    if out.returncode != 0:
        print(out.stdout[-3000:], file=sys.stderr)
    return {"piece": name, "command": cmd[1:], "seconds": round(seconds, 1), "returncode": out.returncode}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def combined_rows(out: Path, pixels: dict[str, int], ran: set[str]) -> list[dict]:
    """One row per backbone x size x device from the JSON files of the pieces that ran now;
    `pixels`: the image side of each size, to find the matching methods' rows."""
    rows: dict[tuple, dict] = {}

    def row(backbone, size, device, px):
        return rows.setdefault((backbone, size, device), {"backbone": backbone, "size": size, "device": device,
                                                          "px": px})

    inpaint = _read(out / "inpaint.json") if "inpaint" in ran else None
    for r in (inpaint or {}).get("rows", []):
        row(r["backbone"], r["size"], r["device"], r["image_size"]).update(
            inpaint_batch=r["batch"], inpaint_s=r["median_step_s"], inpaint_img_s=r["images_per_s"],
            inpaint_gflop=r["gflop_per_step"], inpaint_util=r["flop_util_pct"], inpaint_mib=r["peak_mem_mib"],
            inpaint_matmul_gflops=r["matmul_peak"]["gflops"])
    classify = _read(out / "classify.json") if "classify" in ran else None
    for r in (classify or {}).get("rows", []):
        row(r["backbone"], r["size"], r["device"], r["image_size"]).update(
            classify_batch=r["batch"], deep_s=r["deep_median_step_s"], deep_gflop=r["deep_gflop_per_step"],
            deep_util=r["deep_flop_util_pct"], shallow_ms=round(1000 * r["shallow_median_step_s"], 3),
            embed_img_s=r["embed_images_per_s"], embed_util=r["embed_flop_util_pct"], classify_mib=r["peak_mem_mib"],
            classify_matmul_gflops=r["matmul_peak"]["gflops"])
    local = _read(out / "localfeatures.json") if "localfeatures" in ran else None
    for size, px in pixels.items():
        for r in (local or {}).get("rows", []):
            if r["image_size"] == px and r["method"] in matchers():
                row(r["method"], size, "cpu", px).update(embed_img_s=round(1000 / r["gallery_ms_per_image"], 2),
                                                         query_ms=round(r["ms_per_query"], 2))
    families = ("inpainting", "baseline", "embedding", "matching")
    order = {name: k for k, name in enumerate(sorted(BACKBONES, key=lambda n: (
        families.index(BACKBONES[n].family) if BACKBONES[n].family in families else len(families), n)))}
    sizes = list(pixels)
    return sorted(rows.values(), key=lambda r: (r["device"], sizes.index(r["size"]) if r["size"] in sizes else 99,
                                                order.get(r["backbone"], 99)))


COLUMNS = [("backbone", "backbone"), ("size", "size"), ("device", "device"), ("px", "px"), ("batch", "batch"),
           ("inpaint_s", "inpaint s/step"), ("inpaint_util", "inpaint util %"), ("inpaint_mib", "inpaint MiB"),
           ("deep_s", "deep s/step"), ("deep_util", "deep util %"), ("shallow_ms", "shallow ms/step"),
           ("embed_img_s", "embed img/s"), ("embed_util", "embed util %"), ("classify_mib", "classify MiB"),
           ("query_ms", "match ms/query"), ("matmul", "matmul GFLOP/s")]


def render(rows: list[dict]) -> str:
    from tabulate import tabulate

    body = []
    for r in rows:
        batches = sorted({r[k] for k in ("inpaint_batch", "classify_batch") if k in r})
        peaks = [measure.cell(r[k]) for k in ("inpaint_matmul_gflops", "classify_matmul_gflops") if k in r]
        cells = {**r, "batch": "/".join(map(str, batches)) or "-", "matmul": "/".join(peaks) or "-"}
        body.append([cells[key] if key in ("batch", "matmul") else measure.cell(cells.get(key)) for key, _ in COLUMNS])
    align = ["left"] * 3 + ["right"] * (len(COLUMNS) - 3)
    return tabulate(body, [title for _, title in COLUMNS], tablefmt="github", disable_numparse=True, colalign=align)


NOTES = ("inpaint: one D + one G update at the preset's size and batch; deep: encoder + head forward, backward, "
         "AdamW; shallow: the head step on cached features; embed: eval forward of 32 images, no grad (matching "
         "methods: keypoint extraction of one gallery image, one thread); match ms/query: extracting a query "
         "(mirrored too) and matching it against the gallery. util %: FLOPs per step (torch.utils.flop_counter, "
         "forward + backward; no FFT, element-wise or optimiser work) / median step time / the fp32 matmul peak "
         "measured in the same process (matmul GFLOP/s: inpainting/classification process). MiB: CPU RSS "
         "high-water mark of the row's process (CUDA: max_memory_allocated). Paper size on CPU runs at batch 2.")


def print_tables(rows: list[dict], stages: dict | None, synth: dict | None) -> None:
    if rows:
        print(render(rows))
        print(NOTES)
    if stages:
        print("\nStage wall times (s), the latest recorded run of each stage:\n"
              + bench_stages.render(stages["presets"]))
    if synth:
        print(f"\nsynthetic data: {synth['render_images_per_second']:.0f} images/s at {synth['image_size']} px "
              f"(1 thread), {synth['pattern_seconds_per_individual']:.2f} s per individual's pattern")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    torch.set_num_threads(args.threads)
    machine = measure.machine_info(args.devices)
    print(f"{machine['cpu_model']}, {machine['usable_cores']} usable cores, torch {machine['torch']}, "
          f"{args.threads} threads, devices {', '.join(args.devices)}"
          + (f" (no GPU: {', '.join(args.skipped_devices)} skipped)" if args.skipped_devices else ""), flush=True)
    load_before, start = os.getloadavg(), time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    pieces = [run_piece(name, cmd) for name, cmd in commands(args).items()]
    load_after, wall = os.getloadavg(), time.perf_counter() - start
    ran = {p["piece"] for p in pieces if p["returncode"] == 0}
    rows = combined_rows(args.out, image_sizes(args), ran)
    stages = _read(args.out / "stages.json") if "stages" in ran else None
    synth = _read(args.out / "synth.json") if "synth" in ran else None
    print_tables(rows, stages, synth)
    peaks = [r[k] for r in rows for k in ("inpaint_matmul_gflops", "classify_matmul_gflops") if k in r]
    peak_range = f"fp32 matmul peak {min(peaks):.0f}..{max(peaks):.0f} GFLOP/s over the rows; " if peaks else ""
    print(f"\nload average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; {peak_range}"
          f"{wall / 60:.1f} min in all")
    summary = {
        "machine": machine, "git_sha": git_sha(), "started": started, "wall_s": round(wall, 1),
        "settings": {"sizes": args.sizes, "devices": args.devices, "skipped_devices": args.skipped_devices,
                     "steps": args.steps, "quick_only": args.quick_only, "threads": args.threads,
                     "overrides": args.overrides,
                     "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "stage_presets": list(STAGE_PRESETS)},
        "load_average": {"before": load_before, "after": load_after},
        "matmul_peak_gflops": {"min": min(peaks, default=None), "max": max(peaks, default=None)},
        "pieces": pieces, "rows": rows,
        "stage_totals_s": {p: e["total_s"] for p, e in (stages or {}).get("presets", {}).items()},
        "synth_images_per_s": (synth or {}).get("render_images_per_second"),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'summary.json'} and the pieces' JSON beside it")
    failed = [p["piece"] for p in pieces if p["returncode"] != 0]
    if failed:
        sys.exit(f"benchmark pieces failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

"""What every benchmark piece measures the same way: step times, peak memory, FLOPs per step
(torch.utils.flop_counter), the machine's fp32 matmul peak and the facts about the machine; and
how their tables show a number.

FLOP utilization = (FLOPs of one step / median step time) / matmul peak, both in the same
process with the same thread count, so a slower or busier machine moves both. FlopCounterMode
counts matrix products, convolutions and attention, forward and backward; element-wise work,
normalisation, FFTs (LaMa's Fourier units) and optimiser updates are not counted, so utilization
is a lower bound for models that spend much time there. A convolution's backward is counted as
twice its forward, groups included (torch's own formula ignores them: see _conv_backward_flops).
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

MIB = 2 ** 20
MATMUL_N = {"cpu": 2048, "cuda": 8192}  # side of the square fp32 matmul that measures the peak


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_model()


def machine_info(devices: list[str] | None = None) -> dict:
    devices = devices or ["cpu"]
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "usable_cores": default_threads(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "cuda_available": torch.cuda.is_available(),
            "devices": {d: device_name(d) for d in devices}}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rss_now() -> int | None:
    """Current resident set size in bytes (Linux); None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


class Memory:
    """Peak memory from `start()` on. CPU: the process's RSS high-water mark (monotonic and
    process-wide, so only a fresh process makes it one configuration's own) and the RSS at
    start; CUDA: torch.cuda.max_memory_allocated, reset at start, and the allocation then."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.kind = "cuda_max_allocated" if self.cuda else "rss_high_water"
        self.base: int | None = None

    def start(self) -> "Memory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = rss_now()
        return self

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated() if self.cuda else rss_peak()

    def fields(self, prefix: str = "") -> dict:
        """{prefix}peak_mem_mib and {prefix}step_mem_mib (the peak minus the memory at start:
        gradients, optimiser state, activations)."""
        peak = self.peak()
        added = None if self.base is None else round((peak - self.base) / MIB, 1)
        return {f"{prefix}peak_mem_mib": round(peak / MIB, 1), f"{prefix}step_mem_mib": added}


class _TotalOnly:
    """Stands in for FlopCounterMode's module tracker, which attributes FLOPs to modules by hooking
    their backward and fails under torch.autograd.grad on an input (LaMa's R1 gradient penalty:
    "A leaf node was passed to _will_engine_execute_node"); only the total is needed here."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """convolution_backward: the input gradient and the weight gradient each cost the forward
    convolution's multiplications. torch's own formula ignores `groups` and counts a depthwise
    convolution's backward `groups` times over (EfficientNet's would exceed the machine's peak)."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of `step` (forward and backward where it does both); it really runs."""
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _TotalOnly()
    with counter:
        step()
    return int(counter.get_total_flops())


def time_steps(step: Callable[[], object], steps: int, device: str) -> list[float]:
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def run_steps(step: Callable[[], object], *, steps: int, warmup: int, device: str) -> tuple[list[float], int]:
    """Step times of `steps` timed calls and the FLOPs of one call. The first warm-up call runs
    under the FLOP counter (it warms up all the same); with no warm-up a counted call follows."""
    flops = None
    for k in range(warmup):
        if k == 0:
            flops = count_flops(step)
        else:
            step()
    times = time_steps(step, steps, device)
    if flops is None:
        flops = count_flops(step)
    return times, flops


@torch.no_grad()
def matmul_peak(device: str = "cpu", n: int | None = None, repeats: int = 5) -> dict:
    """The machine's fp32 matmul rate now, in this process and at its thread count: best of
    `repeats` products of two n x n matrices after one untimed."""
    n = n or MATMUL_N["cuda" if device.startswith("cuda") else "cpu"]
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(n, n, generator=g).to(device) for _ in range(2))
    a @ b
    times = time_steps(lambda: a @ b, repeats, device)
    del a, b
    best = min(times)
    return {"n": n, "dtype": "float32", "repeats": repeats, "best_s": round(best, 5),
            "gflops": round(2 * n ** 3 / best / 1e9, 2), "threads": torch.get_num_threads()}


def step_fields(prefix: str, times: list[float], items: int, flops: int, peak_gflops: float) -> dict:
    """Median and min step time, items (images) per second, GFLOP per step, the achieved rate
    and its share of the matmul peak, under `prefix`."""
    median = statistics.median(times)
    achieved = flops / median / 1e9
    return {f"{prefix}step_seconds": [round(t, 5) for t in times], f"{prefix}median_step_s": round(median, 5),
            f"{prefix}min_step_s": round(min(times), 5), f"{prefix}images_per_s": round(items / median, 2),
            f"{prefix}flops_per_step": flops, f"{prefix}gflop_per_step": float(f"{flops / 1e9:.4g}"),
            f"{prefix}achieved_gflops": float(f"{achieved:.4g}"),
            f"{prefix}flop_util_pct": float(f"{100 * achieved / peak_gflops:.4g}")}


def cell(value) -> str:
    """A table cell: three significant digits without an exponent, '-' for nothing."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


# --- the command line shared by the per-row benchmarks (bench_inpaint, bench_classify) ---------------
def names_of(kind: str, known: list[str]):
    """argparse type: a comma-separated list of names out of `known`."""
    import argparse

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {kind} {', '.join(map(repr, unknown)) or repr(text)}; "
                                             f"known {kind}s: {', '.join(known)}")
        return names
    return parse


def row_parser(doc: str, backbones: list[str], *, steps_help: str, warmup_help: str, batch_help: str, out: Path):
    """The options every per-row benchmark takes: which backbones, sizes and devices, steps, batch,
    threads, config overrides, where results go, and `--one` (one row in this process)."""
    import argparse

    from zfutils import config

    presets = config.available("presets")
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", type=names_of("backbone", backbones), default=backbones)
    parser.add_argument("--sizes", type=names_of("size", presets), default=["quick", "paper"],
                        help="presets whose image size, width, blocks and batch are used")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="all: CPU, and CUDA when torch sees a GPU")
    parser.add_argument("--steps", type=int, default=None, help=steps_help)
    parser.add_argument("--warmup", type=int, default=1, help=warmup_help)
    parser.add_argument("--batch", type=int, default=None, help=batch_help)
    parser.add_argument("--threads", type=int, default=default_threads(), help="torch threads (default: all cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for every row, e.g. compute.precision=bf16 (repeatable)")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--one", nargs=3, metavar=("BACKBONE", "SIZE", "DEVICE"),
                        help="measure one configuration in this process and print its row as JSON")
    return parser


def parse_row_args(parser, argv, backbones: list[str]):
    """Parsed options, with the errors a row would otherwise hit once per subprocess."""
    from zfutils import config

    args = parser.parse_args(argv)
    presets = config.available("presets")
    if args.one and (args.one[0] not in backbones or args.one[1] not in presets or args.one[2] not in ("cpu", "cuda")):
        parser.error(f"--one needs BACKBONE SIZE DEVICE with BACKBONE in {backbones}, SIZE in {presets} "
                     "and DEVICE cpu or cuda")
    try:
        config.resolve("quick", None, config.overrides_from_args(args.overrides))
    except config.ConfigError as err:
        parser.error(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch sees no CUDA GPU")
    return args


def batch_for(args, size: str, device: str, cpu_paper_batch: int) -> int | None:
    """--batch, else a small batch for paper size on CPU, else the preset's (None)."""
    if args.batch:
        return args.batch
    return cpu_paper_batch if (size == "paper" and device == "cpu") else None


def run_row(module: str, args, backbone: str, size: str, device: str, cpu_paper_batch: int) -> dict:
    """One row measured in a fresh process (`python -m <module> --one ...`), start-up included."""
    import json
    import subprocess

    from zfutils.paths import PROJECT_ROOT

    cmd = [sys.executable, "-m", module, "--one", backbone, size, device,
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    batch = batch_for(args, size, device, cpu_paper_batch)
    cmd += ["--steps", str(args.steps)] * bool(args.steps) + ["--batch", str(batch)] * bool(batch)
    cmd += [arg for item in args.overrides for arg in ("--set", item)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"measuring {backbone} {size} {device} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {**row, "process_seconds": round(time.perf_counter() - start, 1)}


def devices_for(choice: str) -> list[str]:
    """--device: `all` is the CPU, and CUDA where torch sees a GPU; anything else is that device."""
    if choice != "all":
        return [choice]
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def sweep(args, run_one: Callable[..., dict], progress: Callable[[dict], str], devices: list[str]) -> tuple[list, dict]:
    """Every device x size x backbone row, each measured by `run_one(args, backbone, size, device)`
    (a fresh process), with a progress line per row on stderr; returns the rows and the 1-minute
    load average before and after, which says whether the machine was quiet."""
    print(f"torch {torch.__version__}, {args.threads} torch threads, OMP_WAIT_POLICY=PASSIVE, "
          f"devices: {', '.join(f'{d} ({device_name(d)})' for d in devices)}", flush=True)
    before, rows = os.getloadavg(), []
    for device in devices:
        for size in args.sizes:
            for backbone in args.backbones:
                rows.append(run_one(args, backbone, size, device))
                print(f"  {progress(rows[-1])}", file=sys.stderr, flush=True)
    return rows, {"before": before, "after": os.getloadavg()}


def write_result(out: Path, *, devices: list[str], settings: dict, load: dict, rows: list[dict]) -> None:
    """A benchmark's JSON: the machine, the settings, the load average around the sweep, the
    commit and the rows."""
    import json

    from zfutils.provenance import git_sha

    print(f"load average (1 min) before {load['before'][0]:.2f}, after {load['after'][0]:.2f}")
    result = {"machine": machine_info(devices), "settings": settings, "load_average": load, "git_sha": git_sha(),
              "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")

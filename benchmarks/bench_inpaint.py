"""Training-step cost of every inpainting backbone: time, peak memory and FLOP utilization of
one discriminator update plus one generator update (the backbone's configured loss recipe), at
the quick and the paper size, on CPU and, when torch sees one, on CUDA.

    python -m benchmarks.bench_inpaint [--sizes quick,paper --backbones aotgan,lama --device cpu
                                        --steps N --batch B --threads T --set compute.precision=bf16]

Each (backbone, size, device) is measured in a fresh subprocess (`--one BACKBONE SIZE DEVICE`),
so that the CPU memory high-water mark (ru_maxrss, process-wide and monotonic) belongs to that
configuration alone. A size is a preset (params/presets/<size>.yaml): image size, width, blocks
and batch come from it; the backbone's loss recipe from params/backbones/<name>.yaml, with
`missing_weights: drop` (terms whose pretrained network is absent are dropped and listed).
FLOPs per step come from torch.utils.flop_counter (the first warm-up step runs under it; see
benchmarks/measure.py for what it counts), utilization is their rate against a large fp32 matmul
measured in the same process. Writes benchmarks/results/inpaint.json (machine, settings, rows,
git sha, load average).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: no spinning idle threads

import argparse
import json
import tempfile
from pathlib import Path

import torch

from benchmarks.measure import (Memory, batch_for, cell, devices_for, matmul_peak, parse_row_args, row_parser,
                                run_row, run_steps, step_fields, sweep, write_result)
from zfutils import config
from zfutils.models import BACKBONES, get
from zfutils.train.compute import Compute
from zfutils.train.inpaint import InpaintTrainer
from zfutils.train.recipe import LossRecipe

RESULTS = Path(__file__).resolve().parent / "results" / "inpaint.json"
DEFAULT_STEPS = {"quick": 5, "paper": 2}   # timed steps per size (others: 3), after --warmup steps
CPU_PAPER_BATCH = 2                         # paper size on CPU by default: batch 8 takes about 4x as long


def inpainting_backbones() -> list[str]:
    return sorted(name for name, b in BACKBONES.items() if b.family == "inpainting" and b.build_discriminator)


def make_batch(batch: int, size: int, seed: int = 0) -> dict:
    """Random images and a hole per image: one rectangle (a quarter to a half of each side) plus
    dilated speckle over ~10 % of the image, 1 = hole."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=g)
    mask = torch.zeros(batch, 1, size, size)
    for k in range(batch):
        h, w = (int(v) for v in torch.randint(size // 4, size // 2 + 1, (2,), generator=g))
        y, x = (int(v) for v in torch.randint(0, size - max(h, w) + 1, (2,), generator=g))
        mask[k, :, y:y + h, x:x + w] = 1
    speckle = (torch.rand(batch, 1, size, size, generator=g) < 0.012).float()
    mask = torch.maximum(mask, torch.nn.functional.max_pool2d(speckle, 3, stride=1, padding=1))
    return {"image": image, "mask": mask}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_trainer(backbone: str, preset: str, device: str, run_dir: Path, overrides: dict | None = None):
    """The stage-02 trainer for `backbone` at `preset`'s scale, as the pipeline builds it."""
    cfg = config.resolve(preset, backbone, overrides)
    b = get(backbone)
    generator = b.build_generator(width=cfg["model"]["width"], blocks=cfg["model"]["blocks"])
    discriminator = b.build_discriminator(width=cfg["model"]["width"])
    recipe = LossRecipe.from_config({**cfg["inpaint"], "missing_weights": "drop"})
    ic = cfg["inpaint"]
    trainer = InpaintTrainer(backbone=b, generator=generator, discriminator=discriminator, recipe=recipe,
                             run_dir=run_dir, epochs=1, batch_size=ic["batch_size"], lr_g=ic["lr_g"], lr_d=ic["lr_d"],
                             betas=tuple(ic["betas"]), grad_clip=ic["grad_clip"], device=device,
                             compute=Compute.from_cfg(cfg, device))
    return cfg, trainer


def measure(backbone: str, size: str, device: str = "cpu", *, steps: int | None = None, batch: int | None = None,
            warmup: int = 1, threads: int | None = None, overrides: dict | None = None) -> dict:
    """Time `steps` training steps after `warmup` ones (the first counts FLOPs) and record peak
    memory and FLOP utilization; one table row.

    CPU memory: `peak_mem_mib` is the process's RSS high-water mark after the steps, and
    `step_mem_mib` that mark minus the RSS just before the first (warm-up) step, i.e. what the
    steps add to the built models and batch: gradients, Adam state, activations, the loss
    networks' work. Only a fresh process makes it this configuration's own (the CLI runs one).
    CUDA memory: torch.cuda.max_memory_allocated (reset before the warm-up), with the same split.
    """
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    steps = steps or DEFAULT_STEPS.get(size, 3)
    with tempfile.TemporaryDirectory(prefix="bench_inpaint_") as run_dir:
        cfg, trainer = build_trainer(backbone, size, device, Path(run_dir), overrides)
        batch = batch or cfg["inpaint"]["batch_size"]
        image_size = cfg["data"]["image_size"]
        data = make_batch(batch, image_size)
        data = {k: v.to(device) for k, v in data.items()}
        memory = Memory(device).start()
        times, flops = run_steps(lambda: trainer.train_step(data), steps=steps, warmup=warmup, device=device)
        mem = memory.fields()
    peak = matmul_peak(device)  # after the memory was read: its matrices stay out of the peak
    step = step_fields("", times, batch, flops, peak["gflops"])
    return {
        "backbone": backbone, "size": size, "device": device, "image_size": image_size, "batch": batch,
        "width": cfg["model"]["width"], "blocks": cfg["model"]["blocks"], "threads": torch.get_num_threads(),
        "warmup_steps": warmup, "steps": steps, "compute": cfg["compute"], **step, "matmul_peak": peak,
        "memory": memory.kind, **mem,
        "generator_params": _count(trainer.generator), "discriminator_params": _count(trainer.discriminator),
        "loss_terms": {k: v for k, v in trainer.recipe.terms().items() if v}, "dropped_terms": trainer.recipe.dropped,
        "grad_clip": cfg["inpaint"]["grad_clip"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    backbones = inpainting_backbones()
    parser = row_parser(__doc__, backbones, out=RESULTS,
                                steps_help=f"timed steps (default per size: {DEFAULT_STEPS}, others 3)",
                                warmup_help="untimed steps first",
                                batch_help=f"default: the preset's inpaint.batch_size, but {CPU_PAPER_BATCH} for paper on CPU")
    return parse_row_args(parser, argv, backbones)


def _batch_for(args, size: str, device: str) -> int | None:
    return batch_for(args, size, device, CPU_PAPER_BATCH)


def _run_one(args, backbone: str, size: str, device: str) -> dict:
    return run_row("benchmarks.bench_inpaint", args, backbone, size, device, CPU_PAPER_BATCH)


def _table(rows: list[dict]) -> str:
    from tabulate import tabulate

    head = ["backbone", "size", "device", "px", "batch", "G Mpar", "D Mpar", "s/step", "img/s", "GFLOP/step",
            "util %", "peak MiB", "step MiB", "dropped terms"]
    body = [[r["backbone"], r["size"], r["device"], r["image_size"], r["batch"], r["generator_params"] / 1e6,
             r["discriminator_params"] / 1e6, r["median_step_s"], r["images_per_s"], r["gflop_per_step"],
             r["flop_util_pct"], r["peak_mem_mib"], r["step_mem_mib"], ", ".join(r["dropped_terms"]) or "-"]
            for r in rows]
    return tabulate([[cell(v) for v in line] for line in body], head, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one:
        backbone, size, device = args.one
        row = measure(backbone, size, device, steps=args.steps, batch=args.batch, warmup=args.warmup,
                      threads=args.threads, overrides=config.overrides_from_args(args.overrides))
        print(json.dumps(row))
        return
    devices = devices_for(args.device)
    rows, load = sweep(args, _run_one, lambda r: f"{r['backbone']} {r['size']} {r['device']}: "
                       f"{r['median_step_s']:.3f} s/step", devices)
    print(_table(rows))
    print("s/step: median wall time of one D update + one G update (after warm-up); img/s = batch / s/step; "
          "util %: GFLOP/step (flop_counter, forward + backward) / s/step / fp32 matmul peak of the same process")
    print("peak MiB: CPU RSS high-water mark of the measuring process (CUDA: max_memory_allocated); "
          "step MiB: that peak minus the memory before the first step (grads, Adam state, activations)")
    if any(r["device"] == "cpu" and r["size"] == "paper" and r["batch"] != 8 for r in rows):
        print(f"paper on CPU runs at batch {CPU_PAPER_BATCH}, not the preset's 8, to keep the default run short "
              "(batch 8: about 4x the time and the activation memory); --batch 8 to measure it")
    write_result(args.out, devices=devices, load=load, rows=rows, settings={
        "backbones": args.backbones, "sizes": args.sizes, "devices": devices, "steps": args.steps,
        "default_steps": DEFAULT_STEPS, "warmup": args.warmup, "batch": args.batch, "cpu_paper_batch": CPU_PAPER_BATCH,
        "threads": args.threads, "overrides": args.overrides, "omp_wait_policy": "PASSIVE",
        "missing_weights": "drop", "one_process_per_row": True})


if __name__ == "__main__":
    main()

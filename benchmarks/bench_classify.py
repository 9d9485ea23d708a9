"""Classification cost of every network backbone (stage 03's steps): embedding throughput, the
shallow step on cached features, the deep training step; peak memory and FLOP utilization, at
the quick and the paper size, on CPU and, when torch sees one, on CUDA.

    python -m benchmarks.bench_classify [--sizes quick,paper --backbones lama,efficientnet
                                         --device cpu --steps N --batch B --threads T
                                         --set compute.precision=bf16]

Each (backbone, size, device) is measured in a fresh subprocess (`--one BACKBONE SIZE DEVICE`),
so that the CPU memory high-water mark belongs to that configuration alone. A size is a preset:
image size, width and blocks come from config.resolve(preset, backbone) (the baselines keep
their one official size), the batch from classify.batch_size, the head and pooling from the
backbone's file, precision and memory layout from `compute` (fp32 unless `--set` says otherwise).
Weights are random: the cost does not depend on them.

- embed: the evaluation forward (no grad) of a batch of 32 images to pooled vectors, as stages
  03-05 compute embeddings; images/s.
- shallow: one head step (forward, backward, AdamW) on cached pooled features: shallow mode
  computes the frozen encoder's features once and then trains only this.
- deep: one training step of encoder + head (forward, backward, AdamW), as deep mode.

Order: embed, then deep, then shallow, so the CPU high-water mark after embed is embedding's
and the final one is the deep step's. Writes benchmarks/results/classify.json.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: no spinning idle threads

import argparse
import json
import tempfile
from pathlib import Path

import torch

from benchmarks import measure
from zfutils import config
from zfutils.train.classifier_setup import build_classifier
from zfutils.models import BACKBONES, get
from zfutils.train.classify import ClassifierTrainer
from zfutils.train.compute import Compute

RESULTS = Path(__file__).resolve().parent / "results" / "classify.json"
DEFAULT_STEPS = {"quick": 5, "paper": 2}    # timed deep steps and embedding batches per size (others: 3)
SHALLOW_STEPS = 50                          # a head step takes microseconds: time many
CPU_PAPER_BATCH = 2                         # paper size on CPU by default, as bench_inpaint
EMBED_BATCH = 32                            # the default embed.batch_size


def network_backbones() -> list[str]:
    """Every registered backbone with a network (the matching methods have none)."""
    return sorted(name for name, b in BACKBONES.items() if b.matcher is None)


def build(backbone: str, size: str, device: str, run_dir: Path, overrides: dict | None = None):
    """The resolved config and a deep-mode trainer of stage 03's classifier at `size`."""
    cfg = config.resolve(size, backbone, overrides)
    b = get(backbone)
    n_classes = cfg["data"]["synth"]["individuals"]
    model = build_classifier(cfg, b, None, n_classes)
    c = cfg["classify"]
    trainer = ClassifierTrainer(model=model, mode="deep", run_dir=run_dir, epochs=1, batch_size=c["batch_size"],
                                lr_head=c["lr_head"], lr_encoder=c["lr_encoder"], weight_decay=c["weight_decay"],
                                device=device, compute=Compute.from_cfg(cfg, device))
    return cfg, trainer


def make_batch(batch: int, size: int, n_classes: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(batch, 3, size, size, generator=g), "label": torch.arange(batch) % n_classes}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure_row(backbone: str, size: str, device: str = "cpu", *, steps: int | None = None, batch: int | None = None,
                warmup: int = 1, threads: int | None = None, embed_batch: int = EMBED_BATCH,
                shallow_steps: int = SHALLOW_STEPS, overrides: dict | None = None) -> dict:
    """One table row: the three steps' times, FLOPs and utilization, and peak memory."""
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    steps = steps or DEFAULT_STEPS.get(size, 3)
    with tempfile.TemporaryDirectory(prefix="bench_classify_") as run_dir:
        cfg, trainer = build(backbone, size, device, Path(run_dir), overrides)
        model, c = trainer.model, cfg["classify"]
        batch = batch or c["batch_size"]
        image_size, n_classes = cfg["data"]["image_size"], cfg["data"]["synth"]["individuals"]
        images = trainer.compute.batch(make_batch(embed_batch, image_size, n_classes, seed=1)["image"])
        memory = measure.Memory(device).start()

        def embed():  # as shallow mode computes its cached features
            with torch.no_grad(), trainer.compute.autocast():
                return model.eval().embed(images)

        embed_times, embed_flops = measure.run_steps(embed, steps=steps, warmup=warmup, device=device)
        embed_mem = memory.fields("embed_")
        data = {k: v.to(device) for k, v in make_batch(batch, image_size, n_classes).items()}
        if memory.cuda:  # the CPU high-water mark cannot be reset: it goes on from embedding's
            memory.start()
        deep_times, deep_flops = measure.run_steps(lambda: trainer.train_step(data), steps=steps, warmup=warmup,
                                                   device=device)
        deep_mem = memory.fields()
        embed_dim = model.embed_dim  # the head's input: the flattened map, or the pooled channels
        shallow = ClassifierTrainer(model=model, mode="shallow", run_dir=Path(run_dir) / "shallow", epochs=1,
                                    batch_size=batch, lr_head=c["lr_head"], lr_encoder=c["lr_encoder"],
                                    weight_decay=c["weight_decay"], device=device, compute=trainer.compute)
        features = {"embedding": torch.randn(batch, embed_dim, device=device), "label": data["label"]}
        shallow_times, shallow_flops = measure.run_steps(lambda: shallow.train_step(features), steps=shallow_steps,
                                                         warmup=max(warmup, 1), device=device)
    peak = measure.matmul_peak(device)  # after the memory was read: its matrices stay out of the peaks
    row = {
        "backbone": backbone, "family": cfg["backbone"]["family"], "size": size, "device": device,
        "image_size": image_size, "batch": batch, "embed_batch": embed_batch, "width": cfg["model"]["width"],
        "blocks": cfg["model"]["blocks"], "head": c["head"], "pooling": c["pooling"], "embed_dim": embed_dim,
        "threads": torch.get_num_threads(), "warmup_steps": warmup, "steps": steps, "shallow_steps": shallow_steps,
        "compute": cfg["compute"],
        "encoder_params": _count(model.encoder), "head_params": _count(model.head), "matmul_peak": peak,
        **measure.step_fields("deep_", deep_times, batch, deep_flops, peak["gflops"]),
        **measure.step_fields("shallow_", shallow_times, batch, shallow_flops, peak["gflops"]),
        **measure.step_fields("embed_", embed_times, embed_batch, embed_flops, peak["gflops"]),
        "memory": memory.kind, **deep_mem, **embed_mem,
    }
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    backbones = network_backbones()
    parser = measure.row_parser(__doc__, backbones, out=RESULTS,
                                steps_help=f"timed deep steps and embedding batches (default per size: {DEFAULT_STEPS}, others 3)",
                                warmup_help="untimed steps first (the first counts FLOPs)",
                                batch_help=f"default: the preset's classify.batch_size, but {CPU_PAPER_BATCH} for paper on CPU")
    return measure.parse_row_args(parser, argv, backbones)


def _batch_for(args, size: str, device: str) -> int | None:
    return measure.batch_for(args, size, device, CPU_PAPER_BATCH)


def _run_one(args, backbone: str, size: str, device: str) -> dict:
    return measure.run_row("benchmarks.bench_classify", args, backbone, size, device, CPU_PAPER_BATCH)


def table(rows: list[dict]) -> str:
    from tabulate import tabulate

    head = ["backbone", "size", "device", "px", "batch", "enc Mpar", "deep s/step", "deep img/s", "deep GFLOP",
            "deep util %", "shallow ms", "embed img/s", "embed util %", "peak MiB", "step MiB"]
    body = [[r["backbone"], r["size"], r["device"], r["image_size"], r["batch"], r["encoder_params"] / 1e6,
             r["deep_median_step_s"], r["deep_images_per_s"], r["deep_gflop_per_step"], r["deep_flop_util_pct"],
             1000 * r["shallow_median_step_s"], r["embed_images_per_s"], r["embed_flop_util_pct"], r["peak_mem_mib"],
             r["step_mem_mib"]] for r in rows]
    return tabulate([[measure.cell(v) for v in line] for line in body], head, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one:
        backbone, size, device = args.one
        print(json.dumps(measure_row(backbone, size, device, steps=args.steps, batch=args.batch, warmup=args.warmup,
                                     threads=args.threads, overrides=config.overrides_from_args(args.overrides))))
        return
    devices = measure.devices_for(args.device)
    rows, load = measure.sweep(args, _run_one, lambda r: f"classify {r['backbone']} {r['size']} {r['device']}: deep "
                               f"{r['deep_median_step_s']:.3f} s/step, embed {r['embed_images_per_s']:.1f} img/s", devices)
    print(table(rows))
    print("deep: encoder + head forward, backward and AdamW step; shallow: head step on cached features; embed: "
          f"eval forward of {EMBED_BATCH} images, no grad. util %: FLOPs per step / median step time / fp32 matmul "
          "peak measured in the same process. peak MiB: CPU RSS high-water mark (CUDA: max_memory_allocated) after "
          "the deep steps; step MiB: what they add")
    measure.write_result(args.out, devices=devices, load=load, rows=rows, settings={
        "backbones": args.backbones, "sizes": args.sizes, "devices": devices, "steps": args.steps,
        "default_steps": DEFAULT_STEPS, "shallow_steps": SHALLOW_STEPS, "warmup": args.warmup, "batch": args.batch,
        "cpu_paper_batch": CPU_PAPER_BATCH, "embed_batch": EMBED_BATCH, "threads": args.threads,
        "overrides": args.overrides, "omp_wait_policy": "PASSIVE", "weights": "random", "one_process_per_row": True})


if __name__ == "__main__":
    main()

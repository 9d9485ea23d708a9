"""Train one backbone's networks on several GPUs or machines: the training half of stage 02
(`--task inpaint`) or stage 03 (`--task classify`), started by torchrun.

    torchrun --nproc_per_node=4 -m zfutils.train.launch --preset paper --backbone lama --task inpaint
    torchrun --nproc_per_node=4 -m zfutils.train.launch --preset paper --backbone lama --task classify

It builds data sets, models and trainers with the functions the stages use (zfutils.train.*_setup) and trains into the
stage's run folder under the stage's config stamp. Running the stage afterwards (`python -m
zfutils.pipeline` with the same preset and `--set` overrides) finds the finished checkpoints,
resumes past the training and only tests, embeds and draws. Stage 01 must have prepared the
data, and `classify` with `classify.init: inpainting` needs stage 02's checkpoint. Without
torchrun it trains in one process, exactly as the stage would.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys

from zfutils import atomic, config, paths
from zfutils.train import distributed

STAGES = {"inpaint": paths.INPAINT_PATTERNS, "classify": paths.FINETUNE_CLASSIFIER}


def train_inpaint(cfg: dict, device: str, modes: list[str] | None = None) -> dict:
    from zfutils.data.build import load_prepared
    from zfutils.train.inpaint_setup import build_trainer, fit

    if cfg["backbone"]["family"] != "inpainting":
        raise ValueError(f"{cfg['backbone']['name']} is a {cfg['backbone']['family']} backbone: it has no inpainting "
                         "stage; use --task classify")
    run_dir = paths.run_stage_dir(cfg, STAGES["inpaint"], cfg["backbone"]["name"])
    trainer, _ = build_trainer(cfg, run_dir, device)
    return {"table3": fit(trainer, cfg, load_prepared(cfg))}


def train_classify(cfg: dict, device: str, modes: list[str] | None = None) -> dict:
    """Each mode as the stage trains it (the leakage-check runs stay with the stage: shallow, small)."""
    from zfutils.data.build import load_prepared
    from zfutils.train.classifier_setup import train_mode

    data = load_prepared(cfg)
    stage_dir = paths.run_stage_dir(cfg, STAGES["classify"], cfg["backbone"]["name"])
    best = {}
    for mode in modes or cfg["classify"]["modes"]:
        _, _, _, best[mode], _ = train_mode(cfg, data, mode, stage_dir, device)
    return best


TASKS = {"inpaint": train_inpaint, "classify": train_classify}


def _record(cfg: dict, task: str, device: str, result: dict, argv: list[str]) -> None:
    """launch.json beside the stage's outputs: how its networks were trained (the stage's own
    run.json is rewritten when the stage runs)."""
    from zfutils.provenance import git_sha, library_versions

    run_dir = paths.run_stage_dir(cfg, STAGES[task], cfg["backbone"]["name"])
    record = {"task": task, "world_size": distributed.world_size(), "device": device,
              "backend": distributed.backend(), "argv": argv, "git_sha": git_sha(),
              "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(), "versions": library_versions(),
              "result": result}
    atomic.write_text(run_dir / "launch.json", json.dumps(record, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m zfutils.train.launch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick", help=f"one of: {', '.join(config.available('presets'))}")
    parser.add_argument("--backbone", required=True, help=f"one of: {', '.join(config.available('backbones'))}")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--modes", help="classify: comma-separated modes (default: classify.modes)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as the pipeline's")
    args = parser.parse_args(argv)
    try:
        cfg = config.resolve(args.preset, args.backbone, config.overrides_from_args(args.set))
        modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
    except config.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from zfutils.stage import limit_threads, seed_everything

    device = distributed.init(cfg["device"])
    try:
        limit_threads()
        seed_everything(config.training_seed(cfg))  # every rank builds the same initial weights
        distributed.per_rank_batch(cfg[args.task]["batch_size"])  # before anything is built or cleared
        if distributed.is_main():
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        result = TASKS[args.task](cfg, device, modes)
        if distributed.is_main():
            _record(cfg, args.task, device, result, argv)
            print(json.dumps(result, default=str))
    except (FileNotFoundError, ValueError) as err:
        print(f"error (rank {distributed.rank()}): {err}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run by tests/test_faults.py in a child process: stage 02's or stage 03's training, as the stage
trains it, halted at a chosen point so that the test can kill it there with SIGKILL.

    python -m tests.fault_worker inpaint|classify MARKER '<overrides as JSON>'

`inpaint` halts in epoch 2 after its first batch is logged (mid-epoch); `classify` halts half way
through writing epoch 2's last.pt (mid-file). Either way it writes MARKER and sleeps until killed.
The test trains in-process with the same `train` function, so both sides compute alike."""
import io
import json
import sys
import time
from pathlib import Path

import torch

BACKBONE = "aotgan"  # no batch norm in its encoder, small at width 0.125


def train(task: str, overrides: dict) -> dict:
    """Stage 02's (`inpaint`) or stage 03's deep (`classify`) training on the prepared smoke data;
    returns the numbers an uninterrupted and a resumed run must share."""
    from zfutils import config, paths
    from zfutils.data.build import load_prepared
    from zfutils.data.torchsets import ClassificationSet
    from zfutils.stage import seed_everything
    from zfutils.train import launch
    from zfutils.train.classifier_setup import train_classifier

    cfg = config.resolve("smoke", BACKBONE, overrides)
    seed_everything(config.training_seed(cfg))  # as zfutils.train.launch and the notebooks do
    if task == "inpaint":
        table3 = launch.train_inpaint(cfg, "cpu")["table3"]
        run_dir = paths.run_stage_dir(cfg, launch.STAGES["inpaint"], BACKBONE)
        return {"table3": table3, "run_dir": str(run_dir)}
    data = load_prepared(cfg)
    sets = {s: ClassificationSet(data, s) for s in ("train", "val", "test")}
    out = paths.run_stage_dir(cfg, launch.STAGES["classify"], BACKBONE) / "deep"
    trainer, best, _ = train_classifier(cfg, "deep", sets, out, "cpu")
    test = trainer.evaluate(sets["test"], len(sets["train"].classes))
    return {"best": best, "test": {k: v for k, v in test.items() if k != "confusion"}, "run_dir": str(out)}


def _halt(marker: Path) -> None:
    marker.write_text("halted")
    time.sleep(600)


def halt_mid_epoch(marker: Path) -> None:
    """Stop in epoch 2 at its second batch: its first batch's log line is written, last.pt holds epoch 1."""
    from zfutils.train.inpaint import InpaintTrainer

    step = InpaintTrainer.train_step
    seen = []

    def halting_step(self, batch):
        if self.state["epoch"] == 1:
            seen.append(1)
            if len(seen) == 2:
                _halt(marker)
        return step(self, batch)

    InpaintTrainer.train_step = halting_step


def halt_mid_checkpoint(marker: Path) -> None:
    """Stop half way through writing epoch 2's last.pt (the resumable checkpoint holds the optimizer)."""
    save = torch.save

    def halting_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "optimizer" in obj and obj["state"]["epoch"] == 2:
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            _halt(marker)
        return save(obj, f, *args, **kwargs)

    torch.save = halting_save


def main(task: str, marker: str, overrides: str) -> int:
    torch.set_num_threads(1)
    (halt_mid_epoch if task == "inpaint" else halt_mid_checkpoint)(Path(marker))
    train(task, json.loads(overrides))
    return 0  # not reached: the test kills the process at the halt


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

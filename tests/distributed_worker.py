"""Run by tests/test_distributed.py under torchrun (CPU processes, gloo): a tiny classifier
trained in two sittings (1 epoch, then resumed to 2), then stage 02's training through
zfutils.train.launch. Every rank records the checkpoint files it writes."""
import sys
from pathlib import Path

import torch

from zfutils.data.format import read_dataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.train import distributed, launch


def tiny_classifier():
    """AOT-GAN's encoder at width 0.125: no batch norm, so each rank's share of a batch gives
    exactly its part of the single-process loss (see distributed.py on CPU batch norm)."""
    from zfutils import models
    from zfutils.models.classifier import Classifier

    torch.manual_seed(0)
    backbone = models.get("aotgan")
    return Classifier(backbone=backbone, generator=backbone.build_generator(width=0.125, blocks=1), n_classes=3,
                      embed_dim=backbone.embed_dim(0.125))


def train_classifier(data_root: Path, run_dir: Path, plan=(2,)):
    """Deep mode, global batch 8, 3 batches per epoch; one fit per entry of `plan` (the epoch to
    reach), so (1, 2) stops after epoch 1 and resumes from last.pt."""
    from zfutils.train.classify import ClassifierTrainer

    data = read_dataset(data_root)
    train, val = ClassificationSet(data, "train"), ClassificationSet(data, "val")
    for epochs in plan:
        trainer = ClassifierTrainer(model=tiny_classifier(), mode="deep", run_dir=run_dir, epochs=epochs, batch_size=8,
                                    lr_head=1e-2, lr_encoder=1e-3, seed=0, stamp="t", max_batches=3)
        trainer.fit(train, val, n_classes=3)
    return trainer


def main(data_root: str, run_dir: str, out: str, *launch_args: str) -> int:
    distributed.init("cpu")
    real_save = torch.save

    def recorded_save(obj, f, *args, **kwargs):
        with open(Path(out) / f"saves_rank{distributed.rank()}.txt", "a") as fh:
            fh.write(f"{getattr(f, 'name', f)}\n")  # a path, or the file save_atomic opened
        return real_save(obj, f, *args, **kwargs)

    torch.save = recorded_save
    train_classifier(Path(data_root), Path(run_dir), plan=(1, 2))
    return launch.main(list(launch_args))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

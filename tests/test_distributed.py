"""Training under torchrun, on CPU with gloo: two processes give the single-process run with the
same global batch, rank 0 alone writes logs and checkpoints, and a distributed run resumes.

Tolerance: averaging the ranks' gradients is the single-process gradient up to float32
summation order (about 1e-7 relative); after 6 Adam steps the loss curves and weights agree to
1e-5 relative (measured: about 1e-7)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from tests.distributed_worker import tiny_classifier, train_classifier
from tests.test_torchsets import split_data
from zfutils import config, paths
from zfutils.train import batchnorm, distributed, launch
from zfutils.train.checkpoint import load_checkpoint
from zfutils.train.runlog import JsonLinesLog

INPAINT = ["--preset", "smoke", "--backbone", "aotgan", "--task", "inpaint", "--set", "data.image_size=32",
           "data.synth.per_individual=12", "data.synth.sessions=4", "inpaint.epochs=2"]


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("drop_last", [True, False])
def test_shards_together_are_the_single_process_batches(world, drop_last):
    data, seed = list(range(37)), 100_003 * 5 + 2
    single = list(DataLoader(data, batch_size=8, drop_last=drop_last,
                             sampler=RandomSampler(data, generator=torch.Generator().manual_seed(seed))))
    shards = [list(DataLoader(data, batch_size=8 // world, drop_last=drop_last,
                              sampler=distributed.shard_sampler(data, seed, drop_last, shard=r, shards=world)))
              for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank takes as many steps
    full = len(data) // 8  # the last, partial batch is padded from the start when it is kept
    assert len(shards[0]) == full + (not drop_last)
    for k in range(full):
        assert sorted(torch.cat([s[k] for s in shards]).tolist()) == sorted(single[k].tolist())


def test_batch_must_split_over_the_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="batch size 8 does not split over 3 processes"):
        distributed.per_rank_batch(8)
    assert distributed.per_rank_batch(9) == 3


def _close(a, b, key):
    assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def test_two_processes_train_like_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    data_root = split_data(tmp_path, size=32, per_session=8).root
    assert not batchnorm.batchnorms(tiny_classifier().encoder)  # else CPU ranks would normalise differently
    from zfutils.data.build import prepare_dataset

    prepare_dataset(config.resolve("smoke", "aotgan", config.overrides_from_args(INPAINT[7:])))
    single = train_classifier(data_root, tmp_path / "single_cls")  # 2 epochs in one sitting
    assert launch.main(INPAINT) == 0
    stage_dir = paths.stage_dir("smoke", "02_inpaint_patterns", "aotgan")
    stage_dir.rename(tmp_path / "single_inpaint")

    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tests.distributed_worker", str(data_root), str(tmp_path / "dist_cls"), str(out), *INPAINT]
    run = subprocess.run(cmd, cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]

    # the classifier: 1 epoch, resumed to 2, on 2 ranks = 2 epochs in one process
    logs = [single.log.read(), JsonLinesLog(tmp_path / "dist_cls" / "train_log.jsonl").read()]
    epochs = [[r for r in log if r["kind"] == "epoch"] for log in logs]
    assert [r["iteration"] for r in epochs[1]] == [r["iteration"] for r in epochs[0]] == [3, 6]
    for one, two in zip(*epochs):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            _close(one, two, key)
    weights = [load_checkpoint(d / "checkpoints" / "last.pt")["model"] for d in (tmp_path / "single_cls", tmp_path / "dist_cls")]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=1e-5, atol=1e-6)

    # stage 02 through the launcher: the same log, line for line
    lines = [JsonLinesLog(d / "train_log.jsonl").read() for d in (tmp_path / "single_inpaint", stage_dir)]
    assert [(r["kind"], r["iteration"]) for r in lines[1]] == [(r["kind"], r["iteration"]) for r in lines[0]]
    for one, two in zip(*lines):
        for key in set(one) - {"kind", "epoch", "iteration"}:
            _close(one, two, key)
    assert json.loads((stage_dir / "launch.json").read_text())["world_size"] == 2

    # rank 0 alone wrote checkpoints (and each log line once: the comparisons above)
    assert not (out / "saves_rank1.txt").exists()
    saved = {Path(p).name for p in (out / "saves_rank0.txt").read_text().split()}
    assert {n.split(".tmp-")[0].lstrip(".") for n in saved} == {"last.pt", "best.pt"}

    # a single process resumes the distributed run: nothing left to train
    assert launch.main(INPAINT) == 0
    assert JsonLinesLog(stage_dir / "train_log.jsonl").read() == lines[1]


def test_sync_batchnorm_leaves_the_standardising_neck_alone():
    """On GPUs the encoder's batch norms become SyncBatchNorm; the standardising neck is a fixed
    transform with a relative variance floor that SyncBatchNorm would drop, so it stays what it is."""
    from torch import nn

    from zfutils import models
    from zfutils.models.classifier import Classifier, Standardize
    from zfutils.train.distributed import sync_batchnorm

    backbone = models.get("efficientnet")
    model = Classifier(backbone=backbone, generator=backbone.build_generator(), n_classes=3,
                       embed_dim=backbone.embed_dim(1.0))
    keys = set(model.state_dict())
    converted = sync_batchnorm(model, "cuda")  # the conversion itself runs on CPU tensors
    assert isinstance(converted.neck, Standardize)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in converted.encoder.modules())
    assert not any(type(m) is nn.BatchNorm2d for m in converted.encoder.modules())
    assert set(converted.state_dict()) == keys

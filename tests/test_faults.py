"""Bad input and faults: what each gets and that nothing is lost (docs/faults.md lists every row,
with the test files that cover the rows this file does not).

A full disk is simulated by a write that takes some bytes and then raises ENOSPC; a killed
process is a real SIGKILL of a child that trains as the stage does (tests/fault_worker.py)."""
import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.helpers import one_thread, prepare_tiny_study, write_tiny_dataset  # noqa: F401  (fixture)
from tests.test_aau import aau  # noqa: F401  (fixture: a tiny AAU copy)
from tests.test_pipeline import stand_ins  # noqa: F401  (fixture: stand-in stage notebooks)
from tests.test_torchsets import split_data
from tests.test_train_inpaint import make_trainer
from zfutils import atomic, config, paths, pipeline
from zfutils.data.aau import write_aau
from zfutils.data.build import load_prepared, prepare_dataset
from zfutils.data.format import DataFormatError, read_dataset
from zfutils.data.generic import write_csv
from zfutils.data.splits import SplitError
from zfutils.data.torchsets import ClassificationSet, InpaintingSet
from zfutils.models.checkpoints import CheckpointMismatch
from zfutils.train.checkpoint import NonFiniteLoss, UnreadableCheckpoint, load_checkpoint


def _tree(root: Path) -> dict:
    """Every file under `root` with its bytes: 'nothing changed' is equality of two of these."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if ".tmp-" in p.name or ".partial-" in p.name]


def _save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# --- data --------------------------------------------------------------------------------------

def _rewrite_annotations(root: Path, change) -> None:
    """annotations.csv with every line's fields (split at ';') passed through `change`."""
    path = root / "annotations.csv"
    lines = [change(line.split(";")) for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def test_aau_dropped_column_is_named(aau):  # noqa: F811
    _rewrite_annotations(aau, lambda f: ";".join(f[:2] + f[3:]))
    with pytest.raises(DataFormatError, match=r"lacks the columns \['Annotation tag'\]"):
        write_aau(aau, aau.parent / "out", progress=False)


def test_aau_wrong_delimiter_is_named(aau):  # noqa: F811
    _rewrite_annotations(aau, lambda f: ",".join(f[:-1] + [f'"{f[-1]}"']))
    with pytest.raises(DataFormatError, match=r"annotations.csv is not ';'-separated.*looks separated by ','"):
        write_aau(aau, aau.parent / "out", progress=False)


def test_aau_box_outside_the_frame_is_named_and_the_data_set_kept(aau, tmp_path):  # noqa: F811
    out = write_aau(aau, tmp_path / "out", size=32, masks="none", progress=False)
    before = _tree(out)

    def move_box(fields):
        if fields[0].endswith("Vid1_0001.png") and fields[1] == "2":
            fields[3:7] = ["400", "300", "450", "330"]  # the frame is 320 x 200
        return ";".join(fields)

    _rewrite_annotations(aau, move_box)
    with pytest.raises(DataFormatError, match=r"box of fish_2 in .*Vid1_0001\.png \(x 400\.\.450, y 300\.\.330\) "
                                              r"lies outside the 320x200 frame.*fix or drop that row"):
        write_aau(aau, out, size=32, masks="none", progress=False)
    assert _tree(out) == before and _leftovers(tmp_path) == []


def test_truncated_image_is_named_and_the_data_set_kept(aau, tmp_path):  # noqa: F811
    out = write_aau(aau, tmp_path / "out", size=32, masks="none", progress=False)
    before = _tree(out)
    frame = aau / "data" / "Vid1_0240.png"
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"cannot read image file .*Vid1_0240\.png \(image file is truncated"):
        write_aau(aau, out, size=32, masks="none", progress=False)
    assert _tree(out) == before and _leftovers(tmp_path) == []
    # the CSV reader says the same of its images
    (tmp_path / "list.csv").write_text(f"path,identity\n{frame},f1\n")
    with pytest.raises(DataFormatError, match=r"Vid1_0240\.png \(image file is truncated.*replace the file"):
        write_csv(tmp_path / "list.csv", tmp_path / "csv_out", size=16, progress=False)


def _csv_set(folder: Path, identities: list[str]) -> Path:
    """One small image per entry of `identities` and the CSV that lists them."""
    rows = []
    for k, identity in enumerate(identities):
        _save_png(folder / f"{identity}_{k}.png", np.full((12, 12, 3), 40 * (k % 6), np.uint8))
        rows.append(f"{identity}_{k}.png,{identity}")
    (folder / "list.csv").write_text("path,identity\n" + "\n".join(rows) + "\n")
    return folder / "list.csv"


def _stage01(source: str, path: Path) -> dict:
    return config.resolve("smoke", None, {"data.source": source, "data.path": str(path), "data.masks": "none",
                                          "data.align": False, "data.image_size": 16, "split.classify": "random"})


@pytest.mark.parametrize("source", ["csv", "folder"])
def test_one_individual_is_refused_by_stage_01(source, tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    listing = _csv_set(tmp_path / "nemo", ["nemo"] * 6)
    cfg = _stage01(source, listing if source == "csv" else tmp_path)
    with pytest.raises(SplitError, match=r"has 1 individual \(nemo\); telling individuals apart needs at least 2"):
        prepare_dataset(cfg)
    with pytest.raises(ValueError, match="has no split columns; run stage 01 again"):
        load_prepared(cfg)  # the images are written, but no later stage takes them


def test_one_image_per_individual_is_refused_by_stage_01(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    cfg = _stage01("csv", _csv_set(tmp_path / "fish", ["a", "b", "c", "d"]))
    with pytest.raises(SplitError, match=r"split.classify 'random' leaves no val or test images: 4 individuals with "
                                         r"1 to 1 classification images each; every individual needs at least 3"):
        prepare_dataset(cfg)


def test_mask_that_is_not_binary_is_named(tmp_path):
    _save_png(tmp_path / "a.png", np.full((10, 10, 3), 90, np.uint8))
    soft = np.zeros((10, 10), np.uint8)
    soft[2:8, 2:8], soft[4:6, 4:6] = 128, 255  # soft edges
    _save_png(tmp_path / "a_fish.png", soft)
    _save_png(tmp_path / "a_pattern.png", (soft == 255).astype(np.uint8) * 255)
    (tmp_path / "list.csv").write_text("path,identity,fish_mask,pattern_mask\na.png,f1,a_fish.png,a_pattern.png\n")
    with pytest.raises(DataFormatError, match=r"mask file .*a_fish\.png is not binary: its grey values are 0, 128, 255.*"
                                              r"save it as PNG"):
        write_csv(tmp_path / "list.csv", tmp_path / "out", size=16, progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_missing_prepared_data_set_says_run_stage_01(tmp_path, monkeypatch):
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no prepared data set at .*smoke.*synth; run stage 01 first"):
        load_prepared(config.resolve("smoke", "aotgan"))


# --- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_of_another_backbone_or_width_names_the_keys(tmp_path):
    from zfutils.train import inpaint_setup
    from zfutils.models import get

    wider = tmp_path / "wide" / "G0000000.pt"
    wider.parent.mkdir()
    torch.save(get("aotgan").build_generator(width=0.25, blocks=1).state_dict(), wider)
    cfg = config.resolve("smoke", "aotgan", {"model.pretrained": str(wider)})  # smoke: width 0.125
    with pytest.raises(CheckpointMismatch, match=r"G0000000\.pt \(generator\) does not match .*misshapen \(file vs "
                                                 r"model\).*model\.width and model\.blocks it was trained with"):
        inpaint_setup.build_models(cfg)
    other = tmp_path / "lama" / "G0000000.pt"
    other.parent.mkdir()
    torch.save(get("lama").build_generator(width=0.125, blocks=1).state_dict(), other)
    with pytest.raises(CheckpointMismatch, match=r"does not match .*missing: .*unexpected: .*of this backbone"):
        inpaint_setup.build_models(config.resolve("smoke", "aotgan", {"model.pretrained": str(other)}))


def test_truncated_checkpoint_is_named(tmp_path, monkeypatch):
    from zfutils.train import classifier_setup
    from zfutils.models import get

    official = tmp_path / "G0000000.pt"
    torch.save(get("aotgan").build_generator(width=0.125, blocks=1).state_dict(), official)
    official.write_bytes(official.read_bytes()[:3000])
    with pytest.raises(CheckpointMismatch, match=r"G0000000\.pt is not a readable torch checkpoint \(truncated, "
                                                 r"corrupt or another format: .*\); get the file again"):
        get("aotgan").load_pretrained(official)
    # stage 03 starting from stage 02's best.pt
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    cfg = config.resolve("smoke", "aotgan")
    best = paths.run_stage_dir(cfg, paths.INPAINT_PATTERNS, "aotgan") / "checkpoints" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(official.read_bytes())
    with pytest.raises(UnreadableCheckpoint, match=r"checkpoint .*best\.pt is truncated or corrupt .*delete it"):
        classifier_setup.initial_state(cfg, get("aotgan"))
    # a run resuming from its own last.pt
    trainer = make_trainer(tmp_path / "run")
    trainer.last_path.parent.mkdir(parents=True)
    trainer.last_path.write_bytes(official.read_bytes())
    with pytest.raises(UnreadableCheckpoint, match=r"checkpoint .*last\.pt is truncated or corrupt .*delete it"):
        trainer.resume()


# --- training ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return split_data(tmp_path_factory.mktemp("faults"), size=32, per_session=4)


def _poison_at(trainer, network, batch: int) -> None:
    """The `batch`-th training step from now on finds every weight of `network` NaN."""
    step, calls = trainer.train_step, []

    def poisoned(b):
        calls.append(b)
        if len(calls) == batch:
            with torch.no_grad():
                for p in network.parameters():
                    p.fill_(float("nan"))
        return step(b)

    trainer.train_step = poisoned


def test_nan_in_inpainting_names_epoch_and_batch_and_keeps_the_last_good_checkpoint(data, tmp_path):
    train, val = InpaintingSet(data, "train"), InpaintingSet(data, "val")
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit(train, val)
    saved = trainer.last_path.read_bytes()
    per_epoch = len(trainer.epoch_loader(train, 2))
    _poison_at(trainer, trainer.generator, batch=2)
    trainer.epochs = 2
    with pytest.raises(NonFiniteLoss, match=rf"iteration {per_epoch + 2} \(epoch 2, batch 2 of {per_epoch}\).*"
                                            rf"last good checkpoint is kept \(.*last\.pt, end of epoch 1\)"):
        trainer.fit(train, val)
    assert trainer.last_path.read_bytes() == saved
    assert load_checkpoint(trainer.last_path)["state"]["epoch"] == 1


def test_nan_in_classification_names_epoch_and_batch_and_keeps_the_last_good_checkpoint(data, tmp_path):
    from zfutils.models import get
    from zfutils.models.classifier import Classifier
    from zfutils.train.classify import ClassifierTrainer

    torch.manual_seed(0)
    backbone = get("aotgan")
    model = Classifier(backbone=backbone, generator=backbone.build_generator(width=0.125, blocks=1), n_classes=3,
                       embed_dim=backbone.embed_dim(0.125))
    train, val = ClassificationSet(data, "train"), ClassificationSet(data, "val")
    trainer = ClassifierTrainer(model=model, mode="deep", run_dir=tmp_path, epochs=1, batch_size=4, lr_head=1e-2,
                                lr_encoder=1e-3, seed=0, stamp="t", max_batches=3)
    trainer.fit(train, val, n_classes=3)
    saved = trainer.last_path.read_bytes()
    per_epoch = min(len(trainer.epoch_loader(train, 2)), 3)
    _poison_at(trainer, model.head, batch=2)
    trainer.epochs = 2
    with pytest.raises(NonFiniteLoss, match=rf"iteration {per_epoch + 2} \(epoch 2, batch 2 of {per_epoch}\): "
                                            r"\{'deep classification loss': nan\}.*"
                                            r"last good checkpoint is kept \(.*last\.pt, end of epoch 1\)"):
        trainer.fit(train, val, n_classes=3)
    assert trainer.last_path.read_bytes() == saved


# --- a full disk -------------------------------------------------------------------------------

@pytest.fixture
def full_disk(monkeypatch):
    """`fill(match, room)`: from then on, files opened for writing whose path contains `match`
    share `room` more bytes; the write that needs more writes what fits and raises ENOSPC."""
    real_open, left = builtins.open, {}

    class Filling:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            if len(data) > left["room"]:
                self.fh.write(data[: left["room"]])
                left["room"] = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            left["room"] -= len(data)
            return self.fh.write(data)

        def fileno(self):  # PIL and others would write to the descriptor, past write()
            raise io.UnsupportedOperation("fileno")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def opening(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if left and left["match"] in str(file) and any(c in mode for c in "wax+"):
            return Filling(fh)
        return fh

    monkeypatch.setattr(builtins, "open", opening)
    return lambda match, room: left.update(match=match, room=room)


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(data, tmp_path, full_disk):
    train, val = InpaintingSet(data, "train"), InpaintingSet(data, "val")
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit(train, val)
    before = _tree(trainer.last_path.parent)
    full_disk(".tmp-", room=20_000)  # a checkpoint here is about 200 kB
    trainer.epochs = 2
    with pytest.raises(atomic.DiskFullError, match=r"the disk is full \(no space left on the disk holding "
                                                   r".*checkpoints\) while writing .*(best|last)\.pt; the previous "
                                                   r"(best|last)\.pt is kept as it was\. Free space there"):
        trainer.fit(train, val)
    assert _tree(trainer.last_path.parent) == before  # best.pt and last.pt byte for byte, no temporary file


def test_disk_full_while_writing_a_data_set_keeps_the_previous_one(tmp_path, full_disk):
    root = write_tiny_dataset(tmp_path / "ds")
    before = _tree(root)
    full_disk(".ds.partial-", room=5_000)  # a few of the 36 images and their masks
    with pytest.raises(atomic.DiskFullError, match=rf"the disk is full .* while writing .*\.ds\.partial-.*; the "
                                                   rf"data set at {root} is kept as it was"):
        write_tiny_dataset(root)
    assert _tree(root) == before and _leftovers(tmp_path) == []


def test_disk_full_while_replacing_a_small_file_keeps_it(tmp_path, full_disk):
    """stamp.json, metrics.json, config.yaml, run.json, metadata.csv, splits.json, logs: atomic.write_text."""
    data = read_dataset(write_tiny_dataset(tmp_path / "ds"))
    metadata = (data.root / "metadata.csv").read_bytes()
    stamp = atomic.write_text(tmp_path / "stamp.json", json.dumps({"stamp": "old"}))
    full_disk(".tmp-", room=100)
    with pytest.raises(atomic.DiskFullError, match=r"while writing .*metadata\.csv; the previous metadata\.csv is kept"):
        data.write_metadata(data.meta.assign(split="train"))
    with pytest.raises(atomic.DiskFullError, match=r"stamp\.json; the previous stamp\.json is kept"):
        atomic.write_text(stamp, json.dumps({"stamp": "new" * 100}))
    assert (data.root / "metadata.csv").read_bytes() == metadata and json.loads(stamp.read_text()) == {"stamp": "old"}
    assert _leftovers(tmp_path) == []


# --- a killed process --------------------------------------------------------------------------

TRAINING = {"inpaint.epochs": 3, "classify.epochs": 3, "classify.init": "random"}


def _kill_at_halt(task: str, tmp_path: Path, overrides: dict) -> int:
    """Start the worker, wait until it halts at its point, SIGKILL it; returns its pid."""
    marker = tmp_path / f"{task}.halted"
    child = subprocess.Popen([sys.executable, "-m", "tests.fault_worker", task, str(marker), json.dumps(overrides)],
                             cwd=paths.PROJECT_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"the {task} worker ended before its halt: {child.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the {task} worker did not reach its halt in 120 s")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return child.pid


def _records(run_dir: Path, kinds: tuple[str, ...]) -> list[dict]:
    from zfutils.train.runlog import JsonLinesLog

    return [r for r in JsonLinesLog(Path(run_dir) / "train_log.jsonl").read() if r["kind"] in kinds]


def _same(a, b) -> None:
    """Equal structures, numbers to float tolerance."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    else:
        assert a == b


def _uninterrupted(task: str, tmp_path: Path, overrides: dict) -> tuple[dict, list[dict]]:
    """The run without a kill, moved out of the way of the one to be killed."""
    from tests.fault_worker import train

    result = train(task, overrides)
    kinds = ("train", "val") if task == "inpaint" else ("epoch",)
    records = _records(result["run_dir"], kinds)
    Path(result["run_dir"]).rename(tmp_path / f"{task}-uninterrupted")
    return result, records


def _counting(monkeypatch, trainer_class) -> list:
    """The training steps this process takes from now on."""
    step, calls = trainer_class.train_step, []

    def counted(self, batch):
        calls.append(self.state["epoch"] + 1)
        return step(self, batch)

    monkeypatch.setattr(trainer_class, "train_step", counted)
    return calls


def test_sigkill_in_stage_02_resumes_from_the_last_epoch_to_the_same_result(tmp_path, monkeypatch, one_thread):  # noqa: F811
    from tests.fault_worker import train
    from zfutils.train.inpaint import InpaintTrainer

    overrides = {**prepare_tiny_study(tmp_path, monkeypatch, {}), **TRAINING}
    whole, records = _uninterrupted("inpaint", tmp_path, overrides)
    _kill_at_halt("inpaint", tmp_path, overrides)  # in epoch 2, after its first batch was logged
    run_dir = Path(whole["run_dir"])
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["epoch"] == 1
    assert _records(run_dir, ("train",))[-1]["epoch"] == 2  # logged after the checkpoint: dropped on resuming
    with open(run_dir / "train_log.jsonl", "a") as fh:
        fh.write('{"kind": "train", "epo')  # and a line the kill cut short
    steps = _counting(monkeypatch, InpaintTrainer)
    resumed = train("inpaint", overrides)
    assert sorted(set(steps)) == [2, 3]  # resumed after epoch 1, not trained afresh
    _same(resumed["table3"], whole["table3"])
    _same(_records(run_dir, ("train", "val")), records)
    best, straight = (load_checkpoint(d / "checkpoints" / "best.pt")["generator"]
                      for d in (run_dir, tmp_path / "inpaint-uninterrupted"))
    for key, value in straight.items():
        torch.testing.assert_close(best[key], value, rtol=1e-5, atol=1e-6)


def test_sigkill_in_stage_03_resumes_from_the_last_epoch_to_the_same_result(tmp_path, monkeypatch, one_thread):  # noqa: F811
    from tests.fault_worker import train
    from zfutils.train.classify import ClassifierTrainer

    overrides = {**prepare_tiny_study(tmp_path, monkeypatch, {}), **TRAINING}
    whole, records = _uninterrupted("classify", tmp_path, overrides)
    pid = _kill_at_halt("classify", tmp_path, overrides)  # half way through writing epoch 2's last.pt
    run_dir = Path(whole["run_dir"])
    half_written = run_dir / "checkpoints" / f".last.pt.tmp-{pid}"
    assert half_written.is_file()
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["state"]["epoch"] == 1  # the complete one
    steps = _counting(monkeypatch, ClassifierTrainer)
    resumed = train("classify", overrides)
    assert sorted(set(steps)) == [2, 3]  # resumed after epoch 1, not trained afresh
    _same({k: resumed[k] for k in ("best", "test")}, {k: whole[k] for k in ("best", "test")})
    _same(_records(run_dir, ("epoch",)), records)
    assert not half_written.exists() and _leftovers(run_dir) == []


# --- two pipeline runs at once -----------------------------------------------------------------

def test_a_second_pipeline_run_on_the_same_work_folder_is_refused(stand_ins, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", stand_ins)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom zfutils import pipeline\n"
                               "with pipeline.run_lock('smoke'):\n    print('locked', flush=True)\n    time.sleep(600)"],
        cwd=paths.PROJECT_ROOT, stdout=subprocess.PIPE, text=True)  # ZF_WORKDIR: the stand-ins' work folder
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert pipeline.main(["--preset", "smoke", "--backbones", "aotgan", "--stages", "01"]) == 2
        err = capsys.readouterr().err
        lock = paths.runs_dir("smoke") / "pipeline.lock"
        assert f"another pipeline run (pid {holder.pid} on " in err and f"holds the lock {lock}" in err
        assert "ZF_WORKDIR" in err and not (paths.runs_dir("smoke") / "01_shared").exists()
    finally:
        holder.kill()  # SIGKILL: the system releases its lock
        holder.wait(timeout=30)
        holder.stdout.close()
    with pipeline.run_lock("smoke") as lock:  # the kill released it
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")

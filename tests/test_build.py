"""Stage 01's work end to end on small sources: build once, reuse, write splits; the data CLI."""
import json

import pandas as pd
import pytest

from tests.helpers import write_tiny_dataset
from tests.test_aau import aau  # noqa: F401  (fixture: a tiny AAU copy)
from zfutils import config
from zfutils.data import __main__ as cli
from zfutils.data.build import build_key, prepare_dataset, summarize


def test_prepare_aau_with_session_blocks_and_gaps(aau, tmp_path):  # noqa: F811
    cfg = config.resolve("smoke", None, {"data.source": "aau", "data.path": str(aau), "data.image_size": 32,
                                         "data.aau.time_block_frames": 1, "data.aau.gap_frames": 0,
                                         "split.classify": "random", "split.inpaint_fraction": 0.0})
    data = prepare_dataset(cfg, root=tmp_path / "out")
    meta = data.meta
    assert set(meta["source"]) == {"aau"} and data.info["masks"] == "estimate"
    assert {"split_random", "split_session", "split_open", "split"} <= set(meta.columns)
    assert json.loads((data.root / "dataset.json").read_text())["build_key"] == build_key(cfg)
    facts = summarize(data)
    assert facts["n_identities"] == 6 and facts["source"] == "aau"


def test_prepare_reuses_identical_build_and_rebuilds_on_change(tmp_path, monkeypatch):
    from zfutils.data import build

    calls = []

    def fake_source(cfg, out):
        calls.append(cfg["data"]["image_size"])
        return write_tiny_dataset(out, size=cfg["data"]["image_size"])

    monkeypatch.setitem(build.SOURCES, "synth", fake_source)
    cfg = config.resolve("smoke", None, {"data.image_size": 16})
    first = prepare_dataset(cfg, root=tmp_path / "d")
    prepare_dataset(cfg, root=tmp_path / "d")
    assert calls == [16]  # reused
    # a split change rewrites the split columns without rebuilding the images
    other = config.resolve("smoke", None, {"data.image_size": 16, "split.classify": "random"})
    again = prepare_dataset(other, root=tmp_path / "d")
    assert calls == [16] and (again.meta["split"] == again.meta["split_random"]).all()
    assert not first.meta["split"].equals(again.meta["split"])
    prepare_dataset(config.resolve("smoke", None, {"data.image_size": 20}), root=tmp_path / "d")
    assert calls == [16, 20]


def test_real_sources_need_a_path_and_unknown_source_is_named(tmp_path):
    with pytest.raises(ValueError, match="set data.path"):
        prepare_dataset(config.resolve("smoke", None, {"data.source": "aau"}), root=tmp_path / "x")
    with pytest.raises(ValueError, match="unknown data.source 'kaggle'"):
        prepare_dataset(config.resolve("smoke", None, {"data.source": "kaggle"}), root=tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="annotations.csv"):
        prepare_dataset(config.resolve("smoke", None, {"data.source": "aau", "data.path": str(tmp_path)}),
                        root=tmp_path / "x")


def test_cli_aau_and_csv(aau, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "aau_out"
    assert cli.main(["aau", "--root", str(aau), "--out", str(out), "--size", "24", "--split", "random"]) == 0
    assert "wrote 15 images of 6 individuals" in capsys.readouterr().out
    meta = pd.read_csv(out / "metadata.csv", keep_default_na=False)
    assert (meta["split"] == meta["split_random"]).all()

    rows = meta[["image_id", "identity"]].assign(path=lambda d: "aau_out/images/" + d["image_id"] + ".png")
    rows[["path", "identity"]].to_csv(tmp_path / "list.csv", index=False)
    assert cli.main(["csv", "--csv", str(tmp_path / "list.csv"), "--out", str(tmp_path / "csv_out"), "--no-align",
                     "--size", "16", "--split", "open"]) == 0
    assert json.loads((tmp_path / "csv_out" / "dataset.json").read_text())["masks"] == "none"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["aau", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing" in err and len(err.strip().splitlines()) == 1

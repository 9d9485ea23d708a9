"""benchmarks/bench_classify.py: a tiny backbone at smoke size gives a complete row with positive
times, FLOPs and memory; its command line writes the JSON where it is told; the suite's stage
table reads stamp.json files in every layout the pipeline writes."""
import json

import pytest

from benchmarks import bench_classify as bench
from benchmarks import bench_stages, measure, run_all

TINY = {"data.image_size": 32, "model.width": 0.125, "model.blocks": 1}


@pytest.fixture(scope="module")
def row():
    return bench.measure_row("deepfillv2", "smoke", "cpu", steps=1, batch=2, warmup=1, embed_batch=4,
                             shallow_steps=2, overrides=TINY)


def test_row_has_every_field_positive(row):
    assert row["backbone"] == "deepfillv2" and row["image_size"] == 32 and row["batch"] == 2 and row["steps"] == 1
    for prefix in ("deep_", "shallow_", "embed_"):
        for key in ("median_step_s", "images_per_s", "flops_per_step", "achieved_gflops", "flop_util_pct"):
            assert row[prefix + key] > 0, prefix + key
        assert len(row[prefix + "step_seconds"]) == (2 if prefix == "shallow_" else 1)
    assert row["peak_mem_mib"] > 0 and row["embed_peak_mem_mib"] > 0 and row["memory"] == "rss_high_water"
    assert row["matmul_peak"]["gflops"] > 0 and row["encoder_params"] > 0 and row["embed_dim"] > 0
    assert row["deep_flops_per_step"] > row["embed_flops_per_step"] / 2  # forward + backward of 2 images > forward of 2


def test_flop_counter_counts_forward_and_backward():
    import torch

    layer = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(3, 8, requires_grad=True)
    assert measure.count_flops(lambda: layer(x)) == 2 * 3 * 8 * 4
    assert measure.count_flops(lambda: layer(x).sum().backward()) == 3 * (2 * 3 * 8 * 4)


def test_depthwise_convolution_backward_counts_twice_its_forward():
    import torch

    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)  # EfficientNet's depthwise kind
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    forward = measure.count_flops(lambda: conv(x))
    assert forward == 2 * 2 * 16 * 8 * 8 * 9
    assert measure.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_cli_writes_json(tmp_path, monkeypatch, row):
    monkeypatch.setattr(bench, "_run_one", lambda args, backbone, size, device: {**row, "backbone": backbone})
    out = tmp_path / "classify.json"
    bench.main(["--backbones", "deepfillv2,lama", "--sizes", "smoke", "--device", "cpu", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert [r["backbone"] for r in saved["rows"]] == ["deepfillv2", "lama"]
    assert saved["machine"]["cpu_model"] and saved["git_sha"] and len(saved["load_average"]["before"]) == 3


def test_cli_lists_network_backbones_only(capsys):
    assert "sift" not in bench.network_backbones() and "efficientnet" in bench.network_backbones()
    with pytest.raises(SystemExit):
        bench.parse_args(["--backbones", "sift"])
    assert "efficientnet" in capsys.readouterr().err
    assert bench._batch_for(bench.parse_args([]), "paper", "cpu") == bench.CPU_PAPER_BATCH


def test_stage_table_reads_every_layout(tmp_path):
    base = tmp_path / "runs" / "quick"
    for rel, seconds in {"01_prepare_dataset": 10, "lama/02_inpaint_patterns": 90, "lama/03_finetune_classifier": 60,
                         "seed-1/lama/03_finetune_classifier": 70}.items():
        (base / rel).mkdir(parents=True)
        (base / rel / "stamp.json").write_text(json.dumps({"stamp": "x", "seconds": seconds}))
    result = bench_stages.summary(["smoke", "quick"], tmp_path / "runs")
    assert result["smoke"]["rows"] == [] and "no stage runs" in result["smoke"]["note"]
    assert result["quick"]["total_s"] == 230
    table = bench_stages.wide(result["quick"]["rows"])
    assert list(table.columns) == ["shared", "lama", "lama seed-1", "total"]
    assert table.loc["total", "total"] == 230 and table.loc["03_finetune_classifier", "lama seed-1"] == 70
    assert "no stage runs" in bench_stages.render(result)


def test_suite_combines_the_pieces_rows(tmp_path, row):
    (tmp_path / "classify.json").write_text(json.dumps({"rows": [{**row, "size": "quick"}]}))
    (tmp_path / "localfeatures.json").write_text(json.dumps({"rows": [
        {"method": "sift", "image_size": 128, "gallery_ms_per_image": 20.0, "ms_per_query": 50.0}]}))
    rows = run_all.combined_rows(tmp_path, {"quick": 128}, {"classify", "localfeatures"})
    assert [r["backbone"] for r in rows] == ["deepfillv2", "sift"]
    assert rows[1]["embed_img_s"] == 50.0 and rows[1]["query_ms"] == 50.0 and rows[0]["deep_s"] > 0
    assert "deepfillv2" in run_all.render(rows)
    args = run_all.parse_args(["--quick-only", "--devices", "cpu", "--out", str(tmp_path)])
    assert args.sizes == ["quick"] and args.steps == 1 and set(run_all.commands(args)) == set(run_all.PIECES)


def test_compute_overrides_reach_the_row_and_a_wrong_key_is_refused(capsys):
    row = bench.measure_row("aotgan", "smoke", "cpu", steps=1, batch=2, warmup=1, embed_batch=2, shallow_steps=1,
                            overrides={**TINY, "compute.precision": "bf16"})
    assert row["compute"]["precision"] == "bf16" and row["deep_flops_per_step"] > 0
    with pytest.raises(SystemExit):
        run_all.parse_args(["--set", "compute.precison=bf16"])
    assert "compute.precison" in capsys.readouterr().err

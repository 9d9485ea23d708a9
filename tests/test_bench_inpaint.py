"""benchmarks/bench_inpaint.py: its measuring function gives a complete row for every inpainting
backbone at a tiny size, FLOP utilization included, and its command line rejects an unknown
backbone by listing the known."""
import pytest

from benchmarks import bench_inpaint as bench

TINY = {"data.image_size": 32, "model.width": 0.125, "model.blocks": 1}  # AOT-GAN's D needs 24 px


@pytest.mark.parametrize("backbone", bench.inpainting_backbones())
def test_measure_gives_a_row_with_positive_time(backbone):
    row = bench.measure(backbone, "smoke", "cpu", steps=1, batch=2, warmup=1, overrides=TINY)
    assert {"backbone", "size", "device", "image_size", "batch", "median_step_s", "images_per_s", "peak_mem_mib",
            "step_mem_mib", "generator_params", "discriminator_params", "dropped_terms", "loss_terms",
            "flops_per_step", "gflop_per_step", "achieved_gflops", "flop_util_pct", "matmul_peak"} <= set(row)
    assert row["backbone"] == backbone and row["image_size"] == 32 and row["batch"] == 2 and row["steps"] == 1
    assert row["median_step_s"] > 0 and row["images_per_s"] > 0 and row["peak_mem_mib"] > 0
    assert row["generator_params"] > 0 and row["discriminator_params"] > 0
    assert row["flops_per_step"] > 0 and row["flop_util_pct"] > 0 and row["matmul_peak"]["gflops"] > 0
    assert not set(row["dropped_terms"]) & set(row["loss_terms"])  # a dropped term is not counted as used


def test_batch_has_a_hole_in_every_image():
    batch = bench.make_batch(3, 32)
    assert batch["image"].shape == (3, 3, 32, 32) and batch["mask"].shape == (3, 1, 32, 32)
    hole = batch["mask"].mean(dim=(1, 2, 3))
    assert ((hole > 0.05) & (hole < 0.6)).all() and set(batch["mask"].unique().tolist()) <= {0.0, 1.0}


def test_cli_rejects_an_unknown_backbone_listing_the_known(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--backbones", "aotgan,nosuchnet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nosuchnet" in err and all(name in err for name in bench.inpainting_backbones())


def test_cli_defaults_cover_every_backbone_at_both_sizes():
    args = bench.parse_args([])
    assert args.backbones == bench.inpainting_backbones() and args.sizes == ["quick", "paper"]
    assert bench._batch_for(args, "paper", "cpu") == bench.CPU_PAPER_BATCH
    assert bench._batch_for(args, "quick", "cpu") is None  # the preset's batch

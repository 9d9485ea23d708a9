import pytest

from zfutils import config, paths


def test_merge_order_defaults_preset_backbone_overrides():
    defaults = config.load_yaml(config.PARAMS_DIR / "defaults.yaml")
    cfg = config.resolve("smoke", "lama", {"data.synth.individuals": 4})
    assert cfg["preset"] == "smoke"
    assert cfg["data"]["image_size"] == 64 != defaults["data"]["image_size"]      # preset beats defaults
    assert cfg["data"]["synth"]["sessions"] == 4                                   # preset, nested
    assert cfg["data"]["synth"]["family"] == defaults["data"]["synth"]["family"]   # untouched sibling kept
    assert cfg["backbone"]["name"] == "lama" and cfg["backbone"]["family"] == "inpainting"
    assert cfg["data"]["synth"]["individuals"] == 4                                # override beats all


def test_override_beats_preset():
    assert config.resolve("smoke", None, {"data": {"image_size": 96}})["data"]["image_size"] == 96


def test_unknown_key_error_names_full_path():
    with pytest.raises(config.ConfigError, match=r"data\.synth\.individualz") as err:
        config.resolve("smoke", None, {"data.synth.individualz": 3})
    assert "data.synth.individuals" in str(err.value)  # lists what is known there


def test_unknown_key_in_preset_file_names_file(tmp_path, monkeypatch):
    (tmp_path / "presets").mkdir()
    (tmp_path / "backbones").mkdir()
    (tmp_path / "defaults.yaml").write_text("a:\n  b: 1\n")
    (tmp_path / "presets" / "bad.yaml").write_text("a:\n  c: 2\n")
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path)
    with pytest.raises(config.ConfigError, match=r"unknown key 'a\.c' in params/presets/bad\.yaml"):
        config.resolve("bad")


def test_unknown_preset_and_backbone_list_known():
    with pytest.raises(config.ConfigError, match="known presets: full, paper, quick, shortcut, smoke"):
        config.resolve("huge")
    with pytest.raises(config.ConfigError, match="known backbones: .*aotgan"):
        config.resolve("smoke", "resnet")


def test_mapping_replaced_by_scalar_is_rejected():
    with pytest.raises(config.ConfigError, match="'data' in overrides must be a mapping"):
        config.resolve("smoke", None, {"data": 3})


def test_every_preset_and_backbone_resolves():
    for preset in config.available("presets"):
        for backbone in [None, *config.available("backbones")]:
            cfg = config.resolve(preset, backbone)
            assert cfg["preset"] == preset


def test_paper_preset_has_the_studys_settings():
    cfg = config.resolve("paper")
    assert cfg["split"]["inpaint_ratios"] == [0.80, 0.16, 0.04]
    assert cfg["split"]["classify_ratios"] == [0.80, 0.10, 0.10]
    assert cfg["split"]["classify"] == "random"


def test_overrides_from_args_parses_yaml_scalars():
    assert config.overrides_from_args(["data.image_size=96", "split.classify=open", "data.path=null"]) == {
        "data.image_size": 96, "split.classify": "open", "data.path": None}
    with pytest.raises(config.ConfigError, match="key.path=value"):
        config.overrides_from_args(["oops"])


def test_a_preset_can_extend_another():
    quick, shortcut = config.resolve("quick"), config.resolve("shortcut")
    assert config.preset_chain("shortcut") == ["quick", "shortcut"]
    assert shortcut["preset"] == "shortcut" and shortcut["data"]["synth"]["shortcut_background"] is True
    assert {k: v for k, v in shortcut.items() if k not in ("preset", "data")} == \
        {k: v for k, v in quick.items() if k not in ("preset", "data")}


def test_circular_or_unknown_extends_is_named(tmp_path, monkeypatch):
    (tmp_path / "presets").mkdir()
    (tmp_path / "backbones").mkdir()
    (tmp_path / "defaults.yaml").write_text("a: 1\n")
    (tmp_path / "presets" / "x.yaml").write_text("extends: y\n")
    (tmp_path / "presets" / "y.yaml").write_text("extends: x\n")
    (tmp_path / "presets" / "z.yaml").write_text("extends: nowhere\n")
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path)
    with pytest.raises(config.ConfigError, match="extends '[xy]', which is unknown or circular"):
        config.resolve("x")
    with pytest.raises(config.ConfigError, match="extends 'nowhere'"):
        config.resolve("z")


def test_training_seeds_and_their_run_folders():
    cfg = config.resolve("smoke")
    assert config.training_seeds(cfg) == [None] and config.training_seed(cfg) == cfg["seed"]
    several = config.resolve("smoke", None, {"seeds": [0, 3]})
    assert config.training_seeds(several) == [0, 3]
    run = config.resolve("smoke", "lama", {"seeds": [0, 3], "run_seed": 3})
    assert config.training_seed(run) == 3
    assert paths.run_stage_dir(run, "03_finetune_classifier", "lama").parts[-3:] == ("seed-3", "lama", "03_finetune_classifier")
    assert paths.run_stage_dir(cfg, "03_finetune_classifier", "lama").parts[-2:] == ("lama", "03_finetune_classifier")
    assert paths.run_stage_dir(run, "08_report", None) == paths.stage_dir("smoke", "08_report")  # shared stages: one folder
    with pytest.raises(config.ConfigError, match="distinct"):
        config.training_seeds(config.resolve("smoke", None, {"seeds": [1, 1]}))


def _params(tmp_path, monkeypatch, preset: str):
    (tmp_path / "presets").mkdir()
    (tmp_path / "backbones").mkdir()
    (tmp_path / "defaults.yaml").write_text("backbone: {name: null}\ntrain: {batch: 8, lr: 1}\n")
    (tmp_path / "backbones" / "a.yaml").write_text("train: {batch: 16, lr: 2}\n")
    (tmp_path / "backbones" / "b.yaml").write_text("train: {lr: 3}\n")
    (tmp_path / "presets" / "p.yaml").write_text(preset)
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path)


def test_a_presets_per_backbone_values_beat_the_backbone_file_for_that_backbone_only(tmp_path, monkeypatch):
    _params(tmp_path, monkeypatch, "train: {batch: 4}\nper_backbone:\n  a:\n    train: {batch: 2}\n")
    assert config.resolve("p", "a")["train"] == {"batch": 2, "lr": 2}      # preset's per_backbone > backbone file
    assert config.resolve("p", "b")["train"] == {"batch": 4, "lr": 3}      # other backbones: preset < backbone file
    assert config.resolve("p")["train"] == {"batch": 4, "lr": 1}
    assert config.resolve("p", "a", {"train.batch": 5})["train"]["batch"] == 5  # overrides still win
    assert "per_backbone" not in config.resolve("p", "a")


@pytest.mark.parametrize("section, message", [
    ("per_backbone:\n  zz:\n    train: {batch: 2}\n", r"unknown backbone\(s\) zz under 'per_backbone' in params/presets/p\.yaml"),
    ("per_backbone:\n  a: 3\n", r"'per_backbone\.a' in params/presets/p\.yaml must be a mapping"),
    ("per_backbone:\n  a:\n    train: {batchz: 2}\n", r"unknown key 'train\.batchz' in params/presets/p\.yaml per_backbone\.a"),
])
def test_a_bad_per_backbone_section_is_named_for_every_backbone(tmp_path, monkeypatch, section, message):
    _params(tmp_path, monkeypatch, section)
    for backbone in (None, "b"):  # caught even when that backbone is not resolved
        with pytest.raises(config.ConfigError, match=message):
            config.resolve("p", backbone)


def test_quick_is_the_study_proper_and_full_adds_the_rest():
    quick, full = config.resolve("quick"), config.resolve("full")
    assert quick["pipeline"]["stages"] == ["01_prepare_dataset", "02_inpaint_patterns", "03_finetune_classifier",
                                           "04_ablate_regions", "05_cluster_embeddings", "08_report"]
    assert "efficientnetv2" not in quick["pipeline"]["backbones"] and quick["ablation"]["modes"] == ["shallow"]
    assert full["pipeline"]["stages"] is None and "efficientnetv2" in full["pipeline"]["backbones"]
    assert full["ablation"]["modes"] == ["shallow", "deep"] and full["classify"]["head_comparison"]["modes"] == ["shallow", "deep"]
    for backbone in config.available("backbones"):  # every backbone resolves under both
        assert config.resolve("full", backbone)["data"] == config.resolve("quick", backbone)["data"]
    assert config.resolve("quick", "inceptionv3")["classify"]["head_comparison"]["poolings"] == []
    assert config.resolve("full", "inceptionv3")["classify"]["head_comparison"]["poolings"] == ["avg"]


def test_quick_trains_the_random_init_baselines_6_deep_epochs_and_full_15():
    for backbone in ("efficientnet", "inceptionv3"):
        quick, full = config.resolve("quick", backbone), config.resolve("full", backbone)
        assert quick["classify"]["epochs"] == 6 and full["classify"]["epochs"] == 15
        assert quick["ablation"]["epochs"] == full["ablation"]["epochs"] == 15  # the ablation's heads as every model's
    for backbone in ("aotgan", "deepfillv2", "edgeconnect", "lama", "sift"):
        assert config.resolve("quick", backbone)["classify"]["epochs"] == 15

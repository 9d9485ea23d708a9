"""params/backbones/<name>.yaml runs the original training recipes: every value follows a fact
cited to the official repository, commit, file and lines (zfutils/train/originals.py); each cited
fact agrees with what the backbone module records in `TRAINING`; the paper preset trains each
model at the study's batch size (its Table 3)."""
import re

import pytest

from zfutils import config
from zfutils.models import aotgan, deepfillv2, edgeconnect, lama
from zfutils.train.originals import ORIGINALS, STUDY_BATCH

MODULES = {m.BACKBONE.name: m for m in (aotgan, deepfillv2, edgeconnect, lama)}
REPOS = {"aotgan": "researchmm/AOT-GAN-for-Inpainting", "deepfillv2": "nipponjo/deepfillv2-pytorch",
         "edgeconnect": "knazeri/edge-connect", "lama": "advimman/lama"}
# how a training step runs: every recipe must say where its original does it
STEP_FACTS = {"update_order", "adv_grads_into_d", "grad_clip", "lr_g", "lr_d", "betas"}


def _at(tree, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("name", sorted(MODULES))
def test_backbone_params_match_the_cited_original(name):
    inpaint = config.resolve("paper", name)["inpaint"]
    for path, fact in ORIGINALS[name].items():
        value = _at(inpaint, path)
        assert value == fact.value, f"{name}: inpaint.{path} is {value!r}, the original uses {fact.value!r} ({fact.cite})"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_fact_cites_repository_commit_file_and_lines(name):
    assert STEP_FACTS <= set(ORIGINALS[name]), f"{name}: uncited step facts {STEP_FACTS - set(ORIGINALS[name])}"
    for path, fact in ORIGINALS[name].items():
        cite = fact.cite
        assert cite.repo == REPOS[name] and re.fullmatch(r"[0-9a-f]{40}", cite.commit), (path, cite)
        assert cite.commit[:7] in MODULES[name].__doc__  # the commit our port of the networks follows
        assert cite.file and not cite.file.startswith("/") and 1 <= cite.lines[0] <= cite.lines[1], (path, cite)
        assert cite.url.startswith(f"https://github.com/{cite.repo}/blob/{cite.commit}/{cite.file}#L")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_cited_facts_agree_with_the_modules_training_records(name):
    """Where TRAINING records the same fact, it holds the same value ([-1, 1]-range L1 counts twice)."""
    checked = 0
    for path, fact in ORIGINALS[name].items():
        if fact.recorded is None:
            continue
        recorded = _at(MODULES[name].TRAINING, fact.recorded)
        recorded = list(recorded) if isinstance(recorded, tuple) else recorded
        expected = fact.scale * recorded if fact.scale != 1.0 else recorded
        assert fact.value == expected, f"{name}: {path} cites {fact.value!r}, TRAINING.{fact.recorded} says {recorded!r}"
        checked += 1
    assert checked >= 5


def test_paper_preset_trains_each_model_at_the_studys_batch_size():
    for name, batch in STUDY_BATCH.items():
        assert config.resolve("paper", name)["inpaint"]["batch_size"] == batch, name
    # the per-backbone value belongs to the paper preset alone
    assert config.resolve("quick", "lama")["inpaint"]["batch_size"] == config.resolve("quick", "aotgan")["inpaint"]["batch_size"]
    assert config.resolve("paper", None)["inpaint"]["batch_size"] == 8

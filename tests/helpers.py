"""What several test modules share: small data sets the tests write themselves (in the project's
format), weight files in torchvision's format, a one-thread fixture for the large networks, and
state_dicts in torch < 1.0's spectral-norm layout."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.spectral_norm import SpectralNorm

from zfutils import config
from zfutils.data import build
from zfutils.data.build import prepare_dataset
from zfutils.data.format import DatasetWriter


def write_tiny_dataset(root: Path, identities=3, sessions=4, per_session=3, size=16, masks=True) -> Path:
    """Images whose colour encodes identity, a square fish and a stripe pattern inside it."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, with_masks=masks) as writer:
        for i in range(identities):
            for s in range(sessions):
                for f in range(per_session):
                    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                    image[..., i % 3] += 150
                    fish = np.zeros((size, size), bool)
                    fish[size // 4: 3 * size // 4, size // 8: 7 * size // 8] = True
                    pattern = fish.copy()
                    pattern[:, : size // 4] = False
                    writer.add(f"fish_{i}_s{s}_{f:04d}", image, fish if masks else None, pattern if masks else None,
                               identity=f"fish_{i}", session=f"s{s}", frame=f, source="test")
        writer.commit({"source": "test", "image_size": size, "masks": "exact" if masks else "none"})
    return root


def tiny_synth(cfg, out):
    """Stands in for the synthetic renderer: 4 fish x 4 sessions x 4 images at 32 px."""
    return write_tiny_dataset(out, identities=4, sessions=4, per_session=4, size=32)


def prepare_tiny_study(tmp_path: Path, monkeypatch, overrides: dict) -> dict:
    """Stage 01 of the smoke preset on tiny_synth's data, in a work folder under `tmp_path`; the
    overrides returned say the data's image size (a flattened head's input depends on it)."""
    overrides = {"data.image_size": 32, **overrides}
    monkeypatch.setenv("ZF_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setitem(build.SOURCES, "synth", tiny_synth)
    prepare_dataset(config.resolve("smoke", None, overrides))
    return overrides


def write_torchvision_file(path: Path, build_network, *, seed: int, counters: bool = True) -> dict:
    """A weight file in torchvision's format: a freshly built network's own state_dict (without
    batch-norm counters when `counters` is false, as files saved by old PyTorch versions)."""
    torch.manual_seed(seed)
    state = {k: v for k, v in build_network().state_dict().items() if counters or not k.endswith("num_batches_tracked")}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture
def one_thread():
    """Large torchvision networks on one thread: polite on 2 cores, and steadier timings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pre_1_0_spectral_norm(module: torch.nn.Module) -> dict:
    """`module`'s state_dict in the layout torch < 1.0 saved spectral-norm layers in: weight_orig,
    weight_u and the normalized weight (what the layer computes in eval mode), no weight_v."""
    state = module.state_dict()
    for name, layer in module.named_modules(remove_duplicate=False):
        for hook in layer._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                key = f"{name}.weight" if name else "weight"
                del state[key + "_v"]
                state[key] = hook.compute_weight(layer, do_power_iteration=False).detach()
    return state

"""Reading checkpoints: the tensors-only reader behind trust_pickle (checkpoint_pickle.py) and the
strict check's handling of torch < 1.0 spectral-norm layers (checkpoints.py)."""
import enum
import io
import pickle
from collections import OrderedDict

import pytest
import torch
from torch import nn

from tests.helpers import pre_1_0_spectral_norm
from zfutils.models.checkpoint_pickle import TENSORS_ONLY, StandIn, TensorsOnlyUnpickler
from zfutils.models.checkpoints import CheckpointMismatch, legacy_spectral_norm, load_strict, read_checkpoint

torch.set_num_threads(1)


class Flag(enum.Enum):
    ON = "on"


class Config:
    """Pickles like an OmegaConf DictConfig: NEWOBJ, then BUILD with a __setstate__ state."""

    def __init__(self, content):
        self.content = content

    def __getstate__(self):
        return {"_content": self.content, "_flags": {"readonly": Flag.ON}}

    def __setstate__(self, state):
        raise AssertionError("the reader must not call the file's classes")


class Params(dict):
    """Pickles like Lightning's AttributeDict: NEWOBJ, then SETITEMS."""


class Steps(list):
    """A list subclass: NEWOBJ, then APPENDS."""


class Shell:
    """What a malicious file pickles: a call to os.system on unpickling."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def _read(obj, protocol=2):
    return TensorsOnlyUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol))).load()


@pytest.mark.parametrize("protocol", [2, 4])
def test_unknown_classes_become_inert_stand_ins(protocol):
    params, steps = Params(lr=0.001), Steps([1, 2])
    loaded = _read({"hparams": Config({"a": [1, 2]}), "params": params, "steps": steps, "flag": Flag.ON,
                    "kinds": {Config: 1, Params: 2}, "again": Flag.ON}, protocol)
    config = loaded["hparams"]
    assert isinstance(config, StandIn) and type(config).__name__ == "Config"
    assert type(config).__module__ == __name__ and "stand-in for a" in repr(config)
    assert config.state["_content"] == {"a": [1, 2]} and isinstance(config.state["_flags"]["readonly"], StandIn)
    assert loaded["params"].items == [("lr", 0.001)] and loaded["steps"].elements == [1, 2]
    assert isinstance(loaded["flag"], StandIn) and loaded["flag"].args == ("on",)
    assert type(loaded["flag"]) is type(loaded["again"])           # one stand-in class per name
    assert sorted(k.__name__ for k in loaded["kinds"]) == ["Config", "Params"]
    assert isinstance(loaded["flag"](1, x=2), StandIn)             # calling a stand-in stays inert


def test_tensors_dtypes_and_plain_containers_come_back_as_they_are():
    value = {"sd": OrderedDict(w=torch.arange(6.0).reshape(2, 3)), "p": nn.Parameter(torch.ones(2)),
             "dtype": torch.float16, "size": torch.Size([1, 2]), "set": {1, 2}, "n": 3, "f": 0.5, "s": "x"}
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False, pickle_module=TENSORS_ONLY)
    assert isinstance(loaded["sd"], OrderedDict) and torch.equal(loaded["sd"]["w"], value["sd"]["w"])
    assert type(loaded["p"]) is nn.Parameter and torch.equal(loaded["p"], value["p"])
    assert loaded["dtype"] is torch.float16 and loaded["size"] == torch.Size([1, 2])
    assert {k: loaded[k] for k in ("set", "n", "f", "s")} == {"set": {1, 2}, "n": 3, "f": 0.5, "s": "x"}


@pytest.mark.parametrize("zipfile", [True, False])
def test_trust_pickle_runs_nothing_from_the_file(tmp_path, zipfile):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": Shell(marker)}, path,
               _use_new_zipfile_serialization=zipfile)
    with pytest.raises(CheckpointMismatch, match=r"\(.*GLOBAL posix.system.*\);.*trust_pickle=True"):
        read_checkpoint(path, how_to_get="get it elsewhere")
    loaded = read_checkpoint(path, how_to_get="get it elsewhere", trust_pickle=True)
    assert not marker.exists()
    assert isinstance(loaded["payload"], StandIn) and torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_trust_pickle_names_the_file_it_cannot_read(tmp_path):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="broken.ckpt could not be read even with trust_pickle=True.*else"):
        read_checkpoint(path, how_to_get="get it elsewhere", trust_pickle=True)


def _net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.utils.spectral_norm(nn.Conv2d(3, 8, 3)), nn.ReLU(),
                        nn.utils.spectral_norm(nn.ConvTranspose2d(8, 4, 4, stride=2)), nn.Conv2d(4, 2, 1))
    net.train()(torch.rand(1, 3, 9, 9))                                # one power iteration, as in training
    return net.eval()


def test_pre_1_0_spectral_norm_layout_loads_strictly():
    net, x = _net(), torch.rand(2, 3, 9, 9)
    old = pre_1_0_spectral_norm(net)
    assert "0.weight_v" not in old and legacy_spectral_norm(net, old) == {"0.weight_v": "0.weight",
                                                                          "2.weight_v": "2.weight"}
    assert legacy_spectral_norm(net, net.state_dict()) == {}
    fresh = load_strict(_net(seed=1), old, source="old.pth")
    with torch.no_grad():
        assert ((fresh.eval()(x) - net(x)).abs().max() / net(x).abs().max()).item() < 1e-5
    assert "0.weight" in old and "0.weight_v" in fresh.state_dict()   # the caller's dict is left as it was


def test_tampered_pre_1_0_layout_is_one_clear_error():
    net = _net()
    old = pre_1_0_spectral_norm(net)
    old["0.weight"] = torch.zeros(8, 3, 2, 2)
    old["2.weight_x"] = old.pop("2.weight_u")
    with pytest.raises(CheckpointMismatch) as err:
        load_strict(_net(), old, source="old.pth")
    message = str(err.value)
    assert message.startswith("old.pth does not match Sequential: 2 missing: 2.weight_u, 2.weight_v; "
                              "2 unexpected: 2.weight, 2.weight_x; 1 misshapen (file vs model): "
                              "('0.weight', (8, 3, 2, 2), (8, 3, 3, 3)).")
    assert "torch < 1.0's weight_orig, weight_u, weight" in message and "right checkpoint" in message

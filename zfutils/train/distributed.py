"""Training on several GPUs or machines, started by torchrun (see zfutils/train/launch.py).

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK for every process it starts; `init()` joins them in
one process group (NCCL on GPUs, gloo on CPUs). Each rank then computes a share of every batch,
and gradients are averaged over the ranks, so a run is the single-process run with the same
global batch, computed in pieces:

- The configured `batch_size` is the GLOBAL batch: each rank takes `batch_size // world_size`
  images of it (`per_rank_batch`; it must divide), drawn from the trainers' own (seed, epoch)
  permutation (`shard_sampler`), so a resumed run sees the batches an uninterrupted one would.
- Rank 0 alone writes logs and checkpoints (`is_main`; JsonLinesLog and save_atomic check it) and
  validates (`from_main` sends its numbers to every rank, so all keep the same best-epoch state);
  all ranks wait at a `barrier` after each save, so none reads a checkpoint being written.
- Checkpoints hold the unwrapped modules' state_dicts: the format does not depend on how a run
  was trained, and a distributed run resumes single-process runs and vice versa.
- Batch norm becomes SyncBatchNorm on GPUs (statistics of the global batch, as one process would
  compute them; not in a discriminator under R1, see `prepare`). PyTorch has no CPU
  SyncBatchNorm, so on CPUs (gloo) each rank normalises with its own share's statistics; for
  networks with batch norm that is where a CPU run departs from the single-process one. Running
  statistics follow rank 0's (DDP broadcasts them; rank 0's are saved).
- Every rank reads the data and, when resuming or loading the best weights, the checkpoints:
  on several machines the runs/ and data/ folders (ZF_WORKDIR) must be on a shared filesystem.
"""
from __future__ import annotations

import functools
import os
from datetime import timedelta
from typing import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

# Rank 0 validates (and draws Grad-CAMs) while the others wait in a collective: allow for that.
TIMEOUT = timedelta(minutes=30)


def launched() -> bool:
    """Whether torchrun (or an equivalent launcher) started this process."""
    return all(k in os.environ for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def active() -> bool:
    """Whether a process group is up: the trainers shard, average and write on rank 0 only."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def backend() -> str:
    return dist.get_backend() if active() else "none"


def is_main() -> bool:
    """Rank 0, or a plain single-process run: the process that logs, saves and shows progress."""
    return rank() == 0


def init(requested_device: str = "auto") -> str:
    """Join torchrun's process group when started by torchrun; the device this process trains on
    (`cuda:<LOCAL_RANK>` or `cpu`). Without torchrun: nothing to join, the usual device."""
    from zfutils.provenance import device_info

    device = device_info(requested_device)["device"]
    if not launched():
        return device
    if device == "cuda":
        local, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= gpus:
            raise RuntimeError(f"LOCAL_RANK is {local} but this machine has {gpus} GPU(s): start torchrun with "
                               f"--nproc_per_node={gpus} at most")
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not active():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=TIMEOUT)
    return device


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def per_rank_batch(batch_size: int) -> int:
    """Each rank's share of the global batch; the split must be exact, or the run would not be
    the configured one."""
    world = world_size()
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} does not split over {world} processes: the configured batch "
                         f"is the global one; use a batch size divisible by {world} or another --nproc_per_node")
    return batch_size // world


def shard_sampler(data, seed: int, drop_last: bool, *, shard: int | None = None, shards: int | None = None):
    """This rank's share of the permutation `RandomSampler(generator=manual_seed(seed))` draws
    (DistributedSampler draws the same `randperm`, seeded by seed + epoch; epoch stays 0 here, the
    trainers fold the epoch into `seed`). Interleaved: rank r takes positions r, r+W, ..., so
    with per-rank batches of B/W the ranks' k-th batches together are exactly the single-process
    k-th batch of B. Without `drop_last` the tail is padded with the first indices (every rank
    must see the same number of batches). `shard`/`shards` default to this rank and the world size."""
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(data, num_replicas=shards or world_size(), rank=rank() if shard is None else shard,
                              shuffle=True, seed=seed, drop_last=drop_last)


def sync_batchnorm(module: nn.Module, device: str) -> nn.Module:
    """Batch norm over the global batch on GPUs. The conversion keeps the parameter and buffer
    tensors (optimisers built before stay valid) and the state_dict keys. Skipped on CPUs, where
    PyTorch has no SyncBatchNorm (see the module docstring)."""
    if not str(device).startswith("cuda") or not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                      for m in module.modules()):
        return module
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    """convert_sync_batchnorm, except for batch-norm subclasses that must stay what they are
    (`keep_under_sync_batchnorm`: the classifier's standardising neck, a fixed transform whose
    relative variance floor SyncBatchNorm would drop)."""
    if getattr(module, "keep_under_sync_batchnorm", False):
        return module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        converted = _convert(child)
        if converted is not child:
            module.add_module(name, converted)
    return module


class _Dispatch(nn.Module):
    """DDP's forward calling any method of the module by name."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, method: str, *args, **kwargs):
        return getattr(self.module, method)(*args, **kwargs)


class Replicated:
    """`module` in DistributedDataParallel, with its methods called through DDP's forward: DDP
    averages gradients only for passes that go through its forward, and the classifier trains
    through `loss`, not `forward`. `replicated.loss(x, y)` is `module.loss(x, y)` with gradient
    averaging. Use it for training steps only: every rank must make the same calls (DDP
    broadcasts buffers on each call), so rank-0-only evaluation uses the module itself."""

    def __init__(self, module: nn.Module, device: str):
        from torch.nn.parallel import DistributedDataParallel

        self.module = sync_batchnorm(module, device)
        ids = [torch.device(device).index] if str(device).startswith("cuda") else None
        self.ddp = DistributedDataParallel(_Dispatch(self.module), device_ids=ids)

    def __getattr__(self, name: str):
        if name in ("module", "ddp"):  # not yet set (copying, unpickling)
            raise AttributeError(name)
        if not callable(getattr(self.module, name)):
            raise AttributeError(f"'{name}' is not a method of {type(self.module).__name__}")
        return functools.partial(self.ddp, name)


def wrap(module: nn.Module, device: str):
    """Under torchrun: `module` replicated with DDP (see Replicated; batch norm synchronised on
    GPUs). Otherwise the module itself, so a trainer calls `wrapped.loss(...)` either way. The
    module stays the one to checkpoint and evaluate."""
    return Replicated(module, device) if active() else module


def prepare(module: nn.Module, device: str, sync_bn: bool = True) -> nn.Module:
    """For modules trained without DDP (`average_gradients`): batch norm synchronised on GPUs
    (unless `sync_bn` is False: SyncBatchNorm has no double backward, pytorch/pytorch#61222, so a
    discriminator under an R1 penalty keeps per-GPU batch norm), and rank 0's parameters and
    buffers copied to every rank, so all start alike."""
    if sync_bn:
        module = sync_batchnorm(module, device)
    if active():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
    return module


@torch.no_grad()
def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """DDP's gradient averaging, by hand, after backward (one all-reduce of the flattened
    gradients). For the GAN trainer: its networks are called through backbone functions and
    sub-modules that a DDP forward would not see, its discriminator serves both updates, and
    R1 needs a double backward. Parameters without a gradient are skipped: every rank uses the
    same parameters (nothing in these networks depends on the data)."""
    if not active():
        return
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return
    grads = [p.grad for p in params]
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size()
    for grad, averaged in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(averaged)


def mean_values(values: dict[str, float]) -> dict[str, float]:
    """Numbers averaged over the ranks (the global batch's loss terms, for the log). A NaN on
    any rank reaches every rank, so all stop together instead of some waiting forever."""
    if not active():
        return dict(values)
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / world_size()).tolist()))


def from_main(fn: Callable, *args, **kwargs):
    """`fn(*args, **kwargs)` computed on rank 0 alone and sent to every rank (validation: one
    process evaluates, all keep the same state). An error on rank 0 is raised on every rank."""
    if not active():
        return fn(*args, **kwargs)
    box: list = [None]
    error = None
    if is_main():
        try:
            box[0] = ("ok", fn(*args, **kwargs))
        except Exception as err:  # the other ranks would otherwise wait for rank 0 until the timeout
            error = err
            box[0] = ("error", f"{type(err).__name__}: {err}")
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if error is not None:
        raise error
    if status == "error":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value

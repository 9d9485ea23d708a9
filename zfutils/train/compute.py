"""How training computes on its device (the `compute` section of params): mixed precision,
memory layout, compilation and data loading. The defaults are plain fp32 on whatever
`device` picked; on a GPU, bf16 (or fp16 with a gradient scaler) and channels_last are the
usual speed-ups, with results equal to fp32 within the tolerances tests/test_compute.py
documents on the golden inputs.

- `precision`: fp32 | bf16 | fp16. Forward passes and losses run under torch.autocast; fp16
  scales the loss (torch.amp.GradScaler) so small gradients do not underflow, and skips a step
  whose gradients overflowed (the scaler then lowers its scale). bf16 has fp32's range and needs
  no scaler: the safer choice on GPUs that have it (Ampere and newer), and the one that works on
  CPUs.
- `channels_last`: NHWC memory layout for the networks (faster convolutions on tensor cores).
- `compile`: torch.compile the networks (slower first steps, faster later ones; off by default
  because CPU compilation on 2 cores costs more than a short run saves).
- `workers`: data-loader processes; on CUDA the batches come in pinned memory.
- `cudnn_benchmark`: let cuDNN time its algorithms for the (fixed) input size.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Compute:
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    cudnn_benchmark: bool = True
    scaler: torch.amp.GradScaler = field(init=False, repr=False)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown compute.precision '{self.precision}'; known: {', '.join(PRECISIONS)}")
        if int(self.workers) < 0:
            raise ValueError(f"compute.workers must be >= 0, got {self.workers}")
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.precision == "fp16")
        if self.device_type == "cuda":
            torch.backends.cudnn.benchmark = bool(self.cudnn_benchmark)

    @classmethod
    def from_cfg(cls, cfg: dict, device: str) -> "Compute":
        return cls(device=device, **cfg["compute"])

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    def autocast(self):
        """The context forward passes and losses run in."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=PRECISIONS[self.precision])

    def prepare(self, module: nn.Module, hot: nn.Module | None = None) -> nn.Module:
        """The module moved to the device, in the configured memory layout; with `compile`, the
        forward of `hot` (the part that runs every step; default the module) compiled in place
        (nn.Module.compile), so parameter names and checkpoints stay the same."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.compile:
            (hot or module).compile()
        return module

    def backward(self, loss: torch.Tensor, inputs: list[torch.Tensor] | None = None) -> None:
        """Backward of the (fp16: scaled) loss; with `inputs`, gradients reach only those tensors
        (one network's parameters, so the other's gradients are neither computed nor changed)."""
        self.scaler.scale(loss).backward(inputs=inputs)

    def step(self, optimizer: torch.optim.Optimizer, clip: float | None = None, parameters=None) -> None:
        """One optimiser step after `backward`: unscale (fp16) before clipping, skip on overflow."""
        if clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        self.scaler.step(optimizer)

    def update(self) -> None:
        """Once per iteration, after every optimiser's step (the fp16 scale follows overflows)."""
        self.scaler.update()

    def loader_options(self) -> dict:
        return {"num_workers": int(self.workers), "pin_memory": self.device_type == "cuda",
                "persistent_workers": int(self.workers) > 0}

    def batch(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch tensor on the device, in the configured layout when it is an image batch."""
        tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last and tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

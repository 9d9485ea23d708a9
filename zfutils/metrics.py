"""Evaluation metrics. Inpainting: L1, PSNR and SSIM on the masked (filled) region only, since
the known pixels are copied from the input and would flatter every model."""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image: mean |output - target| over hole pixels (all channels). NaN for an empty hole."""
    m = mask.expand_as(target)
    return ((output - target).abs() * m).flatten(1).sum(1) / m.flatten(1).sum(1)


def masked_psnr(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image: PSNR in dB of images in [0, 1], from the MSE over hole pixels."""
    m = mask.expand_as(target)
    mse = ((output - target) ** 2 * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def masked_ssim(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image: the SSIM map (scikit-image, 7x7 windows, RGB) averaged over hole pixels."""
    values = []
    for out, tgt, m in zip(output.detach().cpu().numpy(), target.detach().cpu().numpy(), mask.cpu().numpy()):
        _, full = structural_similarity(tgt.transpose(1, 2, 0), out.transpose(1, 2, 0), channel_axis=2,
                                        data_range=1.0, full=True)
        hole = m[0] > 0.5
        values.append(full.mean(axis=2)[hole].mean() if hole.any() else np.nan)
    return torch.tensor(values, dtype=torch.float32)

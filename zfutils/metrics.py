"""Evaluation metrics. Inpainting: L1, PSNR and SSIM on the masked (filled) region only, since
the known pixels are copied from the input and would flatter every model."""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score


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


# Classification of identities: scikit-learn's definitions, over every class of the model's head
# (labels=range(n_classes)), so a class the model never predicts still counts, with recall 0.

def _check_labels(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} holds labels outside 0..{n_classes - 1}; pass class indices, not names")
    return y_true, y_pred


def classification_metrics(y_true, y_pred, n_classes: int) -> dict[str, float]:
    """Accuracy, macro recall (balanced accuracy when every class occurs) and macro F1; a class absent
    from y_true contributes 0 (zero_division=0), so a test split should hold every identity."""
    y_true, y_pred = _check_labels(y_true, y_pred, n_classes)
    labels = list(range(n_classes))
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_recall": float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))}


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """n_classes x n_classes counts, rows true class, columns predicted (scikit-learn's layout)."""
    y_true, y_pred = _check_labels(y_true, y_pred, n_classes)
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))

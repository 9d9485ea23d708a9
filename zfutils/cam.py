"""Where a classifier looks: class activation maps (pytorch-grad-cam) for each image's own identity,
and the share of each map's mass on the stripe pattern, on the rest of the fish and on the background.

Two methods (`classify.cam_method`). Grad-CAM (the study's) weights each channel by its gradient
averaged over the map; HiResCAM multiplies gradient and activation position by position. Where
global average pooling reads the layer directly the two are the same map. Behind the study's head,
a linear layer on the flattened map, each position has its own weights, the average cancels them
and Grad-CAM's map is often empty (every weighted sum negative), while HiResCAM's is each
position's exact contribution to the class score (Draelos & Carin, 2020)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


CAM_METHODS = ("hirescam", "gradcam")


def grad_cams(model: nn.Module, target_layer: nn.Module, images, labels, batch_size: int = 8,
              method: str = "hirescam") -> np.ndarray:
    """N x H x W class activation maps in [0, 1] (each scaled to its own maximum) of `model` (a float
    image batch in [0, 1] to logits) at `target_layer`, for the class `labels[i]` of image i, by
    `method` (CAM_METHODS: `hirescam`, or `gradcam` as the study).

    The input is made to require grad: with a frozen encoder nothing upstream of the target layer
    would, pytorch-grad-cam would then hook no gradient and fail. The model's train/eval mode,
    requires_grad flags and .grad tensors are as before afterwards."""
    images = torch.as_tensor(images, dtype=torch.float32)
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method '{method}' (classify.cam_method); known: {', '.join(CAM_METHODS)}")
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be N x C x H x W with one label each, got {tuple(images.shape)} "
                         f"and {len(labels)} labels")
    from pytorch_grad_cam import GradCAM, HiResCAM  # here: importing it costs ~3 s in every stage kernel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method_class = {"hirescam": HiResCAM, "gradcam": GradCAM}[method]
    params = list(model.parameters())
    saved = model.training, [p.requires_grad for p in params], [p.grad for p in params]
    out = []
    try:
        with torch.enable_grad(), method_class(model=model, target_layers=[target_layer]) as cam:
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size].detach().clone().requires_grad_(True)
                targets = [ClassifierOutputTarget(int(k)) for k in labels[start:start + batch_size]]
                try:
                    out.append(cam(input_tensor=batch, targets=targets))
                except IndexError as error:
                    # the CAM's __exit__ prints and swallows an IndexError; re-raise as another type.
                    raise ValueError(f"a label in {sorted(set(labels.tolist()))} is not a class of the "
                                     f"model's output: {error}") from error
    finally:
        model.train(saved[0])
        for p, flag, grad in zip(params, saved[1], saved[2]):
            p.requires_grad_(flag)
            p.grad = grad
    if not out:
        return np.zeros((0, *images.shape[2:]), np.float32)
    return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)


def cam_mass_shares(cams, fish_masks, pattern_masks) -> dict[str, np.ndarray | float]:
    """Per image, the share of CAM mass on the pattern, on the fish outside the pattern and on the
    background (the three sum to 1; NaN for an all-zero CAM), and their means over images.
    A pattern pixel counts as pattern even where the fish mask misses it."""
    cams = np.asarray(cams, dtype=np.float64)
    fish, pattern = np.asarray(fish_masks) > 0.5, np.asarray(pattern_masks) > 0.5
    if cams.ndim != 3 or fish.shape != cams.shape or pattern.shape != cams.shape:
        raise ValueError(f"cams {cams.shape}, fish masks {fish.shape} and pattern masks {pattern.shape} must all "
                         "be N x H x W of one size; resize the masks (nearest) to the CAMs")
    if (cams < 0).any():
        raise ValueError("CAMs must be non-negative (Grad-CAM's and HiResCAM's are, after their ReLU)")
    total = cams.sum(axis=(1, 2))
    regions = {"pattern": pattern, "fish_outside_pattern": fish & ~pattern, "background": ~fish & ~pattern}
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {name: (cams * mask).sum(axis=(1, 2)) / total for name, mask in regions.items()}
    out: dict[str, np.ndarray | float] = dict(shares)
    for name, values in shares.items():
        finite = values[np.isfinite(values)]
        out[f"mean_{name}"] = float(finite.mean()) if len(finite) else float("nan")
    out["n_empty"] = int((total == 0).sum())
    return out


def overlay(image, cam) -> np.ndarray:
    """H x W x 3 float image in [0, 1]: the CAM as a jet heat map blended half and half with `image`."""
    image = np.asarray(image, dtype=np.float32)
    cam = np.asarray(cam, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or cam.shape != image.shape[:2]:
        raise ValueError(f"need an H x W x 3 image and an H x W CAM, got {image.shape} and {cam.shape}")
    if image.min() < 0 or image.max() > 1 or cam.min() < 0 or cam.max() > 1:
        raise ValueError("image and CAM must both lie in [0, 1]")
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image, cam, use_rgb=True).astype(np.float32) / 255.0

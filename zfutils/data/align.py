"""Pose normalisation of side-view fish: every image turned, mirrored, scaled and shifted so that
its fish lies level, head to the right, centred and spanning a fixed share of the image width.

Why: a fish's identity is the layout of its stripe interruptions on a body whose position, size,
tilt and heading change from frame to frame. A network trained from scratch on a few dozen
images per individual has to learn that invariance from the data as well; with it removed the
same network learns the individuals (docs/alignment.md). Re-identification
pipelines for animals crop and orient the animal before the network for the same reason.

The pose comes from the fish mask (exact for synthetic fish, estimated for real ones):
- the axis is the mask's principal axis (the eigenvector of its pixel covariance);
- the head is at the end of the axis whose third of the body holds more mask pixels (a trunk and
  head are deeper than a caudal peduncle and fin); on the synthetic fish this agrees with the
  renderer's heading for 99% of images, and a mistaken heading costs one mirrored image;
- the fish is mirrored, never rotated by 180 degrees, to face right, so that its back stays up.
Images whose fish mask is empty keep their frame (`align_ok` false in the metadata).
The image is resampled bilinearly with reflected borders (no black corners to tell apart), the
masks by nearest neighbour, all with the same transform.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from zfutils.data.format import DatasetWriter, StoredDataset

#: Columns the aligned data set adds to metadata.csv.
ALIGN_COLUMNS = ["align_ok", "align_angle", "align_scale", "align_mirrored"]


@dataclass(frozen=True)
class FishPose:
    """Where a fish lies in its frame: the middle of its length, the direction of its axis that
    points to the head (a unit vector in x, y image coordinates) and its length in pixels."""

    centre: np.ndarray
    heading: np.ndarray
    length: float


def fish_pose(fish: np.ndarray) -> FishPose | None:
    """The pose of the fish in a boolean mask, or None for an empty mask."""
    ys, xs = np.nonzero(fish)
    if len(xs) < 3:
        return None
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    centroid = points.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov((points - centroid).T))
    axis = eigenvectors[:, int(np.argmax(eigenvalues))]
    along = (points - centroid) @ axis
    low, high = np.percentile(along, [0.5, 99.5])  # the ends, robust to a stray pixel
    length = max(float(high - low), 1.0)
    centre = centroid + axis * (high + low) / 2
    third = length / 3
    head_first = np.count_nonzero(along > high - third) >= np.count_nonzero(along < low + third)
    return FishPose(centre=centre, heading=axis if head_first else -axis, length=length)


def pose_transform(pose: FishPose, size: int, fill: float) -> tuple[np.ndarray, float, float, bool]:
    """The 2x3 affine matrix taking frame pixels to aligned pixels; the tilt it removes (degrees,
    counter-clockwise as seen, of the fish after any mirroring); its scale; whether it mirrors."""
    hx, hy = pose.heading
    mirrored = bool(hx < 0)
    if mirrored:
        hx = -hx  # after mirroring the axis, the head points to +x
    angle = float(np.degrees(np.arctan2(hy, hx)))  # the axis's tilt, within (-90, 90]
    scale = fill * size / pose.length
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rotate = np.array([[cos, sin], [-sin, cos]]) * scale  # turns the (mirrored) head axis onto +x
    mirror = np.diag([-1.0, 1.0]) if mirrored else np.eye(2)
    linear = rotate @ mirror
    offset = np.array([size / 2, size / 2]) - linear @ pose.centre
    return np.hstack([linear, offset[:, None]]), -angle, float(scale), mirrored


def align_fish(image: np.ndarray, fish: np.ndarray, pattern: np.ndarray, *, fill: float = 0.9,
               size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """`image` (HxWx3 uint8) and its boolean masks in the aligned pose, on a `size` square (the
    image's side by default), with a record of the transform (the ALIGN_COLUMNS)."""
    if image.shape[:2] != fish.shape or fish.shape != pattern.shape:
        raise ValueError(f"image {image.shape[:2]}, fish mask {fish.shape} and pattern mask {pattern.shape} "
                         "must have one size")
    if not 0 < fill <= 1:
        raise ValueError(f"data.align_fill must be in (0, 1], got {fill}")
    size = size or image.shape[0]
    pose = fish_pose(fish)
    if pose is None:
        record = {"align_ok": False, "align_angle": 0.0, "align_scale": 1.0, "align_mirrored": False}
        if image.shape[0] != size or image.shape[1] != size:
            raise ValueError(f"cannot align an image without fish pixels to another size ({size})")
        return image, fish, pattern, record
    matrix, angle, scale, mirrored = pose_transform(pose, size, fill)
    aligned = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    masks = [cv2.warpAffine(m.astype(np.uint8), matrix, (size, size), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0 for m in (fish, pattern)]
    record = {"align_ok": True, "align_angle": round(angle, 3), "align_scale": round(scale, 4),
              "align_mirrored": mirrored}
    return aligned, masks[0], masks[1], record


def align_dataset(data: StoredDataset, out: Path, fill: float = 0.9) -> Path:
    """Write the aligned copy of `data` to `out` (which may be `data.root`: the copy replaces it
    only once complete). Needs fish masks: alignment reads the pose from them."""
    if not data.has_masks:
        raise ValueError(f"data.align needs fish masks to find each fish's pose, but the data set at {data.root} has "
                         "none (masks: none); set data.masks to estimate (or give mask files), or data.align: false")
    records = []
    with DatasetWriter(out, with_masks=True) as writer:
        for row in tqdm(data.meta.to_dict("records"), desc="aligning fish", leave=False):
            image_id = row["image_id"]
            image, fish, pattern, record = align_fish(data.image(image_id), data.mask(image_id, "fish"),
                                                      data.mask(image_id, "pattern"), fill=fill)
            writer.add(image_id, image, fish, pattern, **{k: v for k, v in row.items() if k != "image_id"})
            records.append(record)
        meta = data.meta.reset_index(drop=True)
        for column in ALIGN_COLUMNS:
            meta[column] = [r[column] for r in records]
        ok = int(meta["align_ok"].sum())
        return writer.commit({**data.info, "aligned": {"fill": fill, "aligned": ok, "kept_frame": int(len(meta) - ok)}},
                             metadata=meta)

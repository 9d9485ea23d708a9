"""Small image helpers shared by the real-data readers: reading with clear errors, square crops
and resizing, so every reader produces square images of the preset's size the same way."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from zfutils.data.format import DataFormatError

#: File endings the readers accept as images (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _open(path: Path, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist; check the path or the file list")
    try:
        with Image.open(path) as img:
            img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # PIL: SyntaxError for broken chunks
        raise DataFormatError(
            f"cannot read {what} file {path} ({exc}); replace the file or remove it from the input"
        ) from exc
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (grey, palette and alpha images are converted)."""
    img = _open(Path(path), "image")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.max() > 0 else 1.0
        img = Image.fromarray((arr / top * 255).astype(np.uint8))
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file as HxW bool: zero is outside, the one other grey value inside. A mask with
    more than two values (soft edges, JPEG noise, a photo given by mistake) is an error: reading it
    as "any non-zero is inside" would silently grow it, and no threshold is right for every file."""
    img = _open(Path(path), "mask")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGB")
    grey = np.asarray(img.convert("L"))
    values = np.unique(grey)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(map(str, values[:6])) + (f", ... ({len(values)} values)" if len(values) > 6 else "")
        raise DataFormatError(
            f"mask file {path} is not binary: its grey values are {shown}; a mask holds 0 outside and one value "
            f"(such as 255) inside. Threshold it and save it as PNG (JPEG adds grey values), or pass "
            f"masks='estimate' or 'none'")
    return grey > 0


def _pad(arr: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]], mode: str,
         fill: int | bool = 0) -> np.ndarray:
    if not any(p for pair in pads for p in pair):
        return arr
    widths = list(pads) + [(0, 0)] * (arr.ndim - 2)
    if mode == "constant":
        return np.pad(arr, widths, mode="constant", constant_values=fill)
    if mode not in ("edge", "reflect"):
        raise ValueError(f"pad mode {mode!r} is not one of 'edge', 'reflect', 'constant'")
    if mode == "reflect" and min(arr.shape[:2]) < 2:
        mode = "edge"  # reflection needs at least two pixels along each axis
    return np.pad(arr, widths, mode=mode)


def square_crop(image: np.ndarray, cx: float, cy: float, side: int, *, mode: str = "edge",
                fill: int | bool = 0) -> np.ndarray:
    """Crop a `side` x `side` square centred on (cx, cy), padding where it leaves the image.

    Only the part inside the image is padded (not the whole frame), so this stays cheap on
    large video frames; the result is always exactly square and centred on the requested point.
    """
    side = int(side)
    if side < 1:
        raise ValueError(f"crop side must be at least 1 pixel, got {side}")
    h, w = image.shape[:2]
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    x1, y1 = x0 + side, y0 + side
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix0 >= ix1 or iy0 >= iy1:
        raise ValueError(
            f"crop square x={x0}..{x1}, y={y0}..{y1} lies outside the {w}x{h} image")
    piece = image[iy0:iy1, ix0:ix1]
    pads = ((iy0 - y0, y1 - iy1), (ix0 - x0, x1 - ix1))
    return _pad(piece, pads, mode, fill)


def pad_to_square(image: np.ndarray, *, mode: str = "edge", fill: int | bool = 0) -> np.ndarray:
    """Pad the shorter side symmetrically so the image becomes square (content stays centred)."""
    h, w = image.shape[:2]
    if h == w:
        return image
    d = abs(h - w)
    before, after = d // 2, d - d // 2
    pads = ((before, after), (0, 0)) if h < w else ((0, 0), (before, after))
    return _pad(image, pads, mode, fill)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square HxWx3 uint8 image to size x size (antialiased bilinear)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    img = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a boolean mask to size x size with nearest neighbour, so it stays binary."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask.astype(bool)
    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8) * 255)
    return np.asarray(img.resize((size, size), Image.Resampling.NEAREST)) > 0

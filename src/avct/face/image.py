"""Reading the reference image: any file Pillow opens -> RGB uint8, and the official 256² tensor."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import AvctError

MIN_IMAGE_SIDE = 32  # below this there is no face worth animating


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB, the right way up (EXIF orientation applied). Grayscale, palette, 16-bit and
    RGBA inputs are converted (alpha dropped, as the official ``imread(...)[:, :, :3]``)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise AvctError(f"image not found: {path}")
    try:
        with Image.open(path) as opened:
            opened.load()
            im = ImageOps.exif_transpose(opened)  # phones store portraits sideways + an EXIF rotation
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = (arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8)
                rgb = np.repeat(arr[..., None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGBA" if "A" in im.getbands() or im.mode == "P" else "RGB"))[..., :3]
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise AvctError(f"not a readable image: {path} ({e.__class__.__name__})") from None
    if min(rgb.shape[:2]) < MIN_IMAGE_SIDE:
        raise AvctError(f"image too small: {path} is {rgb.shape[1]}x{rgb.shape[0]} px "
                        f"(need at least {MIN_IMAGE_SIDE} px on each side)")
    return np.ascontiguousarray(rgb)


def resize_256(rgb: np.ndarray) -> np.ndarray:
    """The official resize: OpenCV bilinear straight to 256x256 (no aspect preservation)."""
    return cv2.resize(rgb, (256, 256))


def to_tensor(rgb_256: np.ndarray) -> torch.Tensor:
    """(256,256,3) uint8 -> (1,3,256,256) float32 in [0,1] as ``img_as_float32`` does (x * float32(1/255))."""
    x = rgb_256.astype(np.float32) * np.float32(1.0 / 255.0)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

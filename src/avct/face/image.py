"""Reading the reference image: any file Pillow opens -> RGB uint8, and the official 256² tensor."""
from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import AvctError
from ..limits import check_pixels, too_many_pixels

MIN_IMAGE_SIDE = 32  # below this there is no face worth animating
# The raster formats a photo comes in; Pillow's other openers are never tried on a user's file (EPS would
# run Ghostscript, and formats nobody photographs in are attack surface only).
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "HEIF", "JPEG2000", "PPM",
                 "TGA", "QOI")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB, the right way up (EXIF orientation applied). Grayscale, palette, 16-bit and
    RGBA inputs are converted (alpha dropped, as the official ``imread(...)[:, :, :3]``). The size the
    header declares is checked against :data:`avct.limits.LIMITS` before any pixel is decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise AvctError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise AvctError(f"image file is empty (0 bytes): {path}")
    Image.init()
    try:
        with warnings.catch_warnings():  # Pillow's warnings (a bomb's size, corrupt EXIF): it reads or we refuse
            warnings.simplefilter("ignore")
            with Image.open(path, formats=[f for f in PHOTO_FORMATS if f in Image.OPEN]) as opened:
                check_pixels(*opened.size, f"image {path}")  # from the header, before any pixel is decoded
                opened.load()
                im = ImageOps.exif_transpose(opened)  # phones store portraits sideways + an EXIF rotation
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im, dtype=np.float64)
                    arr = (arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8)
                    rgb = np.repeat(arr[..., None], 3, axis=2)
                else:
                    rgb = np.asarray(im.convert("RGBA" if "A" in im.getbands() or im.mode == "P" else "RGB"))[..., :3]
    except Image.DecompressionBombError as e:  # Pillow's own check, in open(), above 2x its MAX_IMAGE_PIXELS
        declared = re.search(r"\((\d+) pixels\)", str(e))
        raise too_many_pixels(f"image {path}", int(declared.group(1)) if declared else 0) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error, EOFError) as e:
        # what Pillow's decoders raise on corrupt data (SyntaxError, struct.error: some plugins' parsers)
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

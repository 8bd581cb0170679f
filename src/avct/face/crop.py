"""The official reference crop (``image_preprocess.py`` / ``crop_src_image``), OFFICIAL.md A.4.

The networks were trained on FOMM-style 256x256 crops: the head roughly centred, the face box about
half the crop's side, a bit more room below the chin than above the hair. The official recipe:

1. dlib face box (left, top, right, bottom);
2. shift it **up** by 10 % of its height (top and bottom both move), clamp it to the image;
3. ``compute_aspect_preserved_bbox(box, increase_area=0.5)``: grow every side by
   max(0.5, what makes the box square) x width (or height), i.e. a square of side 2 x max(w, h)
   centred on the box; if that leaves the image, shrink it symmetrically (all four sides) by the
   largest overflow so it stays square and centred;
4. crop and ``cv2.resize`` (bilinear) to 256x256.

Official quirk (``official_oob=True``): the released code measures the right/bottom overflow against the
*detector* box instead of the grown one, so it never notices a crop that leaves the image on the
right or at the bottom; numpy slicing then clips the crop, which is no longer square and is
stretched by the resize. The default (``official_oob=False``) implements the documented intent (all
four sides checked); both agree whenever the square fits or only the left/top overflow. The released
code also clamps only the top and bottom in step 2; the default clamps all four sides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..media import IMAGE_SIZE
from .landmarks import Face, largest_face

INCREASE_AREA = 0.5  # official increase_area
SHIFT_UP = 0.1  # official upward shift, fraction of the box height

Box = tuple[float, float, float, float]  # (left, top, right, bottom) pixels


@dataclass(frozen=True, eq=False)
class CroppedFace:
    """A 256² crop of a photo around one face."""

    image: np.ndarray  # (256, 256, 3) uint8 RGB
    box: tuple[int, int, int, int]  # (left, top, right, bottom) of the crop in the photo, right/bottom exclusive
    landmarks: np.ndarray  # (68, 2) float64, the face's landmarks in 256² crop pixels


def shifted_face_box(box: Box, height: int, width: int, *, clamp_x: bool = True) -> Box:
    """Step 2: the detector box moved up by 10 % of its height, clamped to the (height, width) image.

    The official code clamps only y (``clamp_x=False``).
    """
    left, top, right, bottom = (float(v) for v in box)
    shift = SHIFT_UP * (bottom - top)
    top, bottom = max(0.0, top - shift), min(float(height), bottom - shift)
    if clamp_x:
        left, right = max(0.0, left), min(float(width), right)
    return left, top, right, bottom


def _grown_square(box: Box, increase_area: float) -> tuple[int, int, int, int]:
    """Grow each side so the box becomes a square of side (1 + 2a) x max(w, h) (int() truncation)."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    if w <= 0 or h <= 0:
        raise ValueError(f"empty face box {box}")
    a = increase_area
    w_inc = max(a, ((1 + 2 * a) * h - w) / (2 * w))  # fraction of w added on each side
    h_inc = max(a, ((1 + 2 * a) * w - h) / (2 * h))  # fraction of h added on each side
    # math.trunc == the official int(): toward zero, so -4.5 -> -4.
    return (math.trunc(left - w_inc * w), math.trunc(top - h_inc * h),
            math.trunc(right + w_inc * w), math.trunc(bottom + h_inc * h))


def aspect_preserved_bbox(box: Box, height: int, width: int,
                          increase_area: float = INCREASE_AREA) -> tuple[int, int, int, int]:
    """Step 3 (documented intent): the grown square, shrunk on all four sides by its largest overflow
    out of the (height, width) image. Returns ints (left, top, right, bottom), right/bottom exclusive.

    If the shrunk box would be empty (face centre outside the image), the grown box clipped to the
    image is returned instead.
    """
    left, top, right, bottom = _grown_square(box, increase_area)
    overflow = max(0, -left, -top, right - width, bottom - height)
    shrunk = (left + overflow, top + overflow, right - overflow, bottom - overflow)
    if shrunk[2] - shrunk[0] >= 1 and shrunk[3] - shrunk[1] >= 1:
        return shrunk
    return max(left, 0), max(top, 0), min(right, width), min(bottom, height)


def official_aspect_preserved_bbox(box: Box, height: int, width: int,
                                   increase_area: float = INCREASE_AREA) -> tuple[int, int, int, int]:
    """Step 3 exactly as released: right/bottom overflow measured from the *detector* box's right/bottom
    (so usually negative, i.e. ignored). The result may extend past the right/bottom edge."""
    right0, bottom0 = box[2], box[3]
    left, top, right, bottom = _grown_square(box, increase_area)
    left_oob, top_oob = -min(0, left), -min(0, top)
    right_oob, bottom_oob = right0 - min(right, width), bottom0 - min(bottom, height)
    overflow = max(max(left_oob, right_oob), max(top_oob, bottom_oob))
    if overflow > 0:  # an int for dlib's int boxes; truncated like the rest for sub-pixel boxes
        return (math.trunc(left + overflow), math.trunc(top + overflow),
                math.trunc(right - overflow), math.trunc(bottom - overflow))
    return left, top, right, bottom


def crop_box(face_box: Box, height: int, width: int, *, official_oob: bool = False) -> tuple[int, int, int, int]:
    """Steps 2-3: the crop rectangle (left, top, right, bottom) for a detector box, clipped to the image
    (right/bottom exclusive), as numpy slicing clips the official one."""
    if official_oob:
        box = official_aspect_preserved_bbox(shifted_face_box(face_box, height, width, clamp_x=False), height, width)
    else:
        box = aspect_preserved_bbox(shifted_face_box(face_box, height, width), height, width)
    left, top, right, bottom = box
    return max(left, 0), max(top, 0), min(right, width), min(bottom, height)


def crop_reference(rgb: np.ndarray, face: Face, *, official_oob: bool = False) -> CroppedFace:
    """The official 256² crop of ``rgb`` (H, W, 3) uint8 around ``face`` (detected in ``rgb``)."""
    height, width = rgb.shape[:2]
    left, top, right, bottom = crop_box(face.box, height, width, official_oob=official_oob)
    if right - left < 1 or bottom - top < 1:
        raise ValueError(f"face box {face.box} gives an empty crop of a {width}x{height} image")
    patch = np.ascontiguousarray(rgb[top:bottom, left:right])
    image = cv2.resize(patch, (IMAGE_SIZE, IMAGE_SIZE))  # bilinear, as the official crop
    # cv2.resize maps pixel centres: x_dst = (x_src - left + 0.5) * 256 / crop_w - 0.5.
    scale = np.array([IMAGE_SIZE / (right - left), IMAGE_SIZE / (bottom - top)])
    landmarks = (face.landmarks - np.array([left, top]) + 0.5) * scale - 0.5
    return CroppedFace(image=image, box=(left, top, right, bottom), landmarks=landmarks)


def crop_face(rgb: np.ndarray, *, source_name: str, official_oob: bool = False) -> CroppedFace:
    """Detect the largest face of ``rgb`` and crop around it (AvctError if there is none)."""
    return crop_reference(rgb, largest_face(rgb, source_name=source_name), official_oob=official_oob)

"""Rasterise a 6-DoF head pose as the official 256x256 "pose box" image (networks' pose input).

Two squares (rear half-size 75 mm at z=0, front half-size 100 mm at z=100) are projected with the
Euler angles passed as a Rodrigues vector (the official approximation, kept for checkpoint parity),
truncated to int pixels and drawn as 2-px lines of value 255. The canvas is float, on which OpenCV
draws LINE_AA as a plain line, so the image holds only 0 and 255.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..media import IMAGE_SIZE
from .camera import camera_matrix

_REAR, _FRONT, _DEPTH = 75.0, 100.0, 100.0
BOX_POINTS = np.array(
    [(-_REAR, -_REAR, 0), (-_REAR, _REAR, 0), (_REAR, _REAR, 0), (_REAR, -_REAR, 0), (-_REAR, -_REAR, 0),
     (-_FRONT, -_FRONT, _DEPTH), (-_FRONT, _FRONT, _DEPTH), (_FRONT, _FRONT, _DEPTH),
     (_FRONT, -_FRONT, _DEPTH), (-_FRONT, -_FRONT, _DEPTH)],
    dtype=np.float64,
)  # (10, 3) mm
_INT_LIMIT = 2.0**30  # beyond this the int32 cast (and OpenCV's clipping) is meaningless


def project_box(pose: np.ndarray) -> np.ndarray | None:
    """Projected box corners (10, 2) int32 for pose ``[Rx, Ry, Rz, Tx, Ty, Tz]``, None if absurd."""
    pose = np.asarray(pose, dtype=np.float64)
    points, _ = cv2.projectPoints(BOX_POINTS, pose[:3].reshape(3, 1), pose[3:].reshape(3, 1),
                                  camera_matrix(), np.zeros((4, 1)))
    points = points.reshape(-1, 2)
    if not np.all(np.abs(points) < _INT_LIMIT):
        return None  # projects nowhere near the canvas (e.g. an untrained predictor's pose)
    return points.astype(np.int32)  # truncation toward zero, as the official code


def draw_pose_box(pose: np.ndarray, dtype: np.dtype = np.float32) -> np.ndarray:
    """(256, 256) image with values {0, 255}; a pose that projects off-canvas gives a blank image."""
    pose = np.asarray(pose, dtype=np.float64)
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float64)
    pts = project_box(pose) if np.all(np.isfinite(pose)) else None
    if pts is None:
        return canvas.astype(dtype)
    cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], True, 255, 2, cv2.LINE_AA)
    for a, b in ((1, 6), (2, 7), (3, 8)):
        cv2.line(canvas, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), 255, 2, cv2.LINE_AA)
    return canvas.astype(dtype)


def draw_pose_boxes(poses: np.ndarray) -> np.ndarray:
    """(N, 6) poses -> (N, 256, 256) float32 images."""
    return np.stack([draw_pose_box(p) for p in np.asarray(poses)]) if len(poses) else \
        np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)

"""The camera model shared by head-pose estimation and pose boxes (OpenFace's defaults at 256²).

Head pose convention (OpenFace): ``[Rx, Ry, Rz, Tx, Ty, Tz]`` — rotations in radians, head position in
millimetres relative to the camera, +Z away from it.
"""
from __future__ import annotations

import numpy as np

FOCAL = 233.333  # OpenFace's default fx = fy for a 256x256 image
CENTER = 128.0


def camera_matrix() -> np.ndarray:
    """3x3 intrinsics (float64)."""
    return np.array([[FOCAL, 0.0, CENTER], [0.0, FOCAL, CENTER], [0.0, 0.0, 1.0]], dtype=np.float64)

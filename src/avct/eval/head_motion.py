"""How much does the head move? The spread of the nose tip over a video, in the face's own size.

Per frame dlib's nose tip (point 30) in pixels; the spread is the root of the summed variances of its x
and y over the video, divided by the median inter-ocular distance (so image size and face size drop
out). A generated video's spread divided by its real clip's says whether the head moves as much as
the speaker's (1), less (a stiff head) or more. A still video: 0.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..face.landmark_groups import NOSE_TIP, inter_ocular_distance

__all__ = ["head_spread", "spread_ratio"]


def head_spread(landmarks: Sequence[np.ndarray | None]) -> float | None:
    """The nose tip's spread in inter-ocular units over the frames with a face (None with fewer than 2)."""
    faces = [np.asarray(lm, np.float64) for lm in landmarks if lm is not None]
    if len(faces) < 2:
        return None
    nose = np.array([lm[NOSE_TIP] for lm in faces])
    iod = float(np.median([inter_ocular_distance(lm) for lm in faces]))
    if not math.isfinite(iod) or iod <= 0:
        return None
    return float(np.sqrt(nose.var(axis=0).sum()) / iod)


def spread_ratio(generated: float | None, real: float | None) -> float | None:
    """generated ÷ real spread; None when either is unknown or the real head never moves."""
    if generated is None or real is None or real <= 0:
        return None
    return generated / real

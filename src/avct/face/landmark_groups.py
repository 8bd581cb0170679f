"""The groups of dlib's 68 face landmarks (0-based iBUG-300W order) and the measures built on them.

Why one module: the same point numbers and the same "mouth aperture in inter-ocular units" are used by
the front-end, the mouth warp, training and the metrics. Stated here once, below all of them, so that
the generator and the metric that judges it cannot drift apart (and ``inference`` need not import
``eval``). "Left" and "right" are as seen in the image (dlib's 36-41 is the subject's right eye).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

NUM_LANDMARKS = 68
NOSE_TIP = 30
JAW = slice(0, 17)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)     # the eye on the image's left
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)        # outer lips 48-59, inner lips 60-67
CHIN = 8                     # the jaw's lowest point
NOSE_BASE = 33               # where the nose meets the upper lip
MOUTH_CORNERS = (48, 54)     # outer corners, image left then right
UPPER_LIP_CENTRE = 51        # outer upper lip, middle
LOWER_LIP_CENTRE = 57        # outer lower lip, middle
UPPER_INNER_LIP = (60, 61, 62, 63, 64)   # inner upper lip, left corner to right corner
LOWER_INNER_LIP = (60, 67, 66, 65, 64)   # inner lower lip, same order
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points facing each other
# Each eye as (outer corner, upper lid ×2, inner corner, lower lid ×2), left to right along the lids:
# corners p1, p4; upper lid p2, p3; lower lid p6, p5 (Soukupová & Čech's numbering).
EYES = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))


def _points(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected ({NUM_LANDMARKS}, 2) landmarks, got {pts.shape}")
    return pts


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two eye centres (image left, image right), each the mean of its six points."""
    pts = _points(landmarks)
    return pts[LEFT_EYE].mean(0), pts[RIGHT_EYE].mean(0)


def inter_ocular_distance(landmarks: np.ndarray) -> float:
    """Distance between the eye centres: the face's own unit of size (NaN if not finite)."""
    left, right = eye_centres(landmarks)
    d = float(np.linalg.norm(right - left))
    return d if math.isfinite(d) else math.nan


def mouth_aperture(landmarks: np.ndarray) -> float:
    """Inner-lip gap in inter-ocular units: mean(|p61 − p67|, |p62 − p66|, |p63 − p65|) / IOD
    (0 = lips closed; NaN for degenerate eyes)."""
    pts = _points(landmarks)
    iod = inter_ocular_distance(pts)
    if not math.isfinite(iod) or iod <= 0:
        return math.nan
    gap = np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in INNER_LIP_PAIRS])
    return float(gap / iod)


def aperture_curve(landmarks: Sequence[np.ndarray | None]) -> np.ndarray:
    """Apertures of a landmark sequence, NaN where a frame has no face (None) or NaN landmarks."""
    return np.array([math.nan if lm is None else mouth_aperture(lm) for lm in landmarks], dtype=np.float64)


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """How open the eyes are: (|p2 − p6| + |p3 − p5|) / (2 |p1 − p4|) of each eye, averaged over both
    (Soukupová & Čech 2016; about 0.25-0.35 open, under half that closed). Scale and roll drop out, so
    a blink reads the same in any photo; NaN for degenerate eyes."""
    pts = _points(landmarks)
    ratios = []
    for p1, p2, p3, p4, p5, p6 in EYES:
        width = np.linalg.norm(pts[p1] - pts[p4])
        if not width > 0:
            return math.nan
        ratios.append((np.linalg.norm(pts[p2] - pts[p6]) + np.linalg.norm(pts[p3] - pts[p5])) / (2 * width))
    return float(np.mean(ratios))

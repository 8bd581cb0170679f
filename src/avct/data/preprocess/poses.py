"""Per-frame head poses and mouth boxes from the landmarks, interpolated over frames where the face was lost."""
from __future__ import annotations

import numpy as np

from ...errors import AvctError
from ...face.landmark_groups import MOUTH
from ...media import IMAGE_SIZE, MOUTH_MARGIN
from .report import Skip



def fill_gaps(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Linear interpolation over the frames where ``ok`` is False (ends hold the nearest value)."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(len(values), -1).copy()
    good = np.flatnonzero(ok)
    bad = np.flatnonzero(~np.asarray(ok))
    if good.size and bad.size:
        for c in range(flat.shape[1]):
            flat[bad, c] = np.interp(bad, good, flat[good, c])
    return flat.reshape(values.shape)


def mouth_box(points: np.ndarray) -> np.ndarray:
    """Square (x0, y0, x1, y1) around the 20 mouth landmarks, grown by MOUTH_MARGIN on each side and
    shifted (not cut) to stay inside the 256² image; right/bottom exclusive."""
    mouth = points[MOUTH]
    lo, hi = mouth.min(axis=0), mouth.max(axis=0)
    side = min(float(IMAGE_SIZE), max(8.0, (1 + 2 * MOUTH_MARGIN) * float(max(hi - lo))))
    side = int(round(side))
    centre = (lo + hi) / 2 + 0.5  # pixel-centre coordinates -> edge coordinates
    x0, y0 = (int(round(c - side / 2)) for c in centre)
    x0 = min(max(x0, 0), IMAGE_SIZE - side)
    y0 = min(max(y0, 0), IMAGE_SIZE - side)
    return np.array([x0, y0, x0 + side, y0 + side], dtype=np.int64)


def poses_and_mouth_boxes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 6) head poses and (T, 4) mouth boxes; frames without a face (or without a pose fit) get
    values interpolated from their neighbours."""
    from ...face.head_pose import estimate_head_pose

    count = len(landmarks)
    found = ~np.isnan(landmarks[:, 0, 0])
    poses = np.zeros((count, 6))
    boxes = np.zeros((count, 4))
    posed = found.copy()
    for i in np.flatnonzero(found):
        boxes[i] = mouth_box(landmarks[i])
        try:
            poses[i] = estimate_head_pose(landmarks[i])
        except AvctError:
            posed[i] = False
    if not posed.any():
        raise Skip("no head pose could be estimated on any frame")
    boxes = np.rint(fill_gaps(boxes, found)).astype(np.int64)
    return fill_gaps(poses, posed), boxes

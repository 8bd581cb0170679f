"""Face tracks and SyncNet face crops, following the reference SyncNet pipeline (``syncnet_python``).

The reference detects faces with S3FD on every frame, links them into tracks and crops each frame as
follows: box half-size ``bs = max(w, h) / 2`` and centre ``(x, y)`` median-filtered over 13 frames
(``scipy.signal.medfilt``, zero-padded ends — reproduced), frame padded by ``bsi = int(bs (1 + 2 cs))``
pixels of value 110, crop rows ``[y - bs, y + bs (1 + 2 cs))`` and columns ``[x - bs (1 + cs),
x + bs (1 + cs))`` with crop scale ``cs = 0.40`` (a square reaching down past the chin), resized to
224x224 with bilinear interpolation.

Differences, and why: faces come from the *front-end's* detector (dlib HOG + 68 landmarks,
:mod:`avct.face.landmarks`) — no S3FD weights ship offline, and using the same detector everywhere keeps
crops consistent with what the model saw. dlib's boxes are a little tighter than S3FD's, so crops are
slightly more zoomed-in than the reference's (SyncNet is trained with a margin and tolerates this, but
AVOff/AVConf are not bit-comparable with numbers from the reference pipeline). Detection may run every
``k`` frames; boxes in between are linearly interpolated before the median filter. A talking-head video
is one shot of one face, so there is a single track (the largest face); frames before the first or after
the last detection reuse the nearest one.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import signal

from ..face.landmark_groups import MOUTH
from ..media import MOUTH_MARGIN

__all__ = ["Track", "box_to_xys", "build_track", "crop_face", "crop_geometry", "mouth_square", "to_crop",
           "CROP_SCALE", "PAD_VALUE", "CROP_SIZE", "MEDIAN_KERNEL"]

CROP_SCALE = 0.40
PAD_VALUE = 110
CROP_SIZE = 224
MEDIAN_KERNEL = 13


@dataclass(frozen=True)
class Track:
    """Per-frame smoothed crop centre (x, y) and box half-size s, in frame pixels."""

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray
    detected: int  # frames with an actual detection
    mouth: np.ndarray | None = None  # (T, 4) mouth squares (x0, y0, x1, y1), pixel edges, interpolated

    def __len__(self) -> int:
        return len(self.x)


def box_to_xys(box: tuple[float, float, float, float]) -> tuple[float, float, float]:
    """(x0, y0, x1, y1) -> centre x, centre y, half-size max(w, h) / 2 (the reference's convention)."""
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2, (y0 + y1) / 2, max(y1 - y0, x1 - x0) / 2


def mouth_square(landmarks: np.ndarray, margin: float = MOUTH_MARGIN) -> np.ndarray:
    """Square (x0, y0, x1, y1) in pixel-edge coordinates around the 20 mouth landmarks, each side grown by
    ``margin`` x the larger extent — the training data's mouth box (D_sync crops), without rounding."""
    mouth = np.asarray(landmarks, dtype=np.float64)[MOUTH]
    lo, hi = mouth.min(0), mouth.max(0)
    side = max(8.0, (1 + 2 * margin) * float(max(hi - lo)))
    cx, cy = (lo + hi) / 2 + 0.5
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def build_track(boxes: dict[int, tuple[float, float, float, float]], n_frames: int,
                kernel: int = MEDIAN_KERNEL, landmarks: dict[int, np.ndarray] | None = None) -> Track | None:
    """Interpolate the detections over ``n_frames`` frames and median-filter them; None without any.

    With ``landmarks`` (frame -> (68, 2)), mouth squares are interpolated too (not median-filtered: the
    mouth moves on purpose).
    """
    frames = sorted(i for i in boxes if 0 <= i < n_frames)
    if not frames or n_frames <= 0:
        return None
    xys = np.array([box_to_xys(boxes[i]) for i in frames])
    t = np.arange(n_frames)
    cols = [np.interp(t, frames, xys[:, c]) for c in range(3)]
    k = min(kernel, n_frames if n_frames % 2 else n_frames - 1)
    if k >= 3:
        cols = [signal.medfilt(c, kernel_size=k) for c in cols]
    mouth = None
    lm_frames = sorted(i for i in (landmarks or {}) if 0 <= i < n_frames and landmarks[i] is not None)
    if lm_frames:
        squares = np.array([mouth_square(landmarks[i]) for i in lm_frames])
        mouth = np.stack([np.interp(t, lm_frames, squares[:, c]) for c in range(4)], axis=1)
    return Track(x=cols[0], y=cols[1], s=cols[2], detected=len(frames), mouth=mouth)


def crop_geometry(x: float, y: float, s: float, crop_scale: float = CROP_SCALE) -> tuple[int, int, int, int, int]:
    """(pad, row0, row1, col0, col1) of the reference crop in the padded frame."""
    bs = float(s)
    bsi = int(bs * (1 + 2 * crop_scale))
    my, mx = y + bsi, x + bsi
    return (bsi, int(my - bs), int(my + bs * (1 + 2 * crop_scale)), int(mx - bs * (1 + crop_scale)),
            int(mx + bs * (1 + crop_scale)))


def to_crop(box: np.ndarray, x: float, y: float, s: float, crop_scale: float = CROP_SCALE,
            size: int = CROP_SIZE) -> np.ndarray:
    """A (x0, y0, x1, y1) pixel-edge box of the frame in the coordinates of :func:`crop_face`'s output."""
    pad, r0, r1, c0, c1 = crop_geometry(x, y, s, crop_scale)
    sx, sy = size / max(c1 - c0, 1), size / max(r1 - r0, 1)
    b = np.asarray(box, dtype=np.float64)
    return np.array([(b[0] + pad - c0) * sx, (b[1] + pad - r0) * sy, (b[2] + pad - c0) * sx,
                     (b[3] + pad - r0) * sy])


def crop_face(frame: np.ndarray, x: float, y: float, s: float, crop_scale: float = CROP_SCALE,
              size: int = CROP_SIZE, pad_value: int = PAD_VALUE) -> np.ndarray:
    """The reference SyncNet crop of one frame (any channel order in, same order out), size x size."""
    bsi, r0, r1, c0, c1 = crop_geometry(x, y, s, crop_scale)
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), mode="constant", constant_values=pad_value)
    face = padded[max(r0, 0):r1, max(c0, 0):c1]
    if face.size == 0:  # a degenerate (zero-size) box: nothing to crop
        return np.full((size, size, frame.shape[2]), pad_value, dtype=frame.dtype)
    return cv2.resize(face, (size, size))

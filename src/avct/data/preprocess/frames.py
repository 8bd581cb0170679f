"""Pass 2 over a video: 25 fps frames by timestamp, cropped, resized to 256², streamed into ``frames.npy``,
with the speaker's 68 landmarks on every crop."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ...errors import AvctError
from ...media import IMAGE_SIZE
from .crop import CropChoice
from .report import Skip
from .scan import decoded_frames, open_video


MAX_LOST_FRACTION = 0.25  # skip a clip whose face is lost in more than a quarter of its frames
TRACK_MARGIN = 0.25       # per frame, the face centre must lie in the crop's face region grown by this
FLUSH_FRAMES = 500        # frames.npy is flushed to disk every this many frames (~100 MB)


def speaker_crops(path: Path, ticks: np.ndarray,
                  choice: CropChoice) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pass 2 as a stream: for each source frame that some 25 fps ticks use, in decoding order,
    ``(those ticks' indices, the 256² crop, the speaker's (68, 2) landmarks in it or NaN)``."""
    count = len(ticks)
    order = np.argsort(ticks, kind="stable")  # tick indices grouped by source frame
    last_needed = int(ticks[order[-1]])
    region = _face_region_in_crop(choice)
    container, stream, to_rgb = open_video(path)
    pos = 0
    with container:
        for j, (frame, _) in enumerate(decoded_frames(container, stream, path)):
            if pos < count and ticks[order[pos]] == j:
                end = pos
                while end < count and ticks[order[end]] == j:
                    end += 1
                crop = _crop(to_rgb(frame), choice.crop_box)
                yield order[pos:end], crop, _speaker_landmarks(crop, region)
                pos = end
            if j >= last_needed:
                break
    if pos < count:
        raise AvctError(f"cannot decode video {path}: the second pass ended after {pos} of {count} frames")


def write_frames(path: Path, target: Path, ticks: np.ndarray, choice: CropChoice, *,
                 progress: bool = False) -> np.ndarray:
    """Stream the 25 fps crops into ``target`` (.npy, memory-mapped); returns (T, 68, 2) landmarks
    in the 256² crop (NaN where the speaker's face was not found)."""
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    count = len(ticks)
    frames = open_memmap(target, mode="w+", dtype=np.uint8, shape=(count, IMAGE_SIZE, IMAGE_SIZE, 3))
    landmarks = np.full((count, 68, 2), np.nan, dtype=np.float64)
    done = lost = 0
    bar = tqdm(total=count, unit="frame", desc=path.stem[:30], leave=False, disable=not progress)
    crops = speaker_crops(path, ticks, choice)
    try:
        for indices, crop, points in crops:
            frames[indices] = crop
            landmarks[indices] = points
            lost += len(indices) * int(np.isnan(points[0, 0]))
            if (done + len(indices)) // FLUSH_FRAMES > done // FLUSH_FRAMES:
                frames.flush()  # written pages become clean: long clips do not pile up dirty RAM
            done += len(indices)
            bar.update(len(indices))
            if lost > MAX_LOST_FRACTION * count:  # no need to crop the rest: the clip is skipped
                raise lost_face(lost, count, early=True)
        frames.flush()
    finally:
        crops.close()  # closes the video when the clip is given up early
        bar.close()
        del frames
    return landmarks


def lost_face(lost: int, count: int, early: bool = False) -> Skip:
    """The skip reason of a clip whose speaker is missing from most of its crops."""
    amount = f"at least {lost}" if early else str(lost)
    return Skip(f"the face is lost in {amount} of {count} frames (more than {MAX_LOST_FRACTION:.0%}) "
                 "of the fixed crop")


def _crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Cut the fixed box and resize to 256²: INTER_AREA when shrinking (no aliasing in the training
    targets), bilinear when enlarging (as the official reference crop)."""
    left, top, right, bottom = box
    patch = rgb[top:bottom, left:right]
    shrink = patch.shape[0] > IMAGE_SIZE or patch.shape[1] > IMAGE_SIZE
    return cv2.resize(patch, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _to_crop(points: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Source pixels -> 256² crop pixels (pixel-centre convention, as crop_reference)."""
    left, top, right, bottom = box
    scale = np.array([IMAGE_SIZE / (right - left), IMAGE_SIZE / (bottom - top)])
    return (np.asarray(points, dtype=np.float64) - np.array([left, top]) + 0.5) * scale - 0.5


def _face_region_in_crop(choice: CropChoice) -> tuple[float, float, float, float]:
    """Where the speaker's face centre may be in the crop: the face region grown by TRACK_MARGIN."""
    (x0, y0), (x1, y1) = _to_crop(np.array(choice.face_box).reshape(2, 2), choice.crop_box)
    mx, my = TRACK_MARGIN * (x1 - x0), TRACK_MARGIN * (y1 - y0)
    return x0 - mx, y0 - my, x1 + mx, y1 + my


def _speaker_landmarks(crop: np.ndarray, region: tuple[float, float, float, float]) -> np.ndarray:
    """68 landmarks of the largest face whose centre lies in ``region``; NaN if there is none (another
    person walking through the crop is not the speaker).

    dlib's detector and predictor directly, not ``detect_faces``: in a 256² crop the speaker's face is
    ~100+ px, so its upsampled second attempt (4x the cost, on every frame without a face) cannot help,
    and only the chosen face needs landmarks.
    """
    from ...face.landmarks import DLIB_LOCK, _models

    detector, predictor = _models()
    x0, y0, x1, y1 = region
    with DLIB_LOCK:  # shared by the process, not thread-safe (avct.face.landmarks)
        rects = sorted(detector(crop, 0), key=lambda r: r.width() * r.height(), reverse=True)
        for r in rects:
            cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
            if x0 <= cx <= x1 and y0 <= cy <= y1:
                shape = predictor(crop, r)
                return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return np.full((68, 2), np.nan)

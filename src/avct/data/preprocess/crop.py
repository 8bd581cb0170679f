"""The fixed crop of a clip: which face is the speaker, and one crop box around it (the speaker rule of
:mod:`avct.data.preprocess`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .report import Skip
from .scan import Detection


MIN_FACE_FRACTION = 0.5   # a face in at least this fraction of the sampled frames
COMPARABLE_AREA = 0.5     # a second face with >= this fraction of the largest's area makes a frame ambiguous
MAX_AMBIGUOUS_FRACTION = 0.5
MAX_CENTRE_SHIFT = 1.0    # speaker: centre within this many median face sides of the median centre ...
SIZE_RATIO = 2.0          # ... and size within this factor of the median size
UNION_PERCENTILE = 10     # robust union of the speaker's boxes: 10th/90th percentile of each edge


@dataclass(frozen=True)
class CropChoice:
    """The clip's crop: ``crop_box`` in source pixels (right/bottom exclusive) and the face region
    ``face_box`` (robust union of the speaker's boxes) it was computed from."""

    crop_box: tuple[int, int, int, int]
    face_box: tuple[float, float, float, float]
    stats: dict[str, int]


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _side(box) -> float:
    return math.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def choose_crop(detections: list[Detection], height: int, width: int) -> CropChoice:
    """Apply the speaker rule (module docstring) and the official crop maths once for the whole clip."""
    from ...face.crop import crop_box

    n = len(detections)
    with_face = [d for d in detections if d.boxes]
    if not with_face:
        raise Skip(f"no face found (checked {n} frames)")
    if len(with_face) < MIN_FACE_FRACTION * n:
        raise Skip(f"no face in most frames (a face in {len(with_face)} of {n} checked frames)")
    ambiguous = sum(1 for d in with_face if len(d.boxes) > 1 and
                    _side(d.boxes[1]) ** 2 >= COMPARABLE_AREA * _side(d.boxes[0]) ** 2)
    if ambiguous > MAX_AMBIGUOUS_FRACTION * len(with_face):
        raise Skip(f"several faces of comparable size in {ambiguous} of {len(with_face)} frames with a face "
                    "(ambiguous speaker)")
    anchor = np.median([_centre(d.boxes[0]) for d in with_face], axis=0)
    size = float(np.median([_side(d.boxes[0]) for d in with_face]))
    speaker = []
    for d in with_face:
        near = [b for b in d.boxes if np.linalg.norm(_centre(b) - anchor) <= MAX_CENTRE_SHIFT * size
                and size / SIZE_RATIO <= _side(b) <= size * SIZE_RATIO]
        if near:
            speaker.append(min(near, key=lambda b: np.linalg.norm(_centre(b) - anchor)))
    if len(speaker) < MIN_FACE_FRACTION * n:
        raise Skip(f"the face does not stay in one place (the same face in only {len(speaker)} of {n} "
                    "checked frames); a fixed crop cannot follow it")
    boxes = np.asarray(speaker, dtype=np.float64)
    face_box = (float(np.percentile(boxes[:, 0], UNION_PERCENTILE)),
                float(np.percentile(boxes[:, 1], UNION_PERCENTILE)),
                float(np.percentile(boxes[:, 2], 100 - UNION_PERCENTILE)),
                float(np.percentile(boxes[:, 3], 100 - UNION_PERCENTILE)))
    box = crop_box(face_box, height, width)
    if box[2] - box[0] < 16 or box[3] - box[1] < 16:
        raise Skip(f"the face region {tuple(round(v) for v in face_box)} gives an unusable crop {box}")
    stats = {"checked_frames": n, "frames_with_face": len(with_face), "ambiguous_frames": ambiguous,
             "speaker_frames": len(speaker)}
    return CropChoice(tuple(int(v) for v in box), face_box, stats)

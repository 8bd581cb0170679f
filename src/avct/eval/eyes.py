"""Do the eyes blink? Blinks per minute and the deepest eye closure of a video, from dlib's landmarks.

Per frame the eye aspect ratio (:func:`avct.face.landmark_groups.eye_aspect_ratio`), divided by the
video's median (the eyes' open level, which differs between people and head poses; blinks are a few per
cent of the frames, so the median is the open eye). A blink starts when the ratio falls below
CLOSING (0.70) and ends when it is back above OPEN (0.75): the gap between the two keeps landmark jitter
around one threshold from counting twice. Blinks less than MERGE_S apart are one (a lid cannot reopen
and close again in two frames; dlib's reading flickers), and a closure longer than MAX_BLINK_S is not a
blink (eyes cast down, or closed on purpose). On real speakers' clips this finds their visible blinks
(6-30 per minute; one clip without any); on a still photo, none.

``deepest closure``: the lowest ratio over the video (1: the eyes never close; real blinks reach
0.3-0.6 of the open level).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..face.landmark_groups import eye_aspect_ratio

__all__ = ["eye_openness", "blink_events", "EyeStats", "eye_statistics"]

CLOSING = 0.70      # a blink starts below this fraction of the open eye's aspect ratio
OPEN = 0.75         # ... and ends above this one
MERGE_S = 0.08      # closures this close together are one blink
MAX_BLINK_S = 1.0   # a longer closure is not a blink


def eye_openness(landmarks: Sequence[np.ndarray | None]) -> np.ndarray:
    """Eye aspect ratio of each frame ÷ the sequence's median (NaN where a frame has no face)."""
    ratios = np.array([math.nan if lm is None else eye_aspect_ratio(lm) for lm in landmarks], np.float64)
    if not np.isfinite(ratios).any():
        return ratios
    open_level = float(np.nanmedian(ratios))
    return ratios / open_level if open_level > 0 else np.full_like(ratios, math.nan)


def blink_events(openness: np.ndarray, fps: float) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the blinks in an openness curve sampled at ``fps`` (see the module
    docstring). Frames without a face (NaN) neither start nor end a blink."""
    events: list[list[int]] = []
    start = None
    for i, value in enumerate(np.asarray(openness, np.float64)):
        if start is None and value < CLOSING:
            start = i
        elif start is not None and value > OPEN:
            events.append([start, i])
            start = None
    if start is not None:
        events.append([start, len(openness)])
    merged: list[list[int]] = []
    for a, b in events:
        if merged and (a - merged[-1][1]) / fps <= MERGE_S:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged if (b - a) / fps <= MAX_BLINK_S]


@dataclass(frozen=True)
class EyeStats:
    """Blinks of one video: count, per minute, and the deepest closure (None without faces)."""

    blinks: int
    per_minute: float | None
    deepest: float | None


def eye_statistics(landmarks: Sequence[np.ndarray | None], seconds: float) -> EyeStats:
    """Blinks of consecutive, evenly spaced frames' landmarks spanning ``seconds``."""
    openness = eye_openness(landmarks)
    if not np.isfinite(openness).any() or seconds <= 0:
        return EyeStats(0, None, None)
    events = blink_events(openness, len(openness) / seconds)
    return EyeStats(len(events), 60.0 * len(events) / seconds, float(np.nanmin(openness)))

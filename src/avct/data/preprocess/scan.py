"""Pass 1 over a video: every frame's timestamp, and face boxes on one frame every ``SAMPLE_INTERVAL_S``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...errors import AvctError
from ...media import FPS
from .report import Skip


SAMPLE_INTERVAL_S = 1.0   # face detection on one source frame per second for the crop ...
MIN_SAMPLES = 8           # ... but on at least this many frames per clip


@dataclass
class Detection:
    """The faces of one sampled source frame: boxes (x0, y0, x1, y1), largest first."""

    time: float
    boxes: list[tuple[float, float, float, float]]


@dataclass
class VideoScan:
    """Pass 1: every frame's time (seconds from the file's start, monotonic) and the sampled faces."""

    times: np.ndarray
    detections: list[Detection]
    width: int
    height: int

    @property
    def start(self) -> float:
        """Time of the first video frame: tick 0 (and audio sample 0 of the clip) is placed there, so a
        video stream that starts late does not begin with frozen frames."""
        return max(0.0, float(self.times[0]))

    def tick_sources(self, max_seconds: float | None = None) -> np.ndarray:
        """For each 25 fps tick, the index of the source frame nearest in time.

        Ticks run from the first frame to the end of the last one (its time + the typical frame
        duration), at most ``max_seconds`` long.
        """
        times = self.times
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / FPS
        end = times[-1] + max(step, 1e-3)
        count = max(0, math.ceil((end - self.start) * FPS - 1e-6))
        if max_seconds is not None:
            count = min(count, int(math.floor(max_seconds * FPS + 1e-6)))
        t = self.start + np.arange(count) / FPS
        right = np.clip(np.searchsorted(times, t), 0, len(times) - 1)
        left = np.clip(right - 1, 0, len(times) - 1)
        return np.where(np.abs(times[left] - t) <= np.abs(times[right] - t), left, right).astype(np.int64)


def open_video(path: Path):
    """(container, stream, converter): the file's first video stream with read_video's RGB conversion."""
    import av

    from ...video.pyav import sws_flags
    from ...video.reader import open_input

    container = open_input(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    reformatter = av.video.reformatter.VideoReformatter()
    flags = sws_flags()

    def to_rgb(frame) -> np.ndarray:
        return reformatter.reformat(frame, format="rgb24", interpolation=flags).to_ndarray()

    return container, stream, to_rgb


def decoded_frames(container, stream, path: Path) -> Iterator[tuple[Any, float]]:
    """(frame, time in seconds from the file's start); missing or non-increasing timestamps are
    replaced by the previous one + one nominal frame, so times are strictly increasing."""
    import av

    origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    nominal = 1.0 / float(rate) if rate else 1.0 / FPS
    previous: float | None = None
    try:
        for frame in container.decode(stream):
            t = frame.time
            t = (previous + nominal) if t is None else t - origin
            if previous is not None and t <= previous:
                t = previous + nominal
            previous = t
            yield frame, t
    except av.FFmpegError as e:
        raise AvctError(f"cannot decode video {path}: {' '.join(str(e).split())}") from None


def scan_video(path: Path, *, max_seconds: float | None, expected_seconds: float | None) -> VideoScan:
    """Pass 1: decode every frame (converting only the sampled ones) and detect faces on the samples."""
    from ...face.landmarks import detect_faces

    span = min(x for x in (expected_seconds, max_seconds, math.inf) if x)  # expected length to be sampled
    interval = min(SAMPLE_INTERVAL_S, span / MIN_SAMPLES) if math.isfinite(span) else SAMPLE_INTERVAL_S
    container, stream, to_rgb = open_video(path)
    times: list[float] = []
    detections: list[Detection] = []
    width = height = 0
    next_sample: float | None = None
    with container:
        for frame, t in decoded_frames(container, stream, path):
            if next_sample is None:
                next_sample = t
                width, height = frame.width, frame.height
            if max_seconds is not None and times and t > times[0] + max_seconds + 0.5:
                break  # past the kept span (plus a margin for the nearest-frame choice)
            times.append(t)
            if t >= next_sample - 1e-6 and (max_seconds is None or t < times[0] + max_seconds):
                faces = detect_faces(to_rgb(frame))
                detections.append(Detection(t, [f.box for f in faces]))
                next_sample += interval * max(1, math.floor((t - next_sample) / interval) + 1)
    if not times:
        raise Skip("the video stream holds no decodable frames")
    return VideoScan(np.asarray(times, dtype=np.float64), detections, width, height)

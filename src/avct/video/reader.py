"""Reading videos: probing (size, rate, frame count, durations) and decoding frames to RGB."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import AvctError
from .pyav import av_module, reason, speech_track, sws_flags


@dataclass(frozen=True)
class VideoInfo:
    """What tests, evaluation and preprocessing need to know about a video file (seconds, pixels)."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float            # the container's duration (the longest stream)
    video_duration: float
    codec: str
    pix_fmt: str | None
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_duration: float | None = None


def open_input(path: str | os.PathLike) -> Any:
    av = av_module()
    p = Path(path)
    if not p.is_file():
        raise AvctError(f"video file not found: {p}")
    try:
        container = av.open(str(p))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise AvctError(f"cannot read video {p}: {reason(e)}") from None
    if not container.streams.video:
        container.close()
        raise AvctError(f"{p} has no video stream")
    return container


def _stream_seconds(stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, frame count and durations of a video (header only, plus a packet scan
    when the container does not store a frame count)."""
    av = av_module()
    container = open_input(path)
    try:
        v = container.streams.video[0]
        rate = v.average_rate or v.guessed_rate or v.base_rate
        fps = float(rate) if rate else 0.0
        frames = v.frames
        audio = speech_track(container)
        audio_duration = _stream_seconds(audio) if audio is not None else None
        if not frames:
            frames = sum(1 for p in container.demux(v) if p.size)
        video_duration = _stream_seconds(v)
        if video_duration is None:
            video_duration = frames / fps if fps else 0.0
        if container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = max(video_duration, audio_duration or 0.0)
        cc = v.codec_context
        return VideoInfo(
            path=Path(path), width=cc.width, height=cc.height, fps=fps, frame_count=int(frames),
            duration=float(duration), video_duration=float(video_duration), codec=cc.name,
            pix_fmt=cc.pix_fmt, has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
            audio_duration=audio_duration,
        )
    except av.FFmpegError as e:
        raise AvctError(f"cannot read video {path}: {reason(e)}") from None
    finally:
        container.close()


def read_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of a video's first video stream as (H, W, 3) uint8 RGB arrays.

    The file is opened immediately (a missing or unreadable file raises :class:`AvctError` here,
    not at the first ``next()``); frames are decoded one at a time, so memory stays constant.
    Conversion to RGB uses the frame's colour tags (BT.601 if untagged) with accurate, full-resolution
    chroma upsampling — slightly different from (and closer to the source than) swscale's defaults.
    """
    container = open_input(path)
    return _frames(container, Path(path))


def _frames(container: Any, path: Path) -> Iterator[np.ndarray]:
    av = av_module()
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        reformatter = av.video.reformatter.VideoReformatter()
        flags = sws_flags()
        for frame in container.decode(stream):
            yield reformatter.reformat(frame, format="rgb24", interpolation=flags).to_ndarray()
    except av.FFmpegError as e:
        raise AvctError(f"cannot decode video {path}: {reason(e)}") from None
    finally:
        container.close()

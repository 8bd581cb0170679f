"""PyAV, imported lazily, and what the reader and the writer both need from it."""
from __future__ import annotations

from typing import Any

from ..errors import AvctError


def av_module() -> Any:
    """Import PyAV lazily so that ``import avct`` stays cheap and a missing wheel is a clear error."""
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a hard dependency
        raise AvctError(f"PyAV (the 'av' package) is required for video I/O: {e}") from None
    return av


def reason(e: BaseException) -> str:
    """One line describing an FFmpeg/OS error (without the file name PyAV likes to repeat)."""
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())


def sws_flags() -> int:
    """swscale flags for RGB <-> yuv420p: exact rounding and full-resolution chroma interpolation.

    The defaults replicate chroma horizontally on the way back to RGB, which costs ~10 dB of PSNR
    on smooth colour gradients; these cost little and make a decode round trip ~50 dB.
    """
    I = av_module().video.reformatter.Interpolation
    return int(I.BICUBIC | I.ACCURATE_RND | I.FULL_CHR_H_INT | I.FULL_CHR_H_INP)


def speech_track(container: Any) -> Any:
    """The audio track avct listens to in a file with several (FFmpeg's pick: the default track, else the
    best one; None without audio). The lips follow it, the video carries it, the server bounds its
    length and ``probe_video`` reports it, so all of them choose it here, once."""
    return container.streams.best("audio")

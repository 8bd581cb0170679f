"""The audio track of an output video: the speech track of any file PyAV reads, decoded by the one
decoding loop (:class:`avct.audio.decode.StreamFrames`), resampled for AAC, handed out frame by frame."""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from ..errors import AvctError
from .pyav import av_module, reason, speech_track

log = logging.getLogger(__name__)

# Sample rates the AAC encoder accepts; anything else is resampled to the nearest sensible one.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _aac_rate(rate: int) -> int:
    """Keep an AAC-legal rate; otherwise 48 kHz above it, else the closest legal rate at or above."""
    if rate in _AAC_RATES:
        return rate
    if rate > 48000:
        return 48000
    return min(r for r in _AAC_RATES if r >= rate) if rate >= 7350 else 7350


class AudioFeed:
    """The speech track (:func:`avct.video.pyav.speech_track`) of any file PyAV can read, decoded lazily
    and resampled for AAC.

    Opening decodes up to the first samples, so an unreadable, empty or track-less file fails
    *before* any (expensive) frame has been generated.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        av = av_module()
        self.path = Path(path)
        if not self.path.is_file():
            raise AvctError(f"audio file not found: {self.path}")
        try:
            self._container = av.open(str(self.path), metadata_errors="replace")  # as avct.audio.decode reads it
        except (av.FFmpegError, OSError, ValueError) as e:
            raise AvctError(f"cannot read audio {self.path}: {reason(e)}") from None
        try:
            self._stream = speech_track(self._container)
            if self._stream is None:
                raise AvctError(f"{self.path} has no audio track")
            self._decoded = self._decode()
            first = next(self._decoded, None)
            if first is None:
                raise AvctError(f"audio {self.path} contains no decodable audio samples")
        except BaseException:
            self.close()
            raise
        self.input_rate = first.sample_rate
        self.rate = _aac_rate(first.sample_rate)
        self.layout = "mono" if len(first.layout.channels) == 1 else "stereo"
        self._pending: list[Any] = [first]
        self._resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        self.samples_in = 0   # decoded input samples (at input_rate)
        self.samples_out = 0  # resampled samples handed out (at self.rate)
        self.exhausted = False

    def _decode(self) -> Iterator[Any]:
        """Decoded frames with samples, by the one decoding loop (:class:`avct.audio.decode.StreamFrames`)."""
        from ..audio.decode import StreamFrames

        frames = StreamFrames(self._container, self._stream)
        yield from (frame for frame in frames if frame.samples)
        if frames.bad:
            log.warning("skipped %d corrupt audio packet(s) in %s", frames.bad, self.path)

    @property
    def seconds_out(self) -> float:
        return self.samples_out / self.rate

    def next_frames(self) -> list[Any]:
        """The next resampled fltp frames (pts in samples); [] once everything was handed out."""
        if self.exhausted:
            return []
        frame = self._pending.pop() if self._pending else next(self._decoded, None)
        if frame is None:
            self.exhausted = True
            out = self._resampler.resample(None)
        else:
            self.samples_in += frame.samples
            frame.pts = None  # timestamps are re-derived from the sample count: no gaps, no overlaps
            try:
                out = self._resampler.resample(frame)
            except ValueError as e:  # PyAV: the rate/layout/format changed in the middle of the file
                raise AvctError(f"cannot convert audio {self.path}: {reason(e)}") from None
        for f in out:
            f.pts = self.samples_out
            f.time_base = Fraction(1, self.rate)
            self.samples_out += f.samples
        return out

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            self._container = None
            try:
                container.close()
            except Exception:
                pass

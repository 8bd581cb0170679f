"""Writing the talking-head videos: H.264 + AAC mp4, streamed and atomic.

Why it looks like this:

* Frames are encoded as they arrive (a generator can produce hours of video in constant memory),
  and the audio track is decoded, resampled and AAC-encoded *alongside* them, so the mp4 is properly
  interleaved in one pass — the in-process equivalent of the official
  ``ffmpeg -i video.mp4 -i audio.wav -vcodec copy out.mp4`` step, without a system ffmpeg.
* The audio is never cut: the mp4 lasts as long as the audio (the caller writes one frame per 40 ms,
  so video and audio agree within one frame).
* Nothing appears at the output path (or the PNG frame folder) unless everything succeeded; an
  exception or Ctrl-C leaves no partial file behind (:func:`avct.io_utils.atomic_path`).
* If this PyAV build lacks an AAC encoder, the video is written alone and the bundled
  imageio-ffmpeg binary muxes the audio in.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import AvctError
from ..io_utils import atomic_path, chmod_default, replace_folder
from ..media import FPS
from .audio_feed import AudioFeed
from .pyav import av_module, reason, sws_flags

__all__ = ["VideoWriter", "write_video", "check_output_name"]

log = logging.getLogger(__name__)

# x264's "veryfast" at CRF 16 rather than its default "medium" at CRF 18: on talking-head frames (a still
# background) it encodes much faster (on large frames medium took a good share of the renderer's time)
# and, with the lower CRF, keeps the face as sharp (Laplacian variance on the face, generated / real;
# veryfast at CRF 18 was less sharp), for somewhat larger files. Measured in docs/performance.md
# ("Rendering beside writing").
DEFAULT_CRF = 16
DEFAULT_PRESET = "veryfast"
DEFAULT_AUDIO_BITRATE = 128_000
DURATION_TOLERANCE_FRAMES = 2  # picture and sound this many frames apart or less: normal rounding, no notice
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")

_PNG_NAME = re.compile(r"^\d{6,}\.png$")
_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov")  # what generate and batch write (H.264 + AAC players accept)


def check_output_name(path: str | os.PathLike) -> None:
    """AvctError unless ``path`` names an .mp4 (or .m4v/.mov) file."""
    if not str(path).lower().endswith(OUTPUT_SUFFIXES):
        raise AvctError(f"output must be an .mp4 file, got {path}")


def _fps_fraction(fps: float | Fraction) -> Fraction:
    """25.0 -> 25, 29.97.. -> 30000/1001: the container needs an exact rational frame rate."""
    try:
        f = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a positive number, got {fps!r}") from None
    if f <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return f


def pyav_can_encode_aac() -> bool:
    """Whether this PyAV build carries an AAC encoder (else the ffmpeg binary does the audio)."""
    try:
        av_module().codec.Codec("aac", "w")
    except Exception:
        return False
    return True


def _ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:
        raise AvctError(f"no AAC encoder in PyAV and no usable imageio-ffmpeg binary: {reason(e)}") from None


# ---- writing -------------------------------------------------------------------------------------


def _as_rgb_frame(frame: Any) -> np.ndarray:
    """An (H, W, 3) uint8 C-contiguous array, or a ValueError saying what is wrong."""
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"video frames must be (H, W, 3) RGB arrays, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _pad_even(arr: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: repeat the last row/column instead of cropping content away."""
    h, w = arr.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return arr
    return np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _check_frames_dir(target: Path) -> None:
    """Refuse to replace anything but a previous frame dump (never wipe a user's folder)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise AvctError(f"frames directory {target} exists and is not a directory")
    foreign = [p.name for p in target.iterdir() if not _PNG_NAME.match(p.name)]
    if foreign:
        raise AvctError(f"frames directory {target} contains other files (e.g. {foreign[0]}); "
                        "choose an empty or new directory")


def _commit_dir(tmp: Path, target: Path) -> None:
    """Move the finished frame folder into place, replacing an earlier frame dump if there is one."""
    _check_frames_dir(target)
    replace_folder(tmp, target)


class VideoWriter:
    """Stream RGB frames into an H.264 (yuv420p) mp4 with the original audio as AAC, atomically.

    >>> with VideoWriter("out.mp4", fps=25, audio_path="speech.wav") as w:   # doctest: +SKIP
    ...     for frame in frames:
    ...         w.write(frame)

    * ``audio_path`` is opened (and its first samples decoded) in the constructor, so a bad audio
      file raises :class:`AvctError` before any frame is produced. ``None`` writes a silent video.
    * Frames must be (H, W, 3) uint8 RGB, all the same size. Odd sizes are padded to even by
      repeating the last row/column (yuv420p requirement); the PNG dump keeps the original size.
    * ``frames_dir``: every frame is also saved losslessly as ``000000.png``, ``000001.png``, ...
      into a hidden temporary folder beside it, which replaces ``frames_dir`` only on success. An
      existing ``frames_dir`` may only hold an earlier frame dump (it is replaced as a whole). The
      folder is moved into place just before the mp4, so a successful run always has both.
    * Leaving the ``with`` block normally finalises (``close()``); an exception — from the block or
      from ``write()`` itself, KeyboardInterrupt included — discards everything (``abort()``).
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction = FPS,
                 audio_path: str | os.PathLike | None = None, frames_dir: str | os.PathLike | None = None,
                 *, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET,
                 audio_bitrate: int = DEFAULT_AUDIO_BITRATE) -> None:
        self.path = Path(path)
        self.fps = _fps_fraction(fps)
        self.audio_path = Path(audio_path) if audio_path is not None else None
        self.frames_dir = Path(frames_dir) if frames_dir is not None else None
        self.crf = int(crf)
        self.preset = str(preset)
        if self.preset not in X264_PRESETS:
            raise AvctError(f"unknown x264 preset {self.preset!r}; choose one of {', '.join(X264_PRESETS)}")
        if not 0 <= self.crf <= 51:
            raise AvctError(f"crf must be between 0 (lossless) and 51, got {self.crf}")
        self.audio_bitrate = int(audio_bitrate)
        self.frames_written = 0
        self._format = _CONTAINER_FORMATS.get(self.path.suffix.lower(), "mp4")
        self._closed = False
        self._aborted = False
        self._audio_flushed = False
        self._atomic: Any = None
        self._tmp: Path | None = None
        self._frames_tmp: Path | None = None
        self._video_only_tmp: Path | None = None
        self._audio: AudioFeed | None = None
        self._container: Any = None
        self._vstream: Any = None
        self._astream: Any = None
        self._shape: tuple[int, int] | None = None
        self._reformatter: Any = None  # one swscale context for all frames (creating one per frame is slow)
        self._ffmpeg_mux = self.audio_path is not None and not pyav_can_encode_aac()
        try:
            if self.path.is_dir():
                raise AvctError(f"output {self.path} is a directory")
            if self.frames_dir is not None:
                _check_frames_dir(self.frames_dir)
            if self.audio_path is not None:
                self._audio = AudioFeed(self.audio_path)
                if self._ffmpeg_mux:  # validated; the ffmpeg binary reads it again at the end
                    self._audio.close()
                    self._audio = None
            self._atomic = atomic_path(self.path, suffix=self.path.suffix or ".mp4")
            self._tmp = self._atomic.__enter__()
            if self.frames_dir is not None:
                self.frames_dir.parent.mkdir(parents=True, exist_ok=True)
                self._frames_tmp = Path(tempfile.mkdtemp(prefix=f".{self.frames_dir.name}.", suffix=".tmp",
                                                         dir=self.frames_dir.parent))
        except BaseException:
            self.abort()
            raise

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temporary files behind.
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:
                pass

    # -- writing -----------------------------------------------------------------------------------
    def _open_container(self, height: int, width: int) -> None:
        av = av_module()
        options = {"movflags": "+faststart"} if self._format in ("mp4", "mov") else {}
        target = self._tmp
        if self._ffmpeg_mux:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.video.", suffix=".mp4", dir=self.path.parent)
            os.close(fd)
            self._video_only_tmp = target = Path(name)
        self._container = av.open(str(target), "w", format=self._format, container_options=options)
        vs = self._container.add_stream("libx264", rate=self.fps)
        vs.width, vs.height, vs.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
        vs.options = {"crf": str(self.crf), "preset": self.preset}
        cc = vs.codec_context
        # Tag the conversion write() does (BT.601, limited range) so players convert back correctly.
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 6, 6, 6, 1
        self._vstream = vs
        if self._audio is not None:
            a = self._container.add_stream("aac", rate=self._audio.rate)
            a.layout = self._audio.layout
            a.codec_context.bit_rate = self.audio_bitrate
            self._astream = a

    def _mux(self, packets: Iterable[Any]) -> None:
        for p in packets:
            self._container.mux(p)

    def _pump_audio(self, until: float | None) -> None:
        """Encode audio up to ``until`` seconds (None: all of it) to keep the mp4 interleaved."""
        src = self._audio
        if src is None:
            return
        while not src.exhausted and (until is None or src.seconds_out < until):
            for f in src.next_frames():
                self._mux(self._astream.encode(f))
        if src.exhausted and not self._audio_flushed:
            self._mux(self._astream.encode(None))  # ends the audio stream now, not at close()
            self._audio_flushed = True

    def write(self, frame: Any) -> None:
        """Append one (H, W, 3) uint8 RGB frame. Any error discards the whole output."""
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        try:
            arr = _as_rgb_frame(frame)
            h, w = arr.shape[:2]
            if self._shape is None:
                self._open_container(h, w)
                self._shape = (h, w)
            elif (h, w) != self._shape:
                raise ValueError(f"frame {self.frames_written} is {h}x{w}, "
                                 f"but the video is {self._shape[0]}x{self._shape[1]}")
            if self._frames_tmp is not None:
                from PIL import Image

                # compress_level=1: lossless either way, and much faster than the default 6.
                Image.fromarray(arr, "RGB").save(self._frames_tmp / f"{self.frames_written:06d}.png",
                                                 compress_level=1)
            av = av_module()
            if self._reformatter is None:
                self._reformatter = av.video.reformatter.VideoReformatter()
            vf = av.VideoFrame.from_ndarray(_pad_even(arr), format="rgb24")
            vf = self._reformatter.reformat(vf, format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG",
                                            interpolation=sws_flags())
            vf.pts = self.frames_written
            vf.time_base = 1 / self.fps
            self._mux(self._vstream.encode(vf))
            self.frames_written += 1
            self._pump_audio(self.frames_written / float(self.fps))
        except BaseException as e:
            self.abort()
            self._raise_encoding_error(e)
            raise

    def close(self) -> Path:
        """Flush the encoders, add the rest of the audio, and move the result into place."""
        if self._aborted:
            raise ValueError("close() on a VideoWriter that was aborted after an error; nothing was written")
        if self._closed:
            return self.path
        try:
            if self.frames_written == 0:
                raise AvctError(f"no video frames were written; {self.path} was not created")
            self._mux(self._vstream.encode(None))
            if self._audio is not None:
                self._pump_audio(None)
                self._check_durations()
            self._container.close()
            self._container = None
            if self._ffmpeg_mux:
                self._mux_with_ffmpeg()
            if self._frames_tmp is not None:
                chmod_default(self._frames_tmp, directory=True)
                _commit_dir(self._frames_tmp, self.frames_dir)
                self._frames_tmp = None
            self._release_audio()
            self._atomic.__exit__(None, None, None)  # os.replace onto the target
            self._atomic = None
            self._closed = True
        except BaseException as e:
            self.abort()
            self._raise_encoding_error(e)
            raise
        return self.path

    def abort(self) -> None:
        """Discard everything written so far; the output path and frames_dir stay untouched."""
        if self._closed and not self._aborted:
            return  # already finalised successfully
        self._closed = self._aborted = True
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except BaseException:
                pass
        self._release_audio()
        if self._frames_tmp is not None:
            shutil.rmtree(self._frames_tmp, ignore_errors=True)
            self._frames_tmp = None
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            err = _Discarded()
            atomic.__exit__(type(err), err, None)  # atomic_path removes its temporary file
        self._remove_video_only_tmp()

    # -- helpers -----------------------------------------------------------------------------------
    def _raise_encoding_error(self, e: BaseException) -> None:
        """FFmpeg failures (bad preset, disk full, ...) and failed writes of Python's (the PNG frames, a
        file object) become one-line AvctErrors; others pass."""
        if isinstance(e, av_module().FFmpegError):
            raise AvctError(f"cannot write video {self.path}: {reason(e)}") from None
        if isinstance(e, OSError) and e.errno is not None:
            raise AvctError(f"cannot write video {self.path}: {e.strerror or e}") from None

    def _release_audio(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        self._remove_video_only_tmp()

    def _remove_video_only_tmp(self) -> None:
        if self._video_only_tmp is not None:
            self._video_only_tmp.unlink(missing_ok=True)
            self._video_only_tmp = None

    def _check_durations(self) -> None:
        """A notice when the picture and the sound end far apart. Up to two frames apart is the normal
        rounding of one frame per 40 ms (the speech features of a last partial frame need a full
        25 ms window, so a generated video may end up to ~65 ms before its audio): no notice."""
        video = self.frames_written / float(self.fps)
        audio = self._audio.samples_in / self._audio.input_rate
        if abs(video - audio) <= DURATION_TOLERANCE_FRAMES / float(self.fps) + 1e-6:
            return
        from ..errors import notice

        if video < audio:
            notice(f"{self.path}: the picture ({video:.2f} s) ends {audio - video:.2f} s before the sound "
                   f"({audio:.2f} s); players show the last frame until the sound ends")
        else:
            notice(f"{self.path}: the picture ({video:.2f} s) runs {video - audio:.2f} s past the end of the "
                   f"sound ({audio:.2f} s); the end is silent")

    def _mux_with_ffmpeg(self) -> None:
        """Fallback when PyAV has no AAC encoder: copy the video, encode the audio with ffmpeg."""
        cmd = [_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-i", str(self._video_only_tmp), "-i", str(self.audio_path),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
               "-b:a", str(self.audio_bitrate), "-f", self._format]
        if self._format in ("mp4", "mov"):
            cmd += ["-movflags", "+faststart"]
        cmd.append(str(self._tmp))
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            raise AvctError(f"ffmpeg could not add the audio of {self.audio_path}: "
                            f"{lines[-1] if lines else f'exit status {proc.returncode}'}")


class _Discarded(Exception):
    """Handed to atomic_path's exit to make it delete its temporary file."""


def write_video(path: str | os.PathLike, frames: Iterable[Any], fps: float | Fraction = FPS,
                audio_path: str | os.PathLike | None = None, frames_dir: str | os.PathLike | None = None,
                **options: Any) -> Path:
    """Write an iterable of RGB frames (consumed lazily) with :class:`VideoWriter`; return the path."""
    with VideoWriter(path, fps=fps, audio_path=audio_path, frames_dir=frames_dir, **options) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)

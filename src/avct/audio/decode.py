"""Audio input of any common format, offline, without a system ffmpeg.

Why two routes: the official entry point reads WAVs with ``scipy.io.wavfile`` and uses a 16 kHz file's
samples as they are (with an odd stereo heuristic), but shells out to
``ffmpeg -y -i IN -async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000 OUT`` for every other rate. We copy both:

* 16 kHz WAV (any PCM/float sample type scipy reads) → the samples directly; for multi-channel files the
  official choice "channel 1 if min(channel 0) <= 0 else channel 0" (parity fixture ``feat41_16k_stereo``).
* everything else (other rates, flac, mp3, m4a/aac, ogg, the audio track of a video, WAV codecs scipy
  cannot read) → PyAV decode + an ``aresample → aformat(s16, mono, 16000)`` filter graph, i.e. ffmpeg's
  own swresample, as the ffmpeg CLI builds it. We pin swresample's internal sample format to what ffmpeg
  5.1 (the golden's version) chose — s16p for ≤ 16-bit input — and emulate ``-async 1`` (timestamps
  shifted by the file's start time, silence padded where a stream starts late). That reproduces the
  golden ``wav44k_after_ffmpeg_16k_int16`` bit-exactly (PyAV's default resampler: up to 2 LSB off).
* ``.raw`` / ``.pcm`` → headerless 16 kHz mono s16le (PyAV cannot sniff these).

Scale of the result: float64 on the **int16 scale** (±32768). Resampled audio is the s16 signal itself; a
16 kHz int16 WAV is its samples unchanged; other 16 kHz WAV sample types are rescaled linearly to that
scale (float × 32768, int32 / 65536, 24-bit as scipy returns it / 65536, uint8 (x − 128) × 256) without
re-quantising. The feature code removes the mean and peak-normalises, so a linear scale never changes the
features; pocketsphinx needs the int16 scale.
"""
from __future__ import annotations

import errno
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import AvctError
from ..limits import LIMITS, audio_too_long, check_audio_seconds
from ..media import SAMPLE_RATE
from ..video.pyav import speech_track

RAW_SUFFIXES = frozenset({".raw", ".pcm"})
# Plausible source rates: 4 kHz (below any speech codec) to 768 kHz (the highest rate real ADCs use).
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 4000, 768_000
# Shortest input that still yields one 40 ms video frame of features: the features need 4 rows of
# 10 ms, and python_speech_features gives 1 + ceil((N - 400) / 160) rows → N >= 721 samples (45 ms).
MIN_SAMPLES = 721


@dataclass(frozen=True)
class DecodedAudio:
    """Mono 16 kHz audio on the int16 scale (float64), plus what the source looked like."""

    samples: np.ndarray
    source_rate: int
    source_channels: int
    sample_rate: int = SAMPLE_RATE
    route: str = "resampled"  # "wav16k" (samples used as they are), "resampled" (swresample) or "raw"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def load_audio(path: str | Path, *, max_seconds: float | None = None) -> DecodedAudio:
    """Decode any common audio (or video's audio track) to mono 16 kHz exactly as the official code does.

    Raises AvctError (one line naming the file) for a missing/empty/corrupt file, no audio stream, an
    absurd sample rate, silent audio, audio shorter than one video frame, or longer than ``max_seconds``
    (default: :data:`avct.limits.LIMITS`; checked on the length the file declares before decoding, and
    on the samples while they are decoded, so memory stays bounded whatever the header says).
    """
    path = Path(path)
    limit = LIMITS.max_audio_s if max_seconds is None else max_seconds
    _check_file(path)
    try:
        if path.suffix.lower() in RAW_SUFFIXES:
            check_audio_seconds(path.stat().st_size / (2 * SAMPLE_RATE), str(path), limit)
            audio = _read_raw(path)
        else:
            check_audio_seconds(audio_seconds_from_header(path), str(path), limit)
            audio = _read_wav16k(path) if _looks_like_wav(path) else None
            if audio is None:
                audio = _decode_with_pyav(path, limit)
    except OSError as e:  # unreadable (permissions, I/O error); PyAV's own errors are handled inside
        raise AvctError(f"cannot read audio file {path}: {e.strerror or e}") from None
    check_audio_seconds(audio.duration_s, str(path), limit)
    _check_content(path, audio.samples)
    return audio


def audio_seconds_from_header(path: Path) -> float | None:
    """The audio's duration as its container declares it, without decoding; None when unknown
    (e.g. a browser's MediaRecorder webm) or unreadable (decoding then reports why)."""
    import av

    try:
        with av.open(str(path), metadata_errors="replace") as container:
            stream = speech_track(container)
            if stream is None:
                return None
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except (av.FFmpegError, OSError, ValueError):
        return None
    return None


# ---------------------------------------------------------------------------------------------------
# file-level checks


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AvctError(f"audio file not found: {path}")
    if path.is_dir():
        raise AvctError(f"audio path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise AvctError(f"audio file is empty (0 bytes): {path}")


def _check_rate(path: Path, rate: int) -> None:
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise AvctError(f"audio file {path} declares an absurd sample rate of {rate} Hz (expected "
                        f"{MIN_SOURCE_RATE}..{MAX_SOURCE_RATE} Hz); the header is probably corrupt")


def _check_content(path: Path, samples: np.ndarray) -> None:
    """Reject what the features cannot handle: no samples, too short, constant (peak-norm divides by 0)."""
    n = len(samples)
    if n == 0:
        raise AvctError(f"audio file {path} contains no audio samples")
    if not np.isfinite(samples).all():  # a float WAV can hold NaN or infinity: every feature would be NaN
        raise AvctError(f"audio file {path} holds samples that are not numbers (NaN or infinity)")
    if n < MIN_SAMPLES:
        raise AvctError(f"audio file {path} is too short ({1000 * n / SAMPLE_RATE:.1f} ms); at least "
                        f"{1000 * MIN_SAMPLES / SAMPLE_RATE:.0f} ms are needed for one 40 ms video frame")
    if np.ptp(samples) == 0:
        raise AvctError(f"audio file {path} is silent (all samples equal); nothing to animate")


# ---------------------------------------------------------------------------------------------------
# route 1: 16 kHz WAV read with scipy, as the official code does


def _looks_like_wav(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE"


def _read_wav16k(path: Path) -> DecodedAudio | None:
    """The official 16 kHz route; None when the file must go through the ffmpeg route instead.

    A WAV scipy cannot parse also returns None: PyAV may still decode it (e.g. mu-law, ADPCM), and if it
    cannot either, that route reports the corrupt header.
    """
    import scipy.io.wavfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # WavFileWarning for unknown chunks (LIST, bext, ...)
            rate, data = scipy.io.wavfile.read(path)
    except Exception:  # scipy raises ValueError, UnboundLocalError, struct.error, ... on bad headers
        return None
    _check_rate(path, int(rate))
    if rate != SAMPLE_RATE:
        return None
    channels = 1 if data.ndim == 1 else data.shape[1]
    if data.ndim == 2:
        data = _official_channel_choice(data)
    return DecodedAudio(_to_int16_scale(data), source_rate=int(rate), source_channels=channels,
                        route="wav16k")


def _official_channel_choice(data: np.ndarray) -> np.ndarray:
    """Official mono selection for multi-channel input read directly: channel 1 if min(ch0) <= 0 else ch0."""
    if data.shape[1] < 2 or data.shape[0] == 0:
        return data[:, 0]
    return data[:, 1] if np.min(data[:, 0]) <= 0 else data[:, 0]


def _to_int16_scale(data: np.ndarray) -> np.ndarray:
    """Linear rescale of scipy's sample types to the int16 scale, float64, no re-quantisation."""
    if data.dtype == np.int16:
        return data.astype(np.float64)
    if data.dtype == np.uint8:
        return (data.astype(np.float64) - 128.0) * 256.0
    if data.dtype == np.int32:  # 32-bit, and 24-bit which scipy returns left-justified in int32
        return data.astype(np.float64) / 65536.0
    if data.dtype == np.int64:
        return data.astype(np.float64) / float(1 << 48)
    if np.issubdtype(data.dtype, np.floating):
        with np.errstate(all="ignore"):  # NaN / huge values: refused by _check_content, without numpy's warnings
            return data.astype(np.float64) * 32768.0
    raise AvctError(f"unsupported WAV sample type {data.dtype}")


# ---------------------------------------------------------------------------------------------------
# route 2: PyAV (ffmpeg libraries) for everything else


def _decode_with_pyav(path: Path, max_seconds: float = LIMITS.max_audio_s) -> DecodedAudio:
    """Decode the best audio stream and convert like ``ffmpeg -async 1 -ac 1 -ar 16000 -acodec pcm_s16le``."""
    import av

    try:
        container = av.open(str(path), metadata_errors="replace")  # tags in a broken encoding are no reason to fail
    except av.FFmpegError as e:
        reason = _wav_header_problem(path) if _looks_like_wav(path) else None
        raise AvctError(f"cannot read audio file {path}: "
                        f"{reason or 'unrecognised format or corrupt header'} "
                        f"({_ffmpeg_reason(e)})") from None
    with container:
        stream = speech_track(container)
        if stream is None:
            kind = "video file" if container.streams.video else "file"
            raise AvctError(f"{kind} {path} has no audio stream")
        if stream.codec_context is None:  # a codec this FFmpeg does not know
            raise AvctError(f"cannot decode the audio of {path}: unknown codec")
        rate = int(stream.codec_context.sample_rate or 0)
        _check_rate(path, rate)
        channels = stream.codec_context.layout.nb_channels
        start = _start_offset(container, stream)
        try:
            chunks = _decode_stream(path, container, stream, start, max_seconds)
        except av.FFmpegError as e:  # a layout or format the resampler refuses (e.g. 137 channels)
            raise AvctError(f"cannot decode the audio of {path}: {_ffmpeg_reason(e)}") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return DecodedAudio(samples.astype(np.float64), source_rate=rate, source_channels=channels)


def _start_offset(container, stream) -> int:
    """The file's start time in stream ticks: the ffmpeg CLI shifts all timestamps by it (no -copyts)."""
    if container.start_time is None or stream.time_base is None:
        return 0
    return int(round(Fraction(container.start_time, 1_000_000) / stream.time_base))


def _decode_stream(path: Path, container, stream, start: int,
                   max_seconds: float = LIMITS.max_audio_s) -> list[np.ndarray]:
    """Demux only this stream (video packets are skipped, not decoded), resample, collect int16 chunks.

    Undecodable packets are skipped as the ffmpeg CLI does; a stream with none decodable is an error;
    decoding stops with an error as soon as more than ``max_seconds`` are decoded.
    """
    max_samples = int(max_seconds * SAMPLE_RATE)
    decoded = 0
    chunks: list[np.ndarray] = []
    converter: _Converter | None = None
    frames = StreamFrames(container, stream)
    for frame in frames:
        if frame.pts is not None:
            frame.pts -= start
        if converter is None or not converter.accepts(frame):
            if converter is not None:  # format change mid-stream: flush, start a new graph
                chunks += converter.flush()
            converter = _Converter(frame)
        new = converter.push(frame)
        chunks += new
        decoded += sum(len(c) for c in new)
        if decoded > max_samples:  # a stream that declared no length (or a wrong one): stop here
            raise audio_too_long(str(path), f"more than {max_seconds:g} s", max_seconds)
    if converter is not None:
        chunks += converter.flush()
    if frames.decoded == 0 and frames.bad > 0:
        raise AvctError(f"cannot decode the audio of {path}: all {frames.bad} packets are corrupt")
    return chunks


class StreamFrames:
    """The decoded frames of one audio stream, as the ffmpeg CLI reads them: only this stream is demuxed,
    an undecodable packet is skipped (``bad`` counts them, ``decoded`` the frames) and a read error (a
    truncated file) ends the stream. The one decoding loop of avct: the speech the lips follow
    (:func:`load_audio`) and the track the video carries (:mod:`avct.video.writer`) both come from it."""

    def __init__(self, container, stream) -> None:
        self.container, self.stream = container, stream
        self.decoded = self.bad = 0

    def __iter__(self):
        import av

        for packet in _packets(self.container, self.stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.bad += 1
                continue
            for frame in frames:
                self.decoded += 1
                yield frame


def _packets(container, stream):
    """The stream's packets; a read error (e.g. a truncated file) ends the stream, as in the ffmpeg CLI."""
    import av

    demuxer = container.demux(stream)
    while True:
        try:
            yield next(demuxer)
        except StopIteration:
            return
        except av.FFmpegError:
            return


class _Converter:
    """abuffer → aresample → aformat(s16, mono, 16 kHz) → abuffersink with ffmpeg 5.1's choices.

    Built by hand rather than with ``av.AudioResampler`` because only the newest PyAV lets that pass
    swresample options, and two are needed: the internal sample format and ``-async 1``.
    """

    def __init__(self, first_frame) -> None:
        import av

        self.key = _frame_key(first_frame)
        # ffmpeg 5.1 swr_init: s16p internally when input and output are both <= 16-bit, else
        # fltp (<= 32-bit) / dblp. Newer swresample computes s16 in float: up to 2 LSB off the golden.
        nbytes = first_frame.format.bytes
        internal = "s16p" if nbytes <= 2 else ("fltp" if nbytes <= 4 else "dblp")
        self.graph = av.filter.Graph()
        extra = {"time_base": str(first_frame.time_base)} if first_frame.time_base else {}
        chain = [
            self.graph.add("abuffer", sample_rate=str(first_frame.sample_rate),
                           sample_fmt=first_frame.format.name, channel_layout=first_frame.layout.name,
                           **extra),
            self.graph.add("aresample", internal_sample_fmt=internal, **{"async": "1"}, first_pts="0"),
            self.graph.add("aformat", sample_fmts="s16", channel_layouts="mono",
                           sample_rates=str(SAMPLE_RATE)),
            self.graph.add("abuffersink"),
        ]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        self.graph.configure()

    def accepts(self, frame) -> bool:
        return _frame_key(frame) == self.key

    def push(self, frame) -> list[np.ndarray]:
        self.graph.push(frame)
        return self._pull()

    def flush(self) -> list[np.ndarray]:
        self.graph.push(None)
        return self._pull()

    def _pull(self) -> list[np.ndarray]:
        import av

        out = []
        while True:
            try:
                out.append(self.graph.pull().to_ndarray().reshape(-1).astype(np.int16, copy=False))
            except EOFError:
                return out
            except (BlockingIOError, av.FFmpegError) as e:  # EAGAIN: needs more input
                if getattr(e, "errno", None) == errno.EAGAIN:
                    return out
                raise


def _frame_key(frame) -> tuple[str, str, int]:
    return frame.format.name, frame.layout.name, frame.sample_rate


def _ffmpeg_reason(e: Exception) -> str:
    return str(getattr(e, "strerror", None) or e).strip().rstrip(".")


def _wav_header_problem(path: Path) -> str | None:
    """Name what is wrong with a RIFF/WAVE header that neither scipy nor ffmpeg accepts (for the message)."""
    data = path.read_bytes()[:1 << 20]
    pos, seen = 12, {}
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"fmt " and not 16 <= size <= 1024:
            return f"corrupt WAV header (fmt chunk claims {size} bytes)"
        seen[cid] = size
        pos += 8 + size + (size & 1)
    if b"fmt " not in seen:
        return "corrupt WAV header (no fmt chunk)"
    if b"data" not in seen:
        return "WAV file has no data chunk"
    return None


# ---------------------------------------------------------------------------------------------------
# route 3: headerless raw PCM


def _read_raw(path: Path) -> DecodedAudio:
    """Headerless 16 kHz mono little-endian int16, by extension (nothing to sniff)."""
    data = path.read_bytes()
    if len(data) % 2:
        raise AvctError(f"raw audio file {path} has an odd number of bytes; expected 16 kHz mono "
                        "16-bit little-endian PCM")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64)
    return DecodedAudio(samples, source_rate=SAMPLE_RATE, source_channels=1, route="raw")

"""The hostile corpus: the files an attacker or an unlucky user hands avct, generated here (no binaries in
git) from the example photo and speech. ``python tests/support/hostile_corpus.py DIR`` writes it all and
lists it; the tests under ``tests/hostile`` write it once per session (their ``corpus`` fixture).

Each :class:`Case` says what the file is and what avct must answer: ``expect`` is a regular expression of
the one-line error (what follows ``avct: error: ``; ``{path}`` stands for the case's path), or None for a
file avct accepts (a CMYK photo is a photo). :func:`all_cases` lists the cases without writing anything
(test ids are known at collection), :func:`write_all` writes them: ~25 MB in ~5 s, the largest files an
8.5 MB EXIF block, a 4 MB manifest of 100 000 rows and the issue's 20 000 x 20 000 PNG bomb (390 KB).
"""
from __future__ import annotations

import io
import json
import re
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np

if __package__ in (None, ""):  # run as a script (`python tests/support/hostile_corpus.py DIR`): find support/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.media_files import mux_frames  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_IMAGE = REPO / "examples" / "astronaut.png"
EXAMPLE_SPEECH = REPO / "examples" / "speech_librivox_austen_7s.wav"
RATE = 16000

PIXELS = r"is (\d+x\d+ px|\d+ px) \([\d.]+ MP\); avct reads at most 50\.0 MP \(50000000 pixels\)"
UNREADABLE = r"not a readable image: {path} \((UnidentifiedImageError|OSError)\)"


@dataclass(frozen=True)
class Case:
    kind: str            # image | audio | pose_video | manifest | checkpoint
    name: str            # unique within its kind (a file or folder name)
    path: Path
    what: str            # one line: what the file is
    expect: str | None   # regex of the one-line error ({path} = the file's path), None: accepted
    make: Callable[[Path], bytes | None] = field(compare=False, repr=False, default=lambda path: None)

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    def write(self) -> None:
        """Create the file (``make`` returns its bytes, or writes ``path`` itself and returns None)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = self.make(self.path)
        if data is not None:
            self.path.write_bytes(data)

    def message(self, path: str | Path | None = None) -> str | None:
        """``expect`` as a full regular expression for this file's path (or ``path``, e.g. an upload's name)."""
        if self.expect is None:
            return None
        return "^" + self.expect.replace("{path}", re.escape(str(path if path is not None else self.path))) + "$"


# ---- images -----------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of zeros: ~1000x smaller on disk than decoded."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)                      # filter byte + pixels
    rows_per_chunk = max(1, (1 << 21) // len(row))
    block = row * rows_per_chunk
    out = []
    for start in range(0, height, rows_per_chunk):
        out.append(compressor.compress(block if start + rows_per_chunk <= height else row * (height - start)))
    out.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(out))
            + _png_chunk(b"IEND", b""))


def gif_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A GIF whose screen and only image declare ``width x height``, with a few bytes of LZW data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    lzw = b"\x02" + b"\x02\x4c\x01" + b"\x00"       # min code size 2, one sub-block: clear, 0, end
    return screen + image + lzw + b"\x3b"


def tiff_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A little-endian grey TIFF declaring ``width x height`` in one deflated strip of a few bytes."""
    strip = zlib.compress(b"\0" * 4096)
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, len(strip))]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = data_offset if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    return b"II*\0" + struct.pack("<I", ifd_offset) + ifd + b"\0\0\0\0" + strip


def webp_bomb(width: int = 16384, height: int = 16384) -> bytes:
    """A lossless WebP of a 16x16 picture whose VP8L header is rewritten to declare ``width x height``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    at = data.index(b"VP8L") + 8                   # chunk payload: 0x2f, then 14 + 14 bits of size - 1
    assert data[at] == 0x2F
    bits = int.from_bytes(data[at + 1:at + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[at + 1:at + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG (8x8) whose SOF0 frame header is rewritten to declare ``width x height``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_with_exif(exif: bytes) -> bytes:
    """The example photo's first 64x64 pixels as a PNG carrying ``exif`` in an eXIf chunk."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(EXAMPLE_IMAGE).convert("RGB").crop((0, 0, 64, 64)).save(buffer, "PNG")
    data = buffer.getvalue()
    end = data.index(b"IEND") - 4
    return data[:end] + _png_chunk(b"eXIf", exif) + data[end:]


def huge_exif(entries: int = 65535, pad: int = 8 << 20) -> bytes:
    """A little-endian TIFF/EXIF block: IFD0 of ``entries`` entries (all orientation = 6, each a rotation)
    pointing far outside the block, and ``pad`` bytes of padding (8 MB)."""
    body = struct.pack("<H", entries)
    entry = struct.pack("<HHII", 0x0112, 3, 1, 6)
    body += entry * (entries - 1) + struct.pack("<HHII", 0x8769, 4, 1, 0x7FFFFFF0)  # EXIF IFD far away
    return b"II*\0" + struct.pack("<I", 8) + body + struct.pack("<I", 0xFFFFFFF0) + b"\0" * pad


@cache
def _photo():
    from PIL import Image

    return Image.open(EXAMPLE_IMAGE).convert("RGB")


def _saved(image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _polyglot() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("index.html", "<script>alert(1)</script>")
    return _saved(_photo(), "PNG") + archive.getvalue()


def _animated(fmt: str, **params) -> bytes:
    from PIL import Image

    second = _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _saved(_photo(), fmt, save_all=True, append_images=[second], duration=100, **params)


def _gray16() -> bytes:
    from PIL import Image

    return _saved(Image.fromarray(np.asarray(_photo().convert("L"), np.uint16) * 257), "PNG")


def image_cases(folder: Path) -> list[Case]:
    bomb = "image {path} " + PIXELS
    specs = [
        ("bomb_20000.png", "valid grey PNG, 20000x20000 (400 MP, 1.2 GB as RGB)", bomb, lambda p: png_bomb(20000, 20000)),
        ("bomb_10000.png", "valid grey PNG, 10000x10000 (100 MP: under Pillow's own bomb error, over avct's limit)",
         bomb, lambda p: png_bomb(10000, 10000)),
        ("bomb.gif", "GIF declaring 65535x65535 with 6 bytes of LZW", bomb, lambda p: gif_bomb()),
        ("bomb.tif", "TIFF declaring 100000x100000 in one deflated strip", bomb, lambda p: tiff_bomb()),
        ("bomb.webp", "lossless WebP whose header declares 16384x16384", bomb, lambda p: webp_bomb()),
        ("bomb.jpg", "JPEG whose frame header declares 60000x60000", bomb, lambda p: jpeg_claiming(60000, 60000)),
        ("one_pixel.png", "1x1 PNG", r"image too small: {path} is 1x1 px \(need at least 32 px on each side\)",
         lambda p: _saved(_photo().resize((1, 1)), "PNG")),
        ("empty.png", "0 bytes", r"image file is empty \(0 bytes\): {path}", lambda p: b""),
        ("truncated.jpg", "the example photo as JPEG, cut in half", UNREADABLE,
         lambda p: (lambda d: d[: len(d) // 2])(_saved(_photo(), "JPEG", quality=90))),
        ("truncated.png", "the example photo as PNG, cut in half", UNREADABLE,
         lambda p: (lambda d: d[: len(d) // 2])(_saved(_photo(), "PNG"))),
        ("huge_exif.png", "64x64 PNG with an 8.5 MB eXIf block: 65535 IFD entries, offsets past its end", None,
         lambda p: png_with_exif(huge_exif())),
        ("cmyk.jpg", "CMYK JPEG", None, lambda p: _saved(_photo().convert("CMYK"), "JPEG")),
        ("gray16.png", "16-bit grey PNG", None, lambda p: _gray16()),
        ("animated.gif", "2-frame animated GIF (the first frame is used)", None, lambda p: _animated("GIF", loop=0)),
        ("animated.webp", "2-frame animated WebP (the first frame is used)", None, lambda p: _animated("WEBP")),
        ("drawing.svg.png", "SVG renamed .png", UNREADABLE,
         lambda p: b'<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512"><circle r="200"/></svg>'),
        ("page.html.png", "HTML renamed .png", UNREADABLE,
         lambda p: b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"),
        ("postscript.eps.png", "EPS (Pillow hands these to Ghostscript) renamed .png", UNREADABLE,
         lambda p: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n(%pipe%touch /tmp/avct-eps-pwned) (w) "
                   b"file\nshowpage\n"),
        ("polyglot.png", "PNG + ZIP (with an HTML page) in one file: the PNG is read, the rest ignored", None,
         lambda p: _polyglot()),
    ]
    return [Case("image", name, folder / name, what, expect, make) for name, what, expect, make in specs]


# ---- audio ------------------------------------------------------------------------------------------

def speech(seconds: float = 2.0) -> np.ndarray:
    """The first ``seconds`` of the example speech, int16."""
    import scipy.io.wavfile

    rate, samples = scipy.io.wavfile.read(EXAMPLE_SPEECH)
    assert rate == RATE and samples.dtype == np.int16
    return samples[: int(seconds * rate)]


def wav_bytes(samples: np.ndarray, rate: int = RATE, *, data_size: int | None = None, fmt: int = 1,
              bits: int | None = None) -> bytes:
    """A RIFF/WAVE file of ``samples`` ((n,) or (n, channels), int16/int32/float32 or 24-bit as int32),
    with its data chunk size replaced by ``data_size`` when given (a lying header)."""
    samples = samples if samples.ndim == 2 else samples[:, None]
    channels = samples.shape[1]
    if bits == 24:
        raw = (samples.astype("<i4") >> 8).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        bits = samples.dtype.itemsize * 8
        raw = samples.astype(samples.dtype.newbyteorder("<")).tobytes()
    block = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    size = len(raw) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", size) + raw
    return b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, len(body) - len(raw) + size)) + body


def encoded_audio(path: Path, codec: str, samples: np.ndarray, rate: int = RATE, *, fmt: str = "s16",
                  container: str | None = None) -> Path:
    """``samples`` (int16 mono) encoded with PyAV's ``codec`` into ``path``."""
    import av

    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        def frames(step: int = 1024):
            for start in range(0, len(samples), step):
                chunk = samples[start:start + step]
                frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.int16), format="s16", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                yield frame
        mux_frames(out, stream, frames())
    return path


def flac_claiming(path: Path, samples: np.ndarray, total: int) -> bytes:
    """``samples`` as FLAC whose STREAMINFO declares ``total`` samples."""
    data = bytearray(encoded_audio(path, "flac", samples).read_bytes())
    info = data.index(b"fLaC") + 8                 # STREAMINFO payload; total samples: the low 36 of bits 80..143
    bits = int.from_bytes(data[info + 10:info + 18], "big")
    data[info + 10:info + 18] = ((bits & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    return bytes(data)


def webm_without_duration(samples: np.ndarray) -> bytes:
    """``samples`` (16 kHz int16) as Opus in WebM written to a stream that cannot seek: no duration."""
    import av

    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk) -> int:
            self.data += chunk
            return len(chunk)

    sink = Unseekable()
    with av.open(sink, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        for start in range(0, len(samples), 960):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 960].astype(np.int16), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(sink.data)


def silent_video(path: Path, frames: int = 10, *, picture: np.ndarray | None = None, audio: bool = False) -> Path:
    """An H.264 mp4 of ``frames`` frames (``picture`` repeated, else noise) without sound."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        height, width = (picture.shape[:2] if picture is not None else (64, 64))
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        def pictures():
            for i in range(frames):
                rgb = picture if picture is not None else rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:stream.height, :stream.width]),
                                                   format="rgb24")
                frame.pts = i
                yield frame
        mux_frames(out, stream, pictures())
    return path


def _tones_8ch_192k() -> bytes:
    rate = 192_000
    t = np.arange(int(0.5 * rate)) / rate
    tones = np.stack([np.sin(2 * np.pi * (200 + 50 * c) * t) for c in range(8)], axis=1)
    return wav_bytes((tones * (1 << 30)).astype(np.int32), rate, bits=24)


def _channels_137() -> bytes:
    data = bytearray(wav_bytes((speech(0.5) / 32768).astype(np.float32), fmt=3))
    data[22:24] = struct.pack("<H", 137)           # fmt chunk: channels (block align left at one channel's)
    return bytes(data)


def _nan_samples() -> bytes:
    samples = (speech(0.5) / 32768).astype(np.float32)
    samples[100], samples[200] = np.nan, np.inf
    return wav_bytes(samples, fmt=3)


def audio_cases(folder: Path) -> list[Case]:
    voice = lambda: speech(2.0)  # noqa: E731
    specs = [
        ("no_samples.wav", "WAV header, 0 samples", r"audio file {path} contains no audio samples",
         lambda p: wav_bytes(np.zeros(0, np.int16))),
        ("header_too_long.wav", "2 s of speech; its header claims 20 s", None,
         lambda p: wav_bytes(voice(), data_size=20 * RATE * 2)),
        ("header_too_short.wav", "2 s of speech; its header claims 0.5 s (0.5 s are read)", None,
         lambda p: wav_bytes(voice(), data_size=RATE)),
        ("claims_10_hours.wav", "2 s of speech; its data chunk claims 10 hours (readers clamp it to the file: 2 s)",
         None, lambda p: wav_bytes(voice(), data_size=10 * 3600 * RATE * 2)),
        ("claims_10_hours.flac", "2 s of speech; its STREAMINFO claims 10 hours",
         r"audio {path} is 36000\.0 s long; at most 3600 s are accepted",
         lambda p: flac_claiming(p, voice(), 10 * 3600 * RATE)),
        ("no_duration.webm", "2 s of Opus in a WebM that declares no duration (as a browser's MediaRecorder "
         "writes)", None, lambda p: webm_without_duration(voice())),
        ("8ch_192k.wav", "8 channels, 192 kHz, 24-bit PCM, 0.5 s", None, lambda p: _tones_8ch_192k()),
        ("24bit.wav", "24-bit PCM", None, lambda p: wav_bytes(voice().astype(np.int32) << 16, bits=24)),
        ("float32.wav", "32-bit float PCM", None, lambda p: wav_bytes((voice() / 32768).astype(np.float32), fmt=3)),
        ("adpcm.wav", "IMA ADPCM in WAV", None, lambda p: encoded_audio(p, "adpcm_ima_wav", voice()) and None),
        ("channels_137.wav", "float WAV whose header declares 137 channels (found by fuzzing)",
         r"cannot decode the audio of {path}: Invalid argument", lambda p: _channels_137()),
        ("nan_samples.wav", "float WAV with NaN and infinite samples",
         r"audio file {path} holds samples that are not numbers \(NaN or infinity\)", lambda p: _nan_samples()),
        ("dc_only.wav", "1 s of a constant (DC) value",
         r"audio file {path} is silent \(all samples equal\); nothing to animate",
         lambda p: wav_bytes(np.full(RATE, 1000, np.int16))),
        ("noise_full_scale.wav", "2 s of full-scale white noise", None,
         lambda p: wav_bytes(np.random.default_rng(0).integers(-32768, 32768, 2 * RATE).astype(np.int16))),
        ("video_without_sound.mp4", "an H.264 mp4 without an audio track", r"video file {path} has no audio stream",
         lambda p: silent_video(p) and None),
        ("empty.wav", "0 bytes", r"audio file is empty \(0 bytes\): {path}", lambda p: b""),
        ("text.wav", "text renamed .wav", r"cannot read audio file {path}: unrecognised format or corrupt header "
         r"\(.+\)", lambda p: b"this is not a recording\n" * 4),
        ("odd.raw", "headerless PCM with an odd byte count",
         r"raw audio file {path} has an odd number of bytes; expected 16 kHz mono 16-bit little-endian PCM",
         lambda p: b"\0\1" * (RATE * 2) + b"\0"),
    ]
    return [Case("audio", name, folder / name, what, expect, make) for name, what, expect, make in specs]


# ---- videos for --pose-from -------------------------------------------------------------------------

def _face_frame() -> np.ndarray:
    return np.asarray(_photo().resize((256, 256)))


def pose_video_cases(folder: Path) -> list[Case]:
    specs = [
        ("no_frames.mp4", "an mp4 with a video track and no frames", r"{path} has no video stream",
         lambda p: _empty_video(p)),
        ("no_face.mp4", "10 frames of noise", r"pose video {path}: no face found \(checked 8 frames\)",
         lambda p: silent_video(p) and None),
        ("one_frame.mp4", "one frame of the example face", None,
         lambda p: silent_video(p, 1, picture=_face_frame()) and None),
        ("huge_frames.mp4", "an mp4 whose frames are 9000x6000 (54 MP)", "pose video {path} " + PIXELS,
         lambda p: _huge_frame_video(p)),
        ("text.mp4", "text renamed .mp4", r"cannot read video {path}: .+", lambda p: b"not a video\n"),
    ]
    return [Case("pose_video", name, folder / name, what, expect, make) for name, what, expect, make in specs]


def _empty_video(path: Path) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()                       # the header is written, no frame ever is


def _huge_frame_video(path: Path) -> None:
    """One tiny grey mjpeg frame whose headers say 9000x6000 (the container and the JPEG both)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 9000, 6000, "yuvj420p"
        frame = av.VideoFrame(9000, 6000, "yuvj420p")
        for plane in frame.planes:
            plane.update(b"\x80" * plane.buffer_size)
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


# ---- batch manifests --------------------------------------------------------------------------------

def manifest_cases(folder: Path, image: Path, audio: Path) -> list[Case]:
    """Manifests whose rows point at ``image`` and ``audio`` (absolute paths). ``expect`` is for the
    manifest as a whole (None: it is read; its rows are then done or failed one by one)."""
    header = "image,audio,output"

    def rows(*outputs: str, end: str = "\n") -> bytes:
        return end.join([header, *(f"{image},{audio},{output}" for output in outputs)]).encode() + end.encode()

    specs = [
        ("escape.csv", "outputs with '..' and an absolute path (and one good row)", None,
         lambda p: rows("../escaped.mp4", "a/../../escaped.mp4", "/tmp/avct-abs.mp4", "ok.mp4")),
        ("duplicates.csv", "three rows writing the same output (one in capitals)", None,
         lambda p: rows("same.mp4", "same.mp4", "SAME.mp4")),
        ("crlf.csv", "CRLF line ends", None, lambda p: rows("crlf.mp4", end="\r\n")),
        ("bom.csv", "a UTF-8 byte order mark", None, lambda p: b"\xef\xbb\xbf" + rows("bom.mp4")),
        ("rows_100000.csv", "100 000 rows (the limit), none of whose files exist", None,
         lambda p: (header + "\n" + "".join(f"missing/{i}.png,missing.wav,v{i}.mp4\n" for i in range(100_000))).encode()),
        ("rows_100001.csv", "100 001 rows",
         r"manifest {path} has more than 100000 rows; split it \(avct batch takes at most 100000\)",
         lambda p: (header + "\n" + "".join(f"a{i}.png,b.wav\n" for i in range(100_001))).encode()),
        ("long_cell.csv", "one 300 000-character cell",
         r"cannot read manifest {path}: field larger than field limit \(131072\)",
         lambda p: (header + "\na.png,b.wav," + "x" * 300_000 + ".mp4\n").encode()),
        ("nested.jsonl", "a JSONL line of 100 000 nested lists", None,
         lambda p: ("[" * 100_000 + "]" * 100_000 + "\n").encode()),
        ("binary.csv", "binary bytes", r"cannot read manifest {path}: 'utf-8' codec can't decode .+",
         lambda p: bytes(range(256)) * 8),
    ]
    return [Case("manifest", name, folder / name, what, expect, make) for name, what, expect, make in specs]


# ---- checkpoints ------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this runs ``touch MARKER``: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _safetensors(header: dict, data: bytes, header_size: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if header_size is None else header_size) + text + data


def _pickled(path: Path, marker: Path) -> None:
    import pickle

    with open(path, "wb") as f:
        pickle.dump({"generator": _Payload(marker)}, f)


def _torch_saved(path: Path, marker: Path) -> None:
    import torch

    torch.save({"generator": _Payload(marker)}, path)


def _spoiled(good: Path, spoil: Callable[[Path], None]) -> Callable[[Path], None]:
    """A maker of a copy of the weights folder ``good`` with keypoint_detector.safetensors spoiled by ``spoil``
    (it and config.json copied, the other files linked)."""
    import shutil

    def make(target: Path) -> None:
        target.mkdir()
        for source in good.iterdir():
            if source.name in ("config.json", "keypoint_detector.safetensors"):
                shutil.copyfile(source, target / source.name)
            else:
                (target / source.name).symlink_to(source)
        spoil(target / "keypoint_detector.safetensors")
    return make


def _lying_size(path: Path) -> None:
    path.write_bytes(_safetensors({}, b"", header_size=1 << 60))


def _lying_offsets(path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    header = {k: {"dtype": "F32", "shape": list(v.shape), "data_offsets": [0, 4 * v.numel()]} for k, v in state.items()}
    header[next(iter(state))]["data_offsets"] = [0, 1 << 40]
    path.write_bytes(_safetensors(header, b"\0" * 64))


def _wrong_shape(path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1, dtype=state[key].dtype)
    save_file(state, str(path))


def _nan_weight(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    key = next(k for k, v in state.items() if v.dtype.is_floating_point and v.numel() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(path))


def checkpoint_cases(folder: Path, good: Path) -> list[Case]:
    """Checkpoint files and folders; ``good``: a folder of valid avct weights (``config.json`` + safetensors),
    copied and spoiled one way each. The pickle payloads would create ``folder / "PWNED"``."""
    marker = folder / "PWNED"
    weights = r"{path}/keypoint_detector\.safetensors"
    specs = [
        ("generator.ckpt", "a pickle whose unpickling runs `touch PWNED`",
         r"refusing checkpoint {path}: it contains pickled Python objects .+", lambda p: _pickled(p, marker)),
        ("saved.ckpt", "torch.save of an object whose unpickling runs `touch PWNED`",
         r"refusing checkpoint {path}: it contains pickled Python objects .+", lambda p: _torch_saved(p, marker)),
        ("safetensors_header_size", "safetensors whose header length field says 2^60 bytes",
         r"cannot read weights " + weights + r": .*header too large", _spoiled(good, _lying_size)),
        ("safetensors_offsets", "safetensors whose first tensor ends 1 TB past the file's end",
         r"cannot read weights " + weights + r": .*invalid offset.*", _spoiled(good, _lying_offsets)),
        ("wrong_shape", "a weight one column wider than the network's",
         weights + r" does not match the KeypointDetector layout: .+ has shape .+, expected .+",
         _spoiled(good, _wrong_shape)),
        ("nan_weight", "one weight set to NaN", weights + r" holds a non-finite weight \(NaN or infinity\) in .+",
         _spoiled(good, _nan_weight)),
    ]
    return [Case("checkpoint", name, folder / name, what, expect, make) for name, what, expect, make in specs]


def all_cases(root: Path, checkpoint: Path | None = None) -> list[Case]:
    """Every case of the corpus under ``root`` (nothing written yet: :func:`write_all`); the checkpoint cases
    are made from the valid weights folder ``checkpoint`` (default: the bundled weights)."""
    if checkpoint is None:
        from avct.weights.bundled import resolve_checkpoint

        checkpoint = Path(resolve_checkpoint(None))
    face, voice = inputs(root)
    return (image_cases(root / "image") + audio_cases(root / "audio") + pose_video_cases(root / "pose_video")
            + manifest_cases(root / "manifest", face, voice) + checkpoint_cases(root / "checkpoint", checkpoint))


def inputs(root: Path) -> tuple[Path, Path]:
    """The good photo and speech (1 s) beside the corpus, for the cases that need one of them good."""
    return root / "inputs" / "face.png", root / "inputs" / "voice.wav"


def write_all(cases: list[Case], root: Path) -> dict[str, Case]:
    """Write the good inputs and every case; returns the cases by id."""
    face, voice = inputs(root)
    face.parent.mkdir(parents=True, exist_ok=True)
    face.write_bytes(EXAMPLE_IMAGE.read_bytes())
    voice.write_bytes(wav_bytes(speech(1.0)))
    for case in cases:
        case.write()
    return {case.id: case for case in cases}


# ---- for the tests --------------------------------------------------------------------------------------

def case_ids(kind: str, *, refused: bool | None = None) -> list[str]:
    """The ids of ``kind``'s cases (only the refused ones, or only the accepted ones, when asked), listed
    without writing anything: they parametrize tests at collection."""
    return [c.id for c in all_cases(Path("corpus")) if c.kind == kind
            and (refused is None or (c.expect is not None) == refused)]


def one_error_line(capsys) -> str:
    """What a command printed on stderr (pytest's ``capsys``), checked to be exactly one ``avct: error:`` line
    and nothing else; returns its message."""
    err = capsys.readouterr().err
    assert err.startswith("avct: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err[len("avct: error: "):-1]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile_corpus")
    for case in write_all(all_cases(out), out).values():
        p = case.path
        size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if not f.is_symlink())
        print(f"{case.id:40s} {size:>10d} B  {case.what}")

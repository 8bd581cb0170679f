"""Property-based fuzzing (hypothesis) of every parser a user's input reaches: the photo and speech readers
(small valid files of each format, mutated: bytes overwritten, inserted, cut, header fields set to extremes),
the phoneme JSON, pose strings, batch manifests and the server's form fields. The property is the same
everywhere: the parser returns what it promises or raises AvctError with one line; nothing else escapes,
and what it returns is within the limits.

Each test runs examples for a fixed time budget (AVCT_FUZZ_SECONDS, default 2 s), at most
AVCT_FUZZ_EXAMPLES (default 2000) of them, so CI time stays fixed: hypothesis has no time limit of its own,
so the first example past the budget raises BudgetSpent, which ends the run (the shrinking phase is left
out for that; a real failure is reported as found). Derandomized, so a CI run is repeatable; no example
database is written.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from avct.errors import AvctError

# The example that ends the run is reported as hypothesis reports a failure; its repr can be large.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
SECONDS = float(os.environ.get("AVCT_FUZZ_SECONDS", 2))
EXAMPLES = int(os.environ.get("AVCT_FUZZ_EXAMPLES", 2000))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate], print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXTREMES = [0, 1, 2, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


class BudgetSpent(Exception):
    """Raised by the first example past the time budget: it ends hypothesis's run (see the module's doc)."""


class Budget:
    """Counts the examples run; ``check()`` raises BudgetSpent once ``SECONDS`` have passed since the first."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.ran = 0

    def check(self) -> None:
        now = time.monotonic()
        self.start = self.start if self.start is not None else now
        if now - self.start > SECONDS:
            raise BudgetSpent
        self.ran += 1

    def run(self, fuzz) -> None:
        """Run the @given test ``fuzz`` until its examples or the budget run out; at least 20 must have run."""
        try:
            fuzz()
        except BudgetSpent:
            pass
        assert self.ran >= 20, f"only {self.ran} examples in {SECONDS:g} s"


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with up to 6 edits: a byte overwritten, bytes inserted, the end cut off, or 2/4 bytes
    (little- or big-endian: header sizes and offsets) set to an extreme value."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["byte", "insert", "cut", "field"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "byte":
            data[at:at + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=32))
        elif kind == "cut":
            del data[at:]
        else:
            width, order = draw(st.sampled_from([2, 4])), draw(st.sampled_from(["little", "big"]))
            value = draw(st.sampled_from(EXTREMES)) & ((1 << (8 * width)) - 1)
            data[at:at + width] = value.to_bytes(width, order)
    return bytes(data)


def _image_seeds() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    seeds = []
    for fmt, params in [("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("TIFF", {"compression": "tiff_deflate"}),
                        ("WEBP", {"lossless": True}), ("WEBP", {"quality": 50}), ("BMP", {}), ("PPM", {}), ("TGA", {})]:
        buffer = io.BytesIO()
        picture.save(buffer, fmt, **params)
        seeds.append(buffer.getvalue())
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.save(buffer, "JPEG", exif=exif)
    return seeds + [buffer.getvalue()]


def _audio_seeds() -> list[bytes]:
    import av

    from support.hostile_corpus import encoded_audio, speech, wav_bytes

    voice = speech(0.25)
    seeds = [wav_bytes(voice), wav_bytes(voice, 44100), wav_bytes((voice / 32768).astype(np.float32), fmt=3)]
    with tempfile.TemporaryDirectory() as folder:
        for codec, suffix, container in [("flac", ".flac", None), ("libmp3lame", ".mp3", None),
                                         ("libopus", ".ogg", "ogg"), ("aac", ".m4a", None), ("adpcm_ms", ".wav", None)]:
            path = Path(folder) / f"seed{suffix}"
            rate = 48000 if codec == "libopus" else (44100 if codec in ("libmp3lame", "aac") else 16000)
            try:
                encoded_audio(path, codec, np.repeat(voice, rate // 16000), rate, container=container)
            except av.FFmpegError:
                continue
            seeds.append(path.read_bytes())
    return seeds


IMAGE_SEEDS = _image_seeds()
AUDIO_SEEDS = _audio_seeds()
SCRATCH = Path(tempfile.mkdtemp(prefix="avct-fuzz-"))


def _file(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def _one_line(error: AvctError) -> None:
    text = str(error)
    assert text and "\n" not in text, repr(text)


# ---- the readers -------------------------------------------------------------------------------------------

def _fuzz(inputs, call, check) -> None:
    """Fuzz ``call`` on examples of the strategy ``inputs`` within the time budget: each gives a one-line
    AvctError, or a value that passes ``check``."""
    budget = Budget()

    @FUZZ
    @given(inputs)
    def fuzz(example):
        budget.check()
        try:
            value = call(example)
        except AvctError as e:
            _one_line(e)
            return
        check(value)

    budget.run(fuzz)


def _fuzz_file_reader(seeds: list[bytes], name: str, read, check) -> None:
    """Fuzz ``read(path)`` on mutated ``seeds`` and random bytes saved as ``name``."""
    _fuzz(st.one_of(mutated(seeds), st.binary(max_size=256)), lambda data: read(_file(name, data)), check)


def test_image_reader():
    from avct.face.image import read_image
    from avct.limits import LIMITS

    def check(rgb):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert min(rgb.shape[:2]) >= 32 and rgb.shape[0] * rgb.shape[1] <= LIMITS.max_pixels

    _fuzz_file_reader(IMAGE_SEEDS, "fuzz.png", read_image, check)  # Pillow goes by the content, not the name


@pytest.mark.parametrize("suffix", [".wav", ".raw"])  # any name: by the content; .raw: headerless PCM
def test_audio_reader(suffix):
    from avct.audio.decode import load_audio

    def check(audio):
        assert audio.samples.ndim == 1 and np.isfinite(audio.samples).all()
        assert 721 <= len(audio.samples) <= 60 * 16000 and np.ptp(audio.samples) > 0

    _fuzz_file_reader(AUDIO_SEEDS, f"fuzz{suffix}", lambda path: load_audio(path, max_seconds=60), check)


# ---- text parsers ------------------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["word", "phones", "ph", "bg", "ed", "x"]), inner, max_size=4), max_leaves=20)
PHONE = st.fixed_dictionaries({"ph": st.sampled_from(["AH", "SIL", "B", "ah", "AH0", ""]),
                               "bg": st.one_of(st.integers(-10, 10**13), st.floats(), st.text(max_size=4)),
                               "ed": st.one_of(st.integers(-10, 10**13), st.floats(), st.text(max_size=4))})
WORDS = st.lists(st.fixed_dictionaries({"word": st.text(max_size=5), "phones": st.lists(PHONE, max_size=4)}),
                 max_size=4)


def test_phoneme_json():
    from avct.audio.phonemes import frame_phoneme_ids, read_phoneme_json
    from avct.limits import LIMITS

    budget = Budget()

    @FUZZ
    @given(st.one_of(JSON, WORDS).map(lambda v: json.dumps(v, allow_nan=True)) | st.text(max_size=64)
           | st.integers(1, 10**5).map(lambda n: "[" * n + "]" * n))
    def fuzz(text):
        budget.check()
        try:
            ids = frame_phoneme_ids(read_phoneme_json(_file("phonemes.json", text.encode("utf-8", "surrogatepass"))))
        except AvctError as e:
            _one_line(e)
            return
        assert 0 <= len(ids) <= LIMITS.max_audio_s * 25 + 1 and all(0 <= i < 41 for i in ids)

    budget.run(fuzz)


def test_pose_strings():
    from avct.face.head_pose import parse_pose

    numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                        st.sampled_from(["", " ", "nan", "inf", "1e999", "1_0", "0x10", "--1", "١٢"]))

    def check(pose):
        assert pose.shape == (6,) and np.isfinite(pose).all()

    _fuzz(st.one_of(st.lists(numbers, max_size=8).map(",".join), st.text(max_size=40)), parse_pose, check)


CELL = st.one_of(st.text(max_size=12), st.sampled_from(["..", "../x.mp4", "/abs.mp4", "a/../../b.mp4", "x.mp4",
                                                        "X.MP4", "~/v.mp4", "a\\b.mp4", "", " ", '"', "\r", "\x00",
                                                        "~nobody-here/face.png"]))


def test_manifests(tmp_path_factory):
    from avct.batch import plan_jobs, read_manifest

    folder = tmp_path_factory.mktemp("manifests")
    out = folder / "out"
    columns = st.lists(st.sampled_from(["image", "audio", "output", "still", "pose_scale", "face", "transcript",
                                        "pose_from", "x", ""]), min_size=1, max_size=5)
    csv_text = st.tuples(columns, st.lists(st.lists(CELL, max_size=6), max_size=5), st.sampled_from(["\n", "\r\n"])) \
        .map(lambda t: t[2].join([",".join(t[0])] + [",".join(row) for row in t[1]]))
    jsonl_text = st.lists(st.one_of(JSON, st.dictionaries(st.sampled_from(["image", "audio", "output"]), CELL))
                          .map(json.dumps), max_size=5).map("\n".join)
    budget = Budget()

    @FUZZ
    @given(st.one_of(csv_text, jsonl_text, st.text(max_size=80)), st.sampled_from([".csv", ".jsonl", ".txt"]),
           st.booleans())
    def fuzz(text, suffix, bom):
        budget.check()
        path = folder / f"m{suffix}"
        path.write_bytes(b"\xef\xbb\xbf" * bom + text.encode("utf-8", "surrogatepass"))
        try:
            jobs = plan_jobs(read_manifest(path), folder, out)
        except AvctError as e:
            _one_line(e)
            return
        outputs = [j.output_path for j in jobs if j.problem is None]
        for job in jobs:
            assert (job.problem is None) != (job.output_path is None) or job.problem is not None
            if job.problem is not None:
                assert "\n" not in job.problem
        for output in outputs:  # never outside the output folder, never twice
            assert output.resolve().is_relative_to(out.resolve()) and output.suffix.lower() in (".mp4", ".m4v", ".mov")
        assert len({str(o).lower() for o in outputs}) == len(outputs)

    budget.run(fuzz)


def test_server_form_fields():
    from avct.inference.options import GenerateOptions
    from avct.serving.uploads import options_from_fields

    names = st.one_of(st.sampled_from(GenerateOptions.names() + ["pose-scale", " still ", "extra", "image"]),
                      st.text(max_size=10))
    values = st.one_of(st.text(max_size=20), st.sampled_from(["nan", "inf", "-0", "1e400", "3.0000001", "true",
                                                              "TRUE", "yes", "9" * 5000, "0,0,0,0,25,250"]))

    def check(options):
        assert options.phonemes is None and options.pose_from is None  # never a server-side file
        assert 0 <= options.pose_scale <= 3 and 0 <= options.mouth_scale <= 3 and 64 <= options.max_size <= 8192
        assert options.extra == {}

    _fuzz(st.dictionaries(names, values, max_size=6), options_from_fields, check)

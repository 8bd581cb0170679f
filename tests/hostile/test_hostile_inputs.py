"""Every file of the hostile corpus through its reader and through the command line: a refused file gives one
``avct: error:`` line (the reader's message), exit status 1 and no output; an accepted one is read as what it
is. Plus: the limits hold before the expensive work (a bomb is refused without its pixels in memory, a stream
without a declared length stops being decoded at the limit)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avct.cli import main
from avct.errors import AvctError

from support.hostile_corpus import EXAMPLE_IMAGE, case_ids, one_error_line, speech

POSE = "0,0,0,0,25,250"  # given with --no-crop: generate needs no face detection before the checked step


def _refused(case, read) -> None:
    """The reader refuses ``case`` with the case's one-line message."""
    with pytest.raises(AvctError) as caught:
        read(case.path)
    assert re.match(case.message(), str(caught.value)), str(caught.value)


def _cli_refuses(argv: list[str], case, capsys, out: Path) -> None:
    """The command ``argv`` refuses ``case``: exit status 1, the case's message as the one line on stderr, no
    output and no temporary file beside it."""
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert re.match(case.message(), line), line
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


# ---- images --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", case_ids("image", refused=True))
def test_refused_image(case_id, corpus, good_inputs, no_frontend_process, capsys, tmp_path):
    from avct.face.image import read_image

    case = corpus[case_id]
    _refused(case, read_image)
    out = tmp_path / "out.mp4"
    _cli_refuses(["generate", "--image", str(case.path), "--audio", str(good_inputs[1]), "-o", str(out), "-q"],
                 case, capsys, out)
    assert list(tmp_path.iterdir()) == []


def _photo() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(EXAMPLE_IMAGE).convert("RGB"))


ACCEPTED_IMAGES = {  # what each accepted image reads as, against the example photo it was made from
    "image/polyglot.png": lambda rgb, photo: np.array_equal(rgb, photo),            # the PNG part, exactly
    "image/animated.gif": lambda rgb, photo: np.abs(rgb - photo.astype(int)).mean() < 5,   # the first frame
    "image/animated.webp": lambda rgb, photo: np.abs(rgb - photo.astype(int)).mean() < 5,  # (not the mirrored one)
    "image/cmyk.jpg": lambda rgb, photo: np.abs(rgb - photo.astype(int)).mean() < 5,
    "image/gray16.png": lambda rgb, photo: (rgb[..., 0] == rgb[..., 2]).all()
    and np.corrcoef(rgb[..., 0].ravel(), photo.mean(axis=2).ravel())[0, 1] > 0.99,
    "image/huge_exif.png": lambda rgb, photo: np.array_equal(rgb, np.rot90(photo[:64, :64], 3)),  # orientation 6
}


@pytest.mark.parametrize("case_id", case_ids("image", refused=False))
def test_accepted_image(case_id, corpus):
    from avct.face.image import read_image

    rgb = read_image(corpus[case_id].path)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert ACCEPTED_IMAGES[case_id](rgb.astype(int), _photo())


def test_no_other_image_reader_is_tried(corpus, tmp_path):
    """Pillow hands EPS files to Ghostscript: a PostScript file (whatever its name) is never opened as one."""
    from avct.face.image import read_image

    eps = tmp_path / "drawing.eps"
    eps.write_bytes(corpus["image/postscript.eps.png"].path.read_bytes())
    with pytest.raises(AvctError, match=r"not a readable image: .*drawing\.eps \(UnidentifiedImageError\)"):
        read_image(eps)


def test_a_bomb_is_refused_before_its_pixels_are_decoded(corpus):
    """The 100 MP PNG (under Pillow's own bomb error) decoded to 1.4 GB before the limit; now the reader
    process grows by less than 40 MB reading it (peak resident memory, measured in a fresh process)."""
    script = (
        "import resource, sys\n"
        "from avct.face.image import read_image\n"
        "from avct.errors import AvctError\n"
        "read_image(sys.argv[2])  # warm: imports and Pillow's plugins\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    read_image(sys.argv[1])\n"
        "except AvctError as e:\n"
        "    print(e, file=sys.stderr)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(corpus["image/bomb_10000.png"].path),
                           str(corpus["image/cmyk.jpg"].path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "is 10000x10000 px (100.0 MP)" in proc.stderr
    assert int(proc.stdout) < 40, f"grew by {proc.stdout.strip()} MB"


def test_the_issue_bomb_through_the_real_command(corpus, good_inputs, tmp_path):
    """The issue's report as a user meets it: `avct generate` on the 20 000 x 20 000 PNG, in its own process."""
    out = tmp_path / "out.mp4"
    bomb = corpus["image/bomb_20000.png"].path
    proc = subprocess.run([sys.executable, "-m", "avct", "generate", "--image", str(bomb), "--audio",
                           str(good_inputs[1]), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr == (f"avct: error: image {bomb} is 400000000 px (400.0 MP); avct reads at most 50.0 MP "
                           "(50000000 pixels)\n")
    assert list(tmp_path.iterdir()) == []


# ---- audio ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", case_ids("audio", refused=True))
def test_refused_audio(case_id, corpus, capsys, tmp_path):
    from avct.audio.decode import load_audio

    case = corpus[case_id]
    _refused(case, load_audio)
    out = tmp_path / "phonemes.json"
    _cli_refuses(["phonemes", str(case.path), "-o", str(out)], case, capsys, out)


ACCEPTED_SECONDS = {"audio/header_too_long.wav": 2.0, "audio/header_too_short.wav": 0.5,
                    "audio/claims_10_hours.wav": 2.0, "audio/no_duration.webm": 2.0, "audio/8ch_192k.wav": 0.5,
                    "audio/24bit.wav": 2.0, "audio/float32.wav": 2.0, "audio/adpcm.wav": 2.0,
                    "audio/noise_full_scale.wav": 2.0}


@pytest.mark.parametrize("case_id", case_ids("audio", refused=False))
def test_accepted_audio(case_id, corpus):
    from avct.audio.decode import load_audio

    audio = load_audio(corpus[case_id].path)
    assert audio.sample_rate == 16000 and np.isfinite(audio.samples).all()
    assert abs(audio.duration_s - ACCEPTED_SECONDS[case_id]) < 0.05, audio.duration_s
    if case_id in ("audio/24bit.wav", "audio/float32.wav", "audio/claims_10_hours.wav"):
        np.testing.assert_allclose(audio.samples, speech(2.0), atol=1e-3)  # the very samples, on the int16 scale


def test_a_stream_without_a_declared_length_stops_decoding_at_the_limit(corpus):
    from avct.audio.decode import load_audio

    path = corpus["audio/no_duration.webm"].path
    with pytest.raises(AvctError, match=rf"^audio {re.escape(str(path))} is more than 1 s long; at most 1 s are accepted$"):
        load_audio(path, max_seconds=1.0)


def test_a_long_raw_file_is_refused_by_its_size(tmp_path):
    from avct.audio.decode import load_audio

    raw = tmp_path / "long.raw"
    with open(raw, "wb") as f:
        f.truncate(2 * 16000 * 3601)  # 3601 s of headerless 16 kHz PCM, sparse: nothing is read
    with pytest.raises(AvctError, match=r"is 3601\.0 s long; at most 3600 s are accepted$"):
        load_audio(raw)


def test_audio_refused_by_the_real_generate(corpus, good_inputs, tmp_path):
    """The speech front end runs in a process of its own: its refusal reaches the user as the same one line."""
    out = tmp_path / "out.mp4"
    flac = corpus["audio/claims_10_hours.flac"].path
    proc = subprocess.run([sys.executable, "-m", "avct", "generate", "--image", str(good_inputs[0]), "--audio",
                           str(flac), "--no-crop", "--pose", POSE, "-o", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert (proc.returncode, proc.stderr) == (1, f"avct: error: audio {flac} is 36000.0 s long; at most 3600 s "
                                                 "are accepted\n")
    assert list(tmp_path.iterdir()) == []


# ---- videos for --pose-from ----------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", case_ids("pose_video"))
def test_pose_video(case_id, corpus):
    from avct.inference.video_poses import video_head_poses

    case = corpus[case_id]
    if case.expect is not None:
        _refused(case, video_head_poses)
    else:
        poses = video_head_poses(case.path)
        assert poses.shape == (1, 6) and np.isfinite(poses).all()


def test_pose_video_refused_by_generate(corpus, good_inputs, no_frontend_process, capsys, tmp_path):
    """A bad --pose-from video, met after the speech was analysed: one line, and the mp4 begun is discarded."""
    case = corpus["pose_video/huge_frames.mp4"]
    phonemes = tmp_path / "phonemes.json"
    phonemes.write_text('[{"word": "sil", "phones": [{"ph": "SIL", "bg": 0, "ed": 100}]}]')
    out = tmp_path / "out" / "video.mp4"
    _cli_refuses(["generate", "--image", str(good_inputs[0]), "--audio", str(good_inputs[1]), "--no-crop", "--pose",
                  POSE, "--phonemes", str(phonemes), "--pose-from", str(case.path), "-o", str(out), "-q"],
                 case, capsys, out)


# ---- checkpoints ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case_id", case_ids("checkpoint"))
def test_checkpoint(case_id, corpus, good_inputs, no_frontend_process, capsys, tmp_path):
    from avct.weights import load_models

    case = corpus[case_id]
    _refused(case, load_models)
    out = tmp_path / "out.mp4"
    _cli_refuses(["generate", "--image", str(good_inputs[0]), "--audio", str(good_inputs[1]), "--no-crop", "--pose",
                  POSE, "--checkpoint", str(case.path), "-o", str(out), "-q"], case, capsys, out)
    assert not (case.path.parent / "PWNED").exists()  # the pickled payloads never ran

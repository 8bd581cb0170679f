"""`avct generate` end to end as a user runs it: golden frames, a real mp4, and one-line errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from PIL import Image

from avct.cli import main
from avct.video.reader import probe_video
from support.parity_data import golden

POSE = "0.017,0.025,0.026,-1.2,26.8,246.8"


@pytest.fixture(scope="module")
def parity_inputs(parity, data, tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    wav = d / "clip.wav"
    scipy.io.wavfile.write(wav, 16000, golden(parity, "audio_features.npz")["wav16k_int16"])
    return {"image": data / "image" / "astronaut_eileencollins_skimage.png", "audio": wav,
            "phonemes": parity / "phonemes" / "id01849_WopMMu6MChc_00050_000.json"}


def test_official_checkpoint_reproduces_golden_frames(official_checkpoint_dir, parity_inputs, parity, tmp_path):
    out, frames = tmp_path / "out.mp4", tmp_path / "frames"
    code = main(["generate", "--image", str(parity_inputs["image"]), "--audio", str(parity_inputs["audio"]),
                 "--phonemes", str(parity_inputs["phonemes"]), "--pose", POSE, "--no-crop", "--f0", "official",
                 "--render", "classic", "--checkpoint", str(official_checkpoint_dir), "--frames", str(frames), "-o",
                 str(out), "-q"])
    assert code == 0
    pngs = sorted(frames.glob("*.png"))
    assert [p.name for p in pngs[:2]] == ["000000.png", "000001.png"] and len(pngs) == 110
    expected = golden(parity, "end_to_end.npz")["frames_u8"]
    got = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pngs[:8]])
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() <= 0.01
    info = probe_video(out)
    assert info.codec == "h264" and info.audio_codec == "aac"
    assert (info.width, info.height) == (256, 256) and abs(info.fps - 25) < 1e-6
    assert info.frame_count == 110
    assert abs(info.video_duration - 70589 / 16000) <= 0.04


def _run_error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("avct: error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture()
def good(parity_inputs, small_checkpoint_dir, tmp_path):
    return ["generate", "--image", str(parity_inputs["image"]), "--audio", str(parity_inputs["audio"]),
            "--phonemes", str(parity_inputs["phonemes"]), "--pose", POSE, "--checkpoint",
            str(small_checkpoint_dir), "-o", str(tmp_path / "out.mp4"), "-q"]


def _without(argv, flag):
    """``argv`` without ``flag`` and its value."""
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:]


def _with(argv, flag, value):
    argv = list(argv)
    argv[argv.index(flag) + 1] = str(value)
    return argv


def test_official_is_one_switch_for_the_papers_output(good, tmp_path):
    """``--official`` writes what the spelled-out flags write: the classic 256² frames, the official F0."""
    def frames(flags, name):
        folder = tmp_path / name
        assert main(_with(good, "-o", tmp_path / f"{name}.mp4") + flags + ["--frames", str(folder)]) == 0
        return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]

    one = frames(["--official"], "one")
    spelled = frames(["--render", "classic", "--f0", "official", "--precision", "fp32", "--backend", "torch"],
                     "spelled")
    assert len(one) == len(spelled) > 100 and one[0].shape == (256, 256, 3)
    assert all(np.array_equal(a, b) for a, b in zip(one, spelled))


def test_small_checkpoint_generates_playable_video(good, tmp_path):
    assert main(good) == 0
    info = probe_video(tmp_path / "out.mp4")
    assert info.frame_count == 110 and info.audio_codec == "aac"


@pytest.mark.parametrize("flag,value,message", [
    ("--image", "missing.png", "image not found"),
    ("--audio", "missing.wav", "audio not found"),
    ("--phonemes", "missing.json", "phoneme file not found"),
    ("--pose", "1,2,3", "--pose needs six numbers"),
])
def test_bad_arguments(good, flag, value, message, tmp_path, capsys):
    argv = _with(good, flag, tmp_path / value if value.startswith("missing") else value)
    assert message in _run_error(argv, capsys)
    assert not (tmp_path / "out.mp4").exists()


def test_not_an_image_and_corrupt_audio(good, data, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert "notes.png" in _run_error(_with(good, "--image", text), capsys)
    bad_audio = data / "audio" / "edge_bad_fmtchunk.wav"
    assert "edge_bad_fmtchunk.wav" in _run_error(_with(good, "--audio", bad_audio), capsys)
    empty = data / "audio" / "edge_null_0samples.wav"
    assert "edge_null_0samples.wav" in _run_error(_with(good, "--audio", empty), capsys)
    assert not (tmp_path / "out.mp4").exists()


def test_wrong_checkpoints(good, official_checkpoint_dir, tmp_path, capsys):
    assert "neither avct weights" in _run_error(_with(good, "--checkpoint", tmp_path), capsys)
    only_a2p = tmp_path / "a2p"
    only_a2p.mkdir()
    (only_a2p / "audio2pose.ckpt").symlink_to(official_checkpoint_dir / "audio2pose.ckpt")
    assert "lacks the keypoint_detector, generator, avct weights" in _run_error(
        _with(good, "--checkpoint", only_a2p), capsys)
    assert not (tmp_path / "out.mp4").exists()


def test_entry_point_prints_one_line_without_traceback(tmp_path):
    avct = Path(sys.executable).with_name("avct")
    cmd = [str(avct)] if avct.exists() else [sys.executable, "-m", "avct"]
    proc = subprocess.run(cmd + ["generate", "--image", str(tmp_path / "x.png"), "--audio", "y.wav",
                                 "--checkpoint", str(tmp_path), "-o", str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"avct: error: image not found: {tmp_path / 'x.png'}"


def test_generate_combines_runs(good, small_checkpoint_dir, tmp_path):
    """Weights of separate training runs (e.g. avct + headmotion) are used together without conversion."""
    from avct.weights import AvctModels, load_models, save_models

    full = load_models(small_checkpoint_dir)
    avct_run = save_models(AvctModels(full.config, keypoint_detector=full.keypoint_detector,
                                      generator=full.generator, avct=full.avct), tmp_path / "avct_run" / "weights")
    head_run = save_models(AvctModels(full.config, head_motion=full.head_motion), tmp_path / "head_run")
    argv = _with(good, "--checkpoint", avct_run.parent)  # a run folder (its weights/ inside)
    argv += ["--checkpoint", str(head_run), "--frames", str(tmp_path / "frames")]
    assert main(argv) == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == 110


def test_front_end_in_its_own_process_or_here_gives_the_same_video(good, tmp_path, monkeypatch):
    """`generate` starts the speech front-end in a child process; where none can start it runs in this
    one, later. The frames are the same either way."""
    from avct.audio import frontend_process

    rate, samples = scipy.io.wavfile.read(good[good.index("--audio") + 1])
    scipy.io.wavfile.write(tmp_path / "second.wav", rate, samples[:rate])  # 1 s: two dozen frames are enough here
    argv = _with(_without(good, "--phonemes"), "--audio", tmp_path / "second.wav")
    assert main(argv + ["--frames", str(tmp_path / "child")]) == 0

    def no_process(*args, **kwargs):
        raise OSError("no child processes here")

    monkeypatch.setattr(frontend_process.FrontendProcess, "__init__", no_process)
    assert main(argv + ["--frames", str(tmp_path / "here")]) == 0
    child, here = sorted((tmp_path / "child").glob("*.png")), sorted((tmp_path / "here").glob("*.png"))
    assert len(child) == len(here) >= 20
    for a, b in zip(child, here):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))

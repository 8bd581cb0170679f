"""Motion controls (still, pose_scale, pose_from, mouth_scale): the transformations on known arrays,
and what they do to real frames of the bundled weights on 2 s of the example speech (dlib landmarks of
the generated frames)."""
from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from avct.cli.generate import generate_options
from avct.cli import build_parser, main
from avct.errors import AvctError
from avct.face.landmarks import detect_faces
from avct.models.keypoints import Keypoints
from avct.inference.motion_controls import (hold_missing, hold_pose, loop_frames, scale_common_translation, scale_mouth,
                                  scale_poses, transfer_pose_changes)
from avct.inference.options import GenerateOptions

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples" / "astronaut.png"
SPEECH = ROOT / "examples" / "speech_librivox_austen_7s.wav"
POSE_CLIP = "vox2_man_hoodie_620900105_pcavs.mp4"  # a head that turns and sways a lot in its first 2 s
REF = np.array([0.05, -0.1, 0.02, 3.0, 20.0, 240.0])


# ---- the transformations --------------------------------------------------------------------------

def test_pose_scale_is_affine_about_the_reference_per_component():
    poses = REF + np.array([[0, 0, 0, 0, 0, 0], [0.1, -0.2, 0.3, 4, -5, 6], [-0.05, 0.0, 0.01, -2, 1, -10]])
    np.testing.assert_array_equal(scale_poses(poses, REF, 0.0), hold_pose(REF, 3))
    np.testing.assert_allclose(scale_poses(poses, REF, 1.0), poses, rtol=0, atol=1e-12)
    want = REF + 2.5 * (poses - REF)
    np.testing.assert_allclose(scale_poses(poses, REF, 2.5), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scale_poses(poses, REF, 2.5)[1], REF + [0.25, -0.5, 0.75, 10, -12.5, 15], atol=1e-12)


def test_pose_video_track_holds_lost_frames_and_loops_back_and_forth():
    nan = [np.nan] * 6
    track = np.array([nan, [1, 1, 1, 1, 1, 1], nan, nan, [3, 3, 3, 3, 3, 3]], dtype=np.float64)
    np.testing.assert_array_equal(hold_missing(track)[:, 0], [1, 1, 1, 1, 3])  # leading: first found; then held
    with pytest.raises(ValueError):
        hold_missing(np.full((3, 6), np.nan))
    np.testing.assert_array_equal(loop_frames(4, 11), [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2])
    np.testing.assert_array_equal(loop_frames(5, 3), [0, 1, 2])  # cut when the video is longer
    np.testing.assert_array_equal(loop_frames(1, 3), [0, 0, 0])
    video = np.array([[0.1, 0, 0, 10, 20, 300], [0.3, 0, 0, 12, 20, 300], [0.2, 0, 0, 16, 20, 300]])
    got = transfer_pose_changes(video, REF, 5)   # changes from frame 0: Rx 0, .2, .1; Tx 0, 2, 6
    np.testing.assert_allclose(got[:, 0] - REF[0], [0, 0.2, 0.1, 0.2, 0], atol=1e-12)
    np.testing.assert_allclose(got[:, 3] - REF[3], [0, 2, 6, 2, 0], atol=1e-12)
    np.testing.assert_allclose(got[:, [1, 2, 4, 5]], np.tile(REF[[1, 2, 4, 5]], (5, 1)), atol=1e-12)


def test_mouth_scale_and_common_translation_on_keypoints():
    g = torch.Generator().manual_seed(0)
    speech = Keypoints(torch.rand(5, 10, 2, generator=g) * 2 - 1, torch.rand(5, 10, 2, 2, generator=g))
    silent = Keypoints(torch.rand(5, 10, 2, generator=g) * 2 - 1, torch.rand(5, 10, 2, 2, generator=g))
    one = scale_mouth(speech, silent, 1.0)
    torch.testing.assert_close(one.value, speech.value, rtol=0, atol=1e-7)
    zero = scale_mouth(speech, silent, 0.0)
    assert torch.equal(zero.value, silent.value) and torch.equal(zero.jacobian, silent.jacobian)
    half = scale_mouth(speech, silent, 0.5)
    torch.testing.assert_close(half.jacobian, (speech.jacobian + silent.jacobian) / 2)

    shift = torch.tensor([[0.0, 0.0], [0.1, -0.2], [0.3, 0.1], [-0.2, 0.0], [0.05, 0.05]])[:, None, :]
    base = torch.rand(1, 10, 2, generator=g) + 0.1 * torch.rand(5, 10, 2, generator=g)
    kp = Keypoints(base + shift, speech.jacobian)
    held = scale_common_translation(kp, kp[0:1], 0.0)
    # no common motion left, the keypoints' motion relative to each other untouched, jacobians untouched
    torch.testing.assert_close((held.value - held.value[0:1]).mean(dim=1), torch.zeros(5, 2), rtol=0, atol=1e-6)
    rel = lambda v: v - v.mean(dim=1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(rel(held.value), rel(kp.value), rtol=0, atol=1e-6)
    assert held.jacobian is kp.jacobian
    assert torch.equal(scale_common_translation(kp, kp[0:1], 1.0).value, kp.value)


def test_still_and_pose_from_exclude_each_other_and_cli_flags_parse():
    args = build_parser().parse_args(["generate", "--image", "a.png", "--audio", "b.wav", "-o", "c.mp4", "--still",
                                      "--mouth-scale", "0.5", "--face", "center"])
    assert generate_options(args) == GenerateOptions(still=True, mouth_scale=0.5, face="center")
    args = build_parser().parse_args(["generate", "--image", "a.png", "--audio", "b.wav", "-o", "c.mp4",
                                      "--pose-scale", "1.5", "--pose-from", "v.mp4", "--face", "1", "--no-crop"])
    assert generate_options(args) == GenerateOptions(pose_scale=1.5, pose_from="v.mp4", face=1, crop=False)
    with pytest.raises(AvctError, match="exclude each other"):
        GenerateOptions(still=True, pose_from="v.mp4")


@pytest.mark.parametrize("flags,message", [
    (["--pose-scale", "9"], "pose_scale must be between 0 and 3"),
    (["--mouth-scale", "x"], "mouth_scale must be a number"),
    (["--still", "--pose-from", str(IMAGE)], "exclude each other"),
    (["--pose-from", "nothing.mp4"], "pose video not found"),
])
def test_bad_motion_flags_are_one_line_errors(flags, message, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert main(["generate", "--image", str(IMAGE), "--audio", str(SPEECH), "-o", str(out), *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("avct: error:") and message in err and "\n" not in err
    assert not out.exists()


# ---- real frames --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Bundled weights, the example photo and the first 2 s of the example speech."""
    from avct.audio.decode import load_audio
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import load_reference, load_speech

    audio = load_audio(SPEECH)
    short = tmp_path_factory.mktemp("speech") / "speech_2s.wav"
    pcm = (np.clip(audio.samples[: 2 * audio.sample_rate], -1, 1) * 32767).astype(np.int16)
    with wave.open(str(short), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate)
        w.writeframes(pcm.tobytes())
    # PyTorch: the pixel thresholds below are the renderer's, and int8's rounding moves with the thread count
    # (the still nose strays 1.0 px with one thread, 0.89 px in PyTorch with any)
    pipe = Pipeline.load(None, backend="torch")
    return pipe, load_reference(IMAGE), load_speech(short)


def _frames(setup, count: int | None = None, **options) -> np.ndarray:
    """The animated 256² face crops (--crop-only): the regions and pixel thresholds below are the crop's."""
    pipe, reference, speech = setup
    options = GenerateOptions(crop_only=True, **options)
    return np.stack(list(itertools.islice(pipe.frames(reference, speech, options=options), count)))


@pytest.fixture(scope="module")
def default_frames(setup):
    return _frames(setup)


@pytest.fixture(scope="module")
def still_frames(setup):
    return _frames(setup, still=True)


def _landmarks(frames: np.ndarray) -> np.ndarray:
    out = []
    for frame in frames:
        faces = detect_faces(frame)
        assert faces, "the face is lost in a generated frame"
        out.append(max(faces, key=lambda f: f.area).landmarks)
    return np.asarray(out)


def _nose(frames: np.ndarray) -> np.ndarray:
    """(T, 2) mean of the nose points 27-35 (dlib gives whole pixels; the mean is finer)."""
    return _landmarks(frames)[:, 27:36].mean(axis=1)


def _inner_lip_opening(frames: np.ndarray) -> np.ndarray:
    pts = _landmarks(frames)
    return np.linalg.norm(pts[:, 66] - pts[:, 62], axis=1)


def test_still_holds_the_nose_within_a_pixel_while_the_default_moves_it(setup, default_frames, still_frames):
    assert len(still_frames) == len(default_frames) == setup[2].num_frames
    still = _nose(still_frames)
    deviation = np.abs(still - np.median(still, axis=0)).max(axis=0)
    assert np.all(deviation < 1.0), f"still: the nose strays {deviation.round(2)} px from its place"
    travel = np.ptp(_nose(default_frames), axis=0)
    assert travel.max() > 4.0, f"default: the nose travels only {travel.round(1)} px"
    # the lips still move: the frames are not all the same picture
    assert np.abs(still_frames.astype(np.float32) - still_frames[0]).mean(axis=(1, 2, 3)).max() > 0.5


def test_pose_scale_zero_gives_exactly_the_still_frames(setup, still_frames):
    np.testing.assert_array_equal(_frames(setup, 16, pose_scale=0.0), still_frames[:16])


def test_mouth_scale(setup, default_frames, still_frames):
    """1 is exactly the default; 0 (with the head held, which isolates the lips: with the head moving,
    dlib's lip opening on these blurry frames varies with the pose as much as with the speech) leaves
    the lips still."""
    np.testing.assert_array_equal(_frames(setup, 8, mouth_scale=1.0), default_frames[:8])
    count = 24
    silent = _frames(setup, count, still=True, mouth_scale=0.0)
    speaking = still_frames[:count]
    mouth = (slice(None), slice(150, 195), slice(95, 165))  # the mouth region of the 256² crop
    motion = lambda f: np.abs(f[mouth].astype(np.float32) - f[0][mouth[1:]]).mean()  # noqa: E731
    assert motion(speaking) > 0.3 and motion(silent) < 0.1 * motion(speaking), (motion(speaking), motion(silent))
    opening_speaking, opening_silent = _inner_lip_opening(speaking), _inner_lip_opening(silent)
    assert np.ptp(opening_silent) < np.ptp(opening_speaking), (opening_silent, opening_speaking)


def test_pose_from_moves_the_head_like_the_clip(setup, data, default_frames):
    """The pose track is the clip's pose changes on the photo's pose, and the rendered head follows the
    clip's head: the nose's horizontal path correlates with the clip's (it does not without pose_from)."""
    from avct.video.reader import read_video
    from avct.inference.video_poses import video_head_poses

    pipe, reference, speech = setup
    clip = data / "video" / POSE_CLIP
    n = speech.num_frames
    poses = pipe.controlled_head_poses(reference, speech, GenerateOptions(pose_from=str(clip)))
    measured = video_head_poses(clip, max_frames=n)
    assert poses.shape == (n, 6) and not np.isnan(measured).any()
    np.testing.assert_allclose(poses - reference.pose, measured - measured[0], rtol=0, atol=1e-9)
    assert np.ptp(measured[:, 3]) > 10  # the clip's head really moves (mm)

    frames = _frames(setup, pose_from=str(clip))
    clip_nose = _nose(np.stack(list(itertools.islice(read_video(clip), n))))  # a 25 fps clip: frame i = tick i
    follows = np.corrcoef(_nose(frames)[:, 0], clip_nose[:, 0])[0, 1]
    unrelated = np.corrcoef(_nose(default_frames)[:, 0], clip_nose[:, 0])[0, 1]
    assert follows > 0.8 and unrelated < 0.5, (follows, unrelated)

"""What a new user meets: several faces (a plain note, --face to choose), a folder given as a file, a
picture without a face (animated whole from a frontal pose), the picture/sound length note and the
generate help."""
from __future__ import annotations

import itertools
import re
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from avct.cli import main
from avct.errors import AvctError, AvctNotice
from avct.face.head_pose import FRONTAL_POSE
from avct.face.landmarks import detect_faces, select_face

from support.shared_files import IMAGES, require, shared_image

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples" / "astronaut.png"
SPEECH = ROOT / "examples" / "speech_librivox_austen_7s.wav"


def test_several_faces_give_one_plain_note(capsys):
    path = require(IMAGES / "two_people_facerec.jpg")
    assert main(["pose", str(path)]) == 0
    err = capsys.readouterr().err
    assert err == (f"avct: note: 2 faces found in {path}; using the largest "
                   "(--face N or --face center to choose)\n")


def test_face_choice_by_position_or_centre():
    rgb = shared_image("two_people_facerec.jpg")
    faces = detect_faces(rgb)
    assert len(faces) == 2
    centres = [((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces]
    left, right = sorted(range(2), key=lambda i: centres[i][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a face chosen on purpose raises no note
        assert select_face(rgb, 0, source_name="x").box == faces[left].box  # detected anew: compare boxes
        assert select_face(rgb, 1, source_name="x").box == faces[right].box
        middle = np.array([(rgb.shape[1] - 1) / 2, (rgb.shape[0] - 1) / 2])
        nearest = min(range(2), key=lambda i: np.linalg.norm(np.subtract(centres[i], middle)))
        assert select_face(rgb, "center", source_name="x").box == faces[nearest].box
    with pytest.raises(AvctError, match=r"^--face 2 asked for, but x has 2 face\(s\), numbered 0 to 1 "
                                         r"from left to right$"):
        select_face(rgb, 2, source_name="x")


def test_face_option_reaches_the_crop(capsys):
    """`avct pose --face N` crops the chosen face: the two people give two different poses."""
    path = str(require(IMAGES / "two_people_facerec.jpg"))
    poses = []
    for face in ("0", "1"):
        assert main(["pose", path, "--face", face]) == 0
        poses.append(np.array([float(v) for v in capsys.readouterr().out.split(",")]))
    assert np.abs(poses[0] - poses[1]).max() > 1.0  # mm / rad: different heads
    assert main(["pose", path, "--face", "left"]) == 1
    assert "face must be a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--audio", "--image"])
def test_a_folder_given_as_a_file_says_so(flag, tmp_path, capsys):
    argv = {"--image": str(IMAGE), "--audio": str(SPEECH)}
    argv[flag] = str(tmp_path)
    code = main(["generate", "--image", argv["--image"], "--audio", argv["--audio"], "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == f"avct: error: {flag[2:]} is a folder, not a file: {tmp_path}"


@pytest.mark.parametrize("crop", [True, False])
def test_picture_without_a_face_is_animated_whole_from_a_frontal_pose(crop):
    from avct.face.image import read_image, resize_256, to_tensor
    from avct.inference.inputs import load_reference

    path = require(IMAGES / "dog_256_liveportrait.jpg")
    with pytest.warns(AvctNotice, match=r"^no face found in .*dog_256_liveportrait\.jpg; animating the whole "
                                        r"picture from a frontal head pose 0,0,0,0,25,250 \(--pose"):
        ref = load_reference(path, crop=crop)
    np.testing.assert_array_equal(ref.pose, FRONTAL_POSE)
    assert ref.crop_box is None
    assert np.array_equal(ref.image.numpy(), to_tensor(resize_256(read_image(path))).numpy())
    pose = np.array([0.1, 0, 0, 0, 20, 260])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(load_reference(path, crop=crop, pose=pose).pose, pose)
    # with a pose given, only the crop needs a face: --no-crop --pose is silent
    assert [str(w.message).split("; ")[1] for w in caught] == (["animating the whole picture"] if crop else [])


def test_faceless_pictures_give_frames_of_that_picture():
    """The fallback is worth it: the frames are the picture (moved a little), not noise. Correlation of
    the grey levels with the picture itself vs with another picture of the set."""
    import cv2

    from avct.audio.decode import load_audio
    from avct.audio.features import acoustic_features
    from avct.audio.phonemes import SIL_ID
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import Speech, load_reference

    audio = load_audio(SPEECH)
    features = acoustic_features(audio.samples[: audio.sample_rate], audio.sample_rate).astype(np.float32)
    speech = Speech(features, np.full(len(features) // 4, SIL_ID, dtype=np.int64))  # phonemes: silence
    pipe = Pipeline.load()
    grey = lambda rgb: rgb.astype(np.float64).mean(axis=2).ravel()  # noqa: E731
    pictures = {}
    for name in ("dog_256_liveportrait.jpg", "coffee_noface_skimage.png"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AvctNotice)
            ref = load_reference(require(IMAGES / name))
        pictures[name] = (ref.image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        photo = ref.full_photo()
        frames = list(itertools.islice(pipe.frames(ref, speech), 8))  # the default output: the whole picture
        assert len(frames) == 8
        for frame in frames:
            assert frame.shape[:2] == (photo.shape[0] + photo.shape[0] % 2, photo.shape[1] + photo.shape[1] % 2)
            crop = frame[:photo.shape[0], :photo.shape[1]]
            small = lambda rgb: cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)  # noqa: E731  (moved a little)
            assert np.corrcoef(grey(small(crop)), grey(small(photo)))[0, 1] > 0.8
    dog, coffee = pictures.values()
    assert abs(np.corrcoef(grey(dog), grey(coffee))[0, 1]) < 0.5  # what "another picture" scores


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16).tobytes())
    return path


@pytest.mark.parametrize("frames,note", [
    (160, None),    # 6.400 s for 6.444 s: one frame and 4 ms, the normal rounding
    (162, None),
    (150, r"the picture \(6\.00 s\) ends 0\.44 s before the sound \(6\.44 s\); players show the last frame"),
    (170, r"the picture \(6\.80 s\) runs 0\.36 s past the end of the sound \(6\.44 s\); the end is silent"),
])
def test_picture_and_sound_length_note(frames, note, tmp_path):
    from avct.video.writer import VideoWriter

    audio = _wav(tmp_path / "a.wav", 6.444)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with VideoWriter(tmp_path / "o.mp4", fps=25, audio_path=audio, preset="ultrafast") as writer:
            for _ in range(frames):
                writer.write(np.zeros((16, 16, 3), np.uint8))
    notes = [str(w.message) for w in caught if issubclass(w.category, AvctNotice)]
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(str(tmp_path / "o.mp4")), notes
        assert re.search(note, notes[0]), notes


def test_generate_help_says_what_comes_out_and_where_the_model_card_is(capsys):
    from avct.weights.bundled import MODEL_CARD

    with pytest.raises(SystemExit) as info:
        main(["generate", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines where it likes
    assert "whole photo with the face animated" in text and "--crop-only" in text
    assert str(MODEL_CARD) in text and MODEL_CARD.is_file()
    assert "--seed" not in text
    for flag in ("--still", "--pose-scale", "--pose-from", "--mouth-scale", "--face"):
        assert flag in text

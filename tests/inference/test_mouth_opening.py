"""The mouth warp (avct.inference.mouth_opening): analytic maps on a synthetic mouth, and dlib's reading
of a real photo opened by a known amount."""
from __future__ import annotations

import numpy as np
import pytest

from avct.inference.mouth_opening import (JAW, PAUSE_FRAMES, UPPER, MouthShape, aperture_changes, open_mouth, pause_frames,
                                         rest_in_pauses)

from support.shared_files import VIDEOS, require


def synthetic_landmarks(gap: float = 0.0) -> np.ndarray:
    """68 points of an upright face: eyes 60 px apart, nose tip at y=130, mouth 60 px wide at y=160
    (inner lips ``gap`` px apart), chin at y=200."""
    pts = np.zeros((68, 2))
    pts[36:42] = [70, 100]
    pts[42:48] = [130, 100]
    pts[33] = [100, 130]
    pts[8] = [100, 200]
    pts[48], pts[54] = [70, 160], [130, 160]
    for i, x in zip((60, 61, 62, 63, 64), (75, 88, 100, 112, 125)):
        pts[i] = [x, 160 - gap / 2]
    for i, x in zip((60, 67, 66, 65, 64), (75, 88, 100, 112, 125)):
        pts[i] = [x, 160 + gap / 2] if i not in (60, 64) else [x, 160]
    return pts


def identity_map(h: int = 260, w: int = 200) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return x, y


def test_zero_opening_leaves_the_map_alone():
    mouth = MouthShape.from_landmarks(synthetic_landmarks())
    x, y = identity_map()
    before = y.copy()
    assert open_mouth(x, y, mouth, 0.0) is None
    assert np.array_equal(y, before)


def test_opening_moves_the_lips_apart_by_the_amount_asked():
    mouth = MouthShape.from_landmarks(synthetic_landmarks())
    x, y = identity_map()
    opening = 20.0
    shade = open_mouth(x, y, mouth, opening)
    centre = y[:, 100]
    # the lips' meeting line (source row 160): the lower lip shows (1 - UPPER)·o lower, the upper lip
    # UPPER·o higher; the chin (row 200) JAW·o lower
    assert centre[round(160 + (1 - UPPER) * opening)] == pytest.approx(160, abs=0.01)
    assert centre[round(160 - UPPER * opening)] == pytest.approx(160, abs=0.01)
    assert centre[round(200 + JAW * opening)] == pytest.approx(200, abs=0.01)
    # between them the rows read the lips' meeting line, shaded dark in the middle
    gap = slice(round(160 - UPPER * opening) + 1, round(160 + (1 - UPPER) * opening))
    assert np.allclose(centre[gap], 160, atol=0.01)
    assert shade[160, 100] > 0.5 and shade[100, 100] == 0
    # nothing moves above the nose, outside the mouth's columns, or far below the chin; no fold
    untouched = identity_map()[1]
    assert np.array_equal(y[:130], untouched[:130])
    assert np.array_equal(y[:, :60], untouched[:, :60]) and np.array_equal(y[:, 141:], untouched[:, 141:])
    assert np.array_equal(y[240:], untouched[240:])
    assert (np.diff(y, axis=0) >= -1e-4).all()


def test_the_inside_of_an_open_mouth_is_dark_but_for_the_lips_edges():
    """Between the lips the shade is full (the mouth's inside) except for a soft edge at each lip; a small
    opening gets a lighter shade, in proportion up to SHADE_FULL inter-ocular distances."""
    from avct.inference.mouth_opening import SHADE_FULL

    mouth = MouthShape.from_landmarks(synthetic_landmarks())
    x, y = identity_map()
    opening = 20.0  # a third of the 60 px eye distance: more than SHADE_FULL
    shade = open_mouth(x, y, mouth, opening)[:, 100]
    top, bottom = 160 - UPPER * opening, 160 + (1 - UPPER) * opening
    inner = np.arange(int(np.ceil(top + 0.2 * opening)), int(bottom - 0.2 * opening))
    assert len(inner) >= 10 and (shade[inner] == 1.0).all()
    edges = shade[int(top)], shade[int(np.ceil(bottom))]
    assert max(edges) < 0.5
    assert (shade[:int(top) - 1] == 0).all() and (shade[int(bottom) + 2:] == 0).all()
    small = SHADE_FULL * mouth.iod / 2  # half the opening that gets the full shade
    x, y = identity_map()
    assert open_mouth(x, y, mouth, small)[:, 100].max() == pytest.approx(0.5, abs=0.01)


def test_the_opening_fades_towards_the_corners():
    mouth = MouthShape.from_landmarks(synthetic_landmarks())
    x, y = identity_map()
    open_mouth(x, y, mouth, 20.0)
    drop = [float(np.argmax(y[:, c] >= 160.5)) - 160 for c in (100, 112, 125, 138)]
    assert drop[0] > drop[1] > drop[2] > drop[3] >= 0


def test_a_negative_opening_closes_an_open_mouth_and_never_crosses_the_lips():
    mouth = MouthShape.from_landmarks(synthetic_landmarks(gap=10.0))
    x, y = identity_map()
    open_mouth(x, y, mouth, -50.0)  # asks for more than the gap: the lips meet, no further
    centre = y[:, 100]
    assert (np.diff(centre) >= -1e-4).all()
    rows_inside = ((centre > 155.5) & (centre < 164.5)).sum()
    assert rows_inside <= 1  # the 10 px of open mouth are squeezed out


def read_opening(video: str, opening: float) -> tuple[MouthShape, float]:
    """The first frame of a shared clip with its mouth opened by ``opening`` inter-ocular distances (the
    warp and the shade, on the whole photo) -> the photo's mouth and the rise of dlib's aperture on it
    (the lip metric's own measure, avct.eval.lips)."""
    import cv2

    from avct.face.landmark_groups import mouth_aperture
    from avct.face.landmarks import detect_faces
    from avct.inference.mouth_opening import darken
    from avct.video.reader import read_video

    photo = next(iter(read_video(require(VIDEOS / video))))
    mouth = MouthShape.from_landmarks(detect_faces(photo)[0].landmarks)
    x, y = identity_map(*photo.shape[:2])
    shade = open_mouth(x, y, mouth, opening * mouth.pixels_per_aperture())
    opened = cv2.remap(photo, x, y, cv2.INTER_CUBIC)
    darken(opened, shade)
    return mouth, mouth_aperture(detect_faces(opened)[0].landmarks) - mouth.aperture


def test_dlib_reads_the_opening_asked_for_on_a_real_photo():
    """A real face opened by +0.15 inter-ocular distances: dlib's aperture rises by 0.10-0.20."""
    _, change = read_opening("retalking_face5_woman_glasses_red_5s.mp4", 0.15)
    assert 0.10 <= change <= 0.20, change


def test_a_bearded_face_opened_by_a_known_amount_reads_open():
    """A closed mouth in a beard (the first frame of a wide shot, 1280×720): the stretched lip line alone
    read as thicker lips (dlib: 0.41 of an opening of 0.12 here); with the dark inside at least half of it."""
    mouth, change = read_opening("wav2lip_testmov_man_cutaway_23s.mov", 0.12)
    assert mouth.aperture < 0.02  # closed
    assert 0.06 <= change <= 0.18, change


def test_predictions_are_read_from_their_rest_level_and_the_photo_keeps_its_mouth_at_rest():
    predicted = np.array([0.05] * 10 + [0.20] * 10 + [0.12] * 10)   # rest 0.05 (the 5th percentile)
    closed = aperture_changes(predicted, photo_aperture=0.01)           # a closed mouth in the photo
    np.testing.assert_allclose(closed, predicted - 0.05)               # stays closed at rest, opens by the motion
    opened = aperture_changes(predicted, photo_aperture=0.30)          # a wide-open mouth in the photo
    np.testing.assert_allclose(opened, predicted - 0.30)               # closes to the predicted rest in pauses
    assert aperture_changes(np.array([]), 0.1).shape == (0,)


def test_pauses_are_runs_of_quiet_frames_and_the_lips_rest_in_them():
    frames = 40
    features = np.zeros((frames * 4, 41))
    features[:, 13:39] = -2.0                       # speech
    features[10 * 4:22 * 4, 13:39] = -2.0 - 6.0     # frames 10-21: 26 dB quieter for 0.48 s, a pause
    features[26 * 4:34 * 4, 13:39] = -2.0 - 6.0     # frames 26-33: 0.32 s, a gap between words: too short
    features[35 * 4:, 13:39] = -2.0 - 3.0           # frames 35-39: 13 dB quieter, still speech
    pause = pause_frames(features, frames)
    assert PAUSE_FRAMES == 10
    assert np.flatnonzero(pause).tolist() == list(range(10, 22))
    predicted = np.linspace(0.0, 0.29, frames)      # the network opening the mouth through the pause
    rested = rest_in_pauses(predicted, pause)
    rest = np.percentile(predicted, 5)
    np.testing.assert_allclose(rested[11:21], rest)                      # the pause's inside is at rest
    assert rested[9] == pytest.approx((predicted[8] + predicted[9] + rest) / 3)   # eased into the pause
    np.testing.assert_array_equal(rested[:9], predicted[:9])            # speech untouched
    np.testing.assert_array_equal(rested[23:], predicted[23:])
    np.testing.assert_array_equal(rest_in_pauses(predicted, np.zeros(frames, bool)), predicted)


# ---- through the pipeline: the lip-aperture network's prediction opens the photo's mouth ------------------
def constant_lip_model(aperture: float):
    """A lip-aperture network that predicts ``aperture`` for every frame, whatever the speech (its
    presence in the weights switches the mouth opening on)."""
    import torch

    from avct.config import LipApertureConfig
    from avct.models.lip_aperture import LipApertureNet

    net = LipApertureNet(LipApertureConfig(width=8))
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(aperture)
    return net.eval()


def test_generated_frames_open_the_mouth_by_the_predicted_aperture(tmp_path):
    """Bundled renderer, head held still, a lip model whose predictions are the photo's own closed mouth
    in the speech's pauses (here a lead-in of faint noise, 0.4 s: the shortest pause that rests the lips)
    and that + 0.15 elsewhere: dlib reads the speaking
    frames' mouths 0.05-0.2 wider than without the lip model (its inner-lip points find about half to
    all of a stretched gap at 256²), the paused ones as before (within 0.03: only the AVCT's keypoints
    move the lips there); with mouth_scale 0 (no speech-caused motion at all) every frame's mouth is
    the same."""
    from pathlib import Path

    from avct.face.image import read_image
    from avct.inference.options import GenerateOptions
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import load_reference, load_speech
    from avct.weights import default_weights_dir
    from avct.weights import load_models
    from avct.face.landmark_groups import mouth_aperture
    from avct.face.landmarks import detect_faces

    from avct.audio.decode import load_audio
    from avct.eval.heldout import write_wav
    from avct.media import SAMPLE_RATE

    from support.media_files import first_seconds

    root = Path(__file__).resolve().parents[2]
    models = load_models(default_weights_dir())
    models.lip_aperture = None
    photo = read_image(root / "examples" / "astronaut.png")
    reference = load_reference(photo)
    own = MouthShape.from_landmarks(reference.landmarks).aperture
    clip = load_audio(first_seconds(root / "examples" / "speech_librivox_austen_7s.wav", tmp_path / "s.wav", 0.6))
    lead_in = np.random.default_rng(0).normal(0.0, 3.0, SAMPLE_RATE * 2 // 5)   # 0.4 s of faint noise
    speech = load_speech(write_wav(tmp_path / "lead_in.wav", np.concatenate([lead_in, clip.samples])))
    pause = pause_frames(speech.features, speech.num_frames)
    k = int(np.argmin(pause))                        # the leading pause's length
    assert k >= PAUSE_FRAMES and not pause[k:].any()
    still = GenerateOptions(still=True, crop_only=True)

    def apertures(pipeline, options):
        return [mouth_aperture(detect_faces(f)[0].landmarks) for f in pipeline.frames(reference, speech, options=options)]

    closed = apertures(Pipeline(models), still)
    models.lip_aperture = constant_lip_model(own)
    pipeline = Pipeline(models)
    pipeline.lip_apertures = lambda _: np.where(pause, own, own + 0.15)
    opened = apertures(pipeline, still)
    unscaled = apertures(pipeline, still.replace(mouth_scale=0.0))
    assert np.ptp(unscaled) < 1e-9 and np.abs(np.array(closed) - unscaled[0]).max() < 0.03
    change = np.array(opened) - np.array(closed)
    assert np.abs(change[:k - 1]).max() < 0.03, change.round(3)       # frame k - 1 eases into the speech
    assert 0.05 <= change[k + 1:].min() and change[k + 1:].max() <= 0.2, change.round(3)


def test_the_mouth_is_found_with_and_without_the_crop():
    """The mouth opening needs the photo's landmarks: with the crop they come from the face chosen for
    it; with --no-crop from the 256² picture the head pose is read from, scaled back to the photo."""
    from pathlib import Path

    from avct.face.image import read_image
    from avct.inference.inputs import load_reference

    photo = read_image(Path(__file__).resolve().parents[2] / "examples" / "astronaut.png")
    cropped, whole = load_reference(photo), load_reference(photo, crop=False)
    assert cropped.landmarks.shape == whole.landmarks.shape == (68, 2)
    assert np.abs(cropped.landmarks[48:68] - whole.landmarks[48:68]).max() < 3.0  # photo pixels
    assert load_reference(photo, crop=False, pose=whole.pose).landmarks is None  # no detection at all

"""Lip metric (avct.eval.lips): analytic curves with known answers, the silence rule on synthetic audio,
and real clips measured through dlib (a clip against itself, a frozen mouth)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from avct.eval.lips import (FrameMeasures, compare_measures, face_sharpness, lip_statistics, measure_frames,
                            measure_video, sharpness_ratio, silent_frames, timing_peak, timing_profile)
from avct.face.landmark_groups import aperture_curve, mouth_aperture

VIDEO = "vox2_man_hoodie_620900105_pcavs.mp4"  # 4.4 s, 224 px, 25 fps, one face throughout
FPS = 25.0


def face_with_aperture(gap: float, iod: float = 60.0, shift=(100.0, 80.0), angle: float = 0.0) -> np.ndarray:
    """68 landmarks whose inner lips are ``gap`` inter-ocular distances apart (eyes ``iod`` px apart),
    rotated by ``angle`` and shifted: the aperture is ``gap`` whatever the pose and size."""
    pts = np.zeros((68, 2))
    pts[36:42] = [-iod / 2, 0.0]
    pts[42:48] = [iod / 2, 0.0]
    for k, (upper, lower) in enumerate(((61, 67), (62, 66), (63, 65))):
        x = (k - 1) * 0.2 * iod
        pts[upper] = [x, 0.8 * iod]
        pts[lower] = [x, 0.8 * iod + gap * iod]
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, -s], [s, c]]).T + np.asarray(shift)


def curve(values) -> np.ndarray:
    return aperture_curve([face_with_aperture(v, iod=40 + 5 * (i % 3), angle=0.01 * i) for i, v in enumerate(values)])


# ---- analytic ------------------------------------------------------------------------------------
def test_aperture_is_the_inner_lip_gap_in_eye_distances():
    assert mouth_aperture(face_with_aperture(0.25)) == pytest.approx(0.25, abs=1e-12)
    assert mouth_aperture(face_with_aperture(0.25, iod=200, shift=(-7, 3), angle=0.4)) == pytest.approx(0.25, abs=1e-12)
    assert mouth_aperture(face_with_aperture(0.0)) == 0.0
    assert math.isnan(mouth_aperture(np.zeros((68, 2))))   # eyes coincide: undefined
    assert np.isnan(aperture_curve([None, face_with_aperture(0.1)])[0])


def test_sine_against_sine():
    t = np.arange(100) / FPS
    real = 0.2 + 0.1 * np.sin(2 * np.pi * 1.5 * t)          # 1.5 Hz mouth opening, 6 periods in 4 s
    same = lip_statistics(curve(0.2 + 0.05 * np.sin(2 * np.pi * 1.5 * t)), curve(real))
    assert same.r == pytest.approx(1.0, abs=1e-9)
    assert same.amplitude == pytest.approx(0.5, abs=1e-9)   # half the real opening
    quarter = lip_statistics(curve(0.2 + 0.1 * np.cos(2 * np.pi * 1.5 * t)), curve(real))  # 90° out of phase
    assert abs(quarter.r) < 1e-6 and quarter.amplitude == pytest.approx(1.0, abs=1e-9)
    opposite = lip_statistics(curve(0.2 - 0.1 * np.sin(2 * np.pi * 1.5 * t)), curve(real))
    assert opposite.r == pytest.approx(-1.0, abs=1e-9)
    frozen = lip_statistics(curve(np.full(100, 0.2)), curve(real))
    assert frozen.r == 0.0 and frozen.amplitude < 1e-12
    assert same.pairs == 100 and same.silence_gap is None


def test_timing_profile_finds_a_real_mouth_that_moves_late():
    """A real mouth that moves 2 frames (80 ms) after the generated one: r is lower at lag 0 and exactly 1
    at lag +2; the same at 50 fps for the real clip (the lag counts generated frames: 4 real frames)."""
    rng = np.random.default_rng(0)
    opening = np.convolve(rng.random(140), np.ones(3) / 3, mode="same")   # a non-periodic mouth, 25 fps
    generated = FrameMeasures(opening[10:110], np.ones(100), FPS)
    real = FrameMeasures(opening[8:108], np.ones(100), FPS)                # real[i] = generated[i - 2]
    profile = timing_profile(generated, real, max_lag=3)
    assert sorted(profile) == [-3, -2, -1, 0, 1, 2, 3]
    assert profile[2] == pytest.approx(1.0, abs=1e-9)
    assert profile[0] < 0.9 and max(profile, key=profile.get) == 2
    assert profile[0] == pytest.approx(compare_measures(generated, real).lips.r, abs=1e-12)  # lag 0 is the metric
    real50 = FrameMeasures(np.repeat(opening[8:108], 2), np.ones(200), 2 * FPS)   # each frame shown twice
    profile50 = timing_profile(generated, real50, max_lag=3)
    assert profile50[2] == pytest.approx(1.0, abs=1e-9) and max(profile50, key=profile50.get) == 2
    lag, r = timing_peak(generated, real)
    assert lag == 2 and r == pytest.approx(1.0, abs=1e-9)
    frozen = FrameMeasures(np.full(100, np.nan), np.ones(100), FPS)            # no face anywhere: no peak
    assert timing_peak(frozen, real) == (None, None)


def test_frames_without_a_face_are_left_out():
    t = np.arange(60) / FPS
    real = 0.2 + 0.1 * np.sin(2 * np.pi * t)
    gen = real.copy()
    gen[::7] = np.nan                       # generated frames without a face
    real_missing = real.copy()
    real_missing[3::11] = np.nan            # real frames without a face
    stats = lip_statistics(gen, real_missing)
    assert stats.r == pytest.approx(1.0, abs=1e-12) and stats.amplitude == pytest.approx(1.0, abs=1e-12)
    assert stats.pairs == int((np.isfinite(gen) & np.isfinite(real_missing)).sum())
    assert lip_statistics(np.full(5, np.nan), real[:5]) == lip_statistics(np.full(5, np.nan), real[:5])
    nothing = lip_statistics(np.full(5, np.nan), real[:5])
    assert nothing.r is None and nothing.amplitude is None and nothing.pairs == 0
    assert lip_statistics(real[:10], np.full(10, 0.2)).r is None   # real lips still: r undefined, not 0


def test_silence_gap():
    real = np.tile([0.3, 0.1, 0.3, 0.0, 0.0, 0.0], 5)
    silent = real == 0.0
    gen = np.where(silent, 0.12, real)      # mouth left 0.12 open in every pause
    stats = lip_statistics(gen, real, silent)
    assert stats.silence_gap == pytest.approx(0.12, abs=1e-12) and stats.silent_pairs == 15
    assert lip_statistics(real, real, silent).silence_gap == 0.0
    assert lip_statistics(gen, real, np.zeros(30, bool)).silence_gap is None


def test_silent_frames_rule():
    """1 s of speech-like tone, a 0.5 s pause, 1 s of tone with a 40 ms dip, then 120 ms of noise 30 dB down."""
    rate = 16000
    rng = np.random.default_rng(0)
    frame = rate // 25
    speech = lambda n: 3000 * np.sin(2 * np.pi * 220 * np.arange(n) / rate) * (1 + 0.3 * rng.standard_normal(n))
    samples = np.concatenate([speech(25 * frame), np.zeros(12 * frame) + rng.normal(0, 20, 12 * frame),
                              speech(10 * frame), np.zeros(frame), speech(14 * frame),
                              rng.normal(0, 60, 3 * frame)])
    silent = silent_frames(samples, rate, 66, 25.0)
    expected = np.zeros(66, bool)
    expected[25:37] = True                 # the pause
    expected[62:65] = True                 # 3 quiet frames at the end: a pause of exactly the minimum length
    np.testing.assert_array_equal(silent, expected)   # the one-frame dip (frame 47) is not a pause
    assert not silent_frames(samples, rate, 70, 25.0)[65:].any()  # frames after the audio: unknown


def test_sharpness():
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    import cv2

    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    box = (20.0, 30.0, 150.0, 170.0)
    assert face_sharpness(blurred, box) < 0.05 * face_sharpness(sharp, box)
    assert face_sharpness(sharp, box) == face_sharpness(np.pad(sharp, ((5, 0), (9, 0), (0, 0))), (29, 35, 159, 175))
    assert math.isnan(face_sharpness(sharp, (300, 300, 400, 400)))
    assert sharpness_ratio([1.0, 2.0, 9.0], [4.0, 4.0, np.nan]) == 0.5
    assert sharpness_ratio([np.nan], [1.0]) is None


# ---- real clips ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(data) -> FrameMeasures:
    return measure_video(data / "video" / VIDEO)


def test_real_clip_against_itself(real, data):
    from avct.audio.decode import load_audio

    again = measure_video(data / "video" / VIDEO)        # an independent decode and detection
    audio = load_audio(data / "video" / VIDEO)
    result = compare_measures(again, real, (audio.samples, audio.sample_rate))
    assert result.frames == len(real) == 108 and result.lips.pairs == 108
    assert result.lips.r == pytest.approx(1.0, abs=1e-12)
    assert result.lips.amplitude == pytest.approx(1.0, abs=1e-12)
    assert result.sharpness == pytest.approx(1.0, abs=1e-12)
    assert result.lips.silence_gap in (None, 0.0)
    assert 0.02 < np.nanstd(real.aperture) < 0.3          # a talking mouth: it opens and closes


def test_frozen_mouth_scores_zero(real, data):
    from avct.video.reader import read_video

    first = next(read_video(data / "video" / VIDEO))
    static = measure_frames(itertools.repeat(first, 40), FPS)     # first frame repeated
    result = compare_measures(static, real)
    assert result.lips.pairs == 40
    assert result.lips.r == 0.0 and result.lips.amplitude == 0.0
    assert result.sharpness == pytest.approx(static.sharpness[0] / np.median(real.sharpness[:40]))


def test_real_clip_at_another_frame_rate(real):
    """The real clip is resampled to the generated frame times (nearest frame by time)."""
    half_rate = FrameMeasures(real.aperture[::2], real.sharpness[::2], FPS / 2)   # 12.5 fps "generated"
    result = compare_measures(half_rate, real)
    assert result.frames == 54 and result.lips.r == pytest.approx(1.0, abs=1e-12)

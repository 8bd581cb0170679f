"""LMD: 0 for identical faces, invariant to translation, scale and in-plane rotation."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from avct.eval.lmd import frame_landmarks, landmark_distance, normalize_mouth, pair_indices, video_lmd

VIDEO = "vox2_man_hoodie_620900105_pcavs.mp4"


@pytest.fixture(scope="module")
def frames(data):
    from avct.video.reader import read_video

    return list(itertools.islice(read_video(data / "video" / VIDEO), 0, 100, 20))  # 5 frames


@pytest.fixture(scope="module")
def landmarks(frames):
    out = [frame_landmarks(f) for f in frames]
    assert all(lm is not None for lm in out)
    return out


def test_identical_is_zero(landmarks):
    for lm in landmarks:
        assert landmark_distance(lm, lm) == 0.0
    lmds = video_lmd(dict(enumerate(landmarks)), dict(enumerate(landmarks)), pair_indices(5, 25, 5, 25))
    assert lmds == [0.0] * 5


def test_similarity_transform_of_landmarks_changes_nothing(landmarks):
    rng = np.random.default_rng(0)
    for lm in landmarks:
        angle, scale, shift = rng.uniform(-0.5, 0.5), rng.uniform(0.3, 4.0), rng.uniform(-500, 500, 2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        moved = scale * lm @ rot.T + shift
        assert landmark_distance(moved, lm) < 1e-12
        np.testing.assert_allclose(normalize_mouth(moved), normalize_mouth(lm), atol=1e-12)


def test_moved_and_scaled_frames_stay_close(frames, landmarks):
    """Real frames translated (edge padding) and scaled: only the detector's jitter remains, well below
    the distance between different mouth shapes of the same video, and nowhere near the pixel shift."""
    moved = [cv2.resize(np.pad(f, ((30, 10), (50, 0), (0, 0)), mode="edge"), None, fx=1.5, fy=1.5,
                        interpolation=cv2.INTER_CUBIC) for f in frames]
    same = [landmark_distance(frame_landmarks(m), lm) for m, lm in zip(moved, landmarks)]
    different = [landmark_distance(a, b) for a, b in itertools.combinations(landmarks, 2)]
    assert np.mean(same) < 0.03, same
    assert np.mean(same) < 0.6 * np.mean(different), (same, different)


def test_pair_indices():
    assert pair_indices(3, 25, 5, 25) == [(0, 0), (1, 1), (2, 2)]
    assert pair_indices(5, 25.0, 6, 30.0) == [(0, 0), (1, 1), (2, 2), (3, 4), (4, 5)]
    assert pair_indices(0, 25, 5, 25) == []

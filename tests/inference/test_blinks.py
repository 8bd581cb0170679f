"""Blinks: the plan (when, how long, how far closed; seeded from the inputs) on known answers, the eyelid
warp on an analytic eye, and real photos read back by dlib (the eyes close, the brows stay)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from avct.eval.eyes import blink_events, eye_openness
from avct.inference.blinks import blink_plan, blink_profile, blink_seed, pause_starts
from avct.inference.eyelids import OVERLAP, close_eye, eye_shapes
from avct.inference.options import GenerateOptions

FPS = 25.0


def _blinks(closure: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each blink of a plan (runs of closure > 0)."""
    on = np.concatenate([[0], (closure > 0).astype(int), [0]])
    edges = np.flatnonzero(np.diff(on))
    return list(zip(edges[::2], edges[1::2]))


def test_profile_closes_fast_and_opens_slower():
    for frames in range(3, 8):  # 120-280 ms at 25 fps
        profile = blink_profile(frames)
        peak = int(np.argmax(profile))
        assert len(profile) == frames and profile[peak] == 1.0 and np.all(profile > 0)
        assert peak + 1 < frames - peak            # closing frames (to the peak) fewer than opening ones
        assert np.all(np.diff(profile[peak:]) < 0)  # then it only opens


def test_plan_rate_intervals_and_durations_over_ten_minutes():
    n = int(600 * FPS)
    closure = blink_plan(n, 18.0, seed=1)
    blinks = _blinks(closure)
    assert 0.85 * 180 <= len(blinks) <= 1.15 * 180                    # 18 a minute
    starts = np.array([a for a, _ in blinks]) / FPS
    intervals = np.diff(starts)
    assert intervals.min() >= 0.6 - 1 / FPS and intervals.std() / intervals.mean() > 0.3  # irregular
    lengths = np.array([b - a for a, b in blinks]) / FPS
    assert lengths.min() >= 0.08 and lengths.max() <= 0.30             # 100-300 ms, at 25 fps
    assert np.all([closure[a:b].max() == 1.0 for a, b in blinks])      # every blink shuts the eyes


def test_plan_is_seeded_from_the_inputs_and_off_at_rate_zero():
    features, other = np.arange(400, dtype=np.float32), np.arange(400, dtype=np.float32) + 1
    seed = blink_seed(features, np.ones((68, 2)))
    assert seed == blink_seed(features.copy(), np.ones((68, 2)))        # not the clock
    a, b = blink_plan(2000, 18, seed=seed), blink_plan(2000, 18, seed=seed)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, blink_plan(2000, 18, seed=blink_seed(other, np.ones((68, 2)))))
    assert not blink_plan(2000, 0.0, seed=seed).any()


def test_blinks_move_to_the_starts_of_pauses():
    n = int(300 * FPS)
    pauses = np.zeros(n, bool)
    for start in range(100, n, 90):          # a 0.8 s pause every 3.6 s
        pauses[start:start + 20] = True
    begins = set(pause_starts(pauses).tolist())
    at_pause = [a - 1 in begins for a, _ in _blinks(blink_plan(n, 18, pauses, seed=3))]
    unplanned = [a - 1 in begins for a, _ in _blinks(blink_plan(n, 18, None, seed=3))]
    # a blink within 0.7 s of a pause's start moves there: 1.4 s of every 3.6 s here
    assert np.mean(at_pause) > 0.3 and np.mean(at_pause) > 10 * np.mean(unplanned), (at_pause, unplanned)


def _eye_landmarks() -> np.ndarray:
    """68 points with two almond eyes 40 px wide and 12 px open, brows 30 px above (others far away)."""
    pts = np.tile([500.0, 500.0], (68, 1))
    for first, cx in ((36, 100.0), (42, 200.0)):
        pts[first:first + 6] = [[cx - 20, 100], [cx - 7, 94], [cx + 7, 94], [cx + 20, 100], [cx + 7, 106],
                                [cx - 7, 106]]
    pts[17:22] = [[x, 70.0] for x in np.linspace(80, 120, 5)]
    pts[22:27] = [[x, 70.0] for x in np.linspace(180, 220, 5)]
    return pts


def test_the_warp_brings_the_lash_line_down_to_the_lower_lid_and_nothing_else_moves():
    eyes = eye_shapes(_eye_landmarks())
    ys, xs = np.mgrid[0:140, 60:140].astype(np.float32)
    map_y = ys.copy()
    assert close_eye(xs, map_y, eyes[0], 0.0) is None and np.array_equal(map_y, ys)
    weight = close_eye(xs, map_y, eyes[0], 1.0)
    centre = list(range(60, 140)).index(100)
    upper, lower = eyes[0].lids(np.float32([100.0]))
    # the frame's row at the lower lid (and OVERLAP eye widths below it: dlib's lower-lid points sit on the
    # lid's inner edge) reads the photo's upper lid: the lashes came down by the whole gap
    shut = int(round(lower[0] + OVERLAP * 40))
    assert map_y[shut - 1, centre] == pytest.approx(upper[0] - 1, abs=0.6)
    # above the fold, below the lower lid and outside the eye's columns: the photo exactly
    assert np.array_equal(map_y[:85], ys[:85]) and np.array_equal(map_y[shut + 1:], ys[shut + 1:])
    outside = (xs < 80) | (xs > 120)
    assert np.array_equal(map_y[outside], ys[outside])
    assert np.all(np.diff(map_y[85:107, centre]) > -13)                   # only the curtain's edge jumps
    assert weight.max() == pytest.approx(1.0) and weight[:85].max() == 0.0


def test_a_blink_option_reaches_every_job_source():
    assert GenerateOptions().blink_rate == 18.0
    assert GenerateOptions.from_mapping({"blink-rate": "0"}).blink_rate == 0.0   # a form field, a CSV cell
    from avct.errors import AvctError

    with pytest.raises(AvctError, match="blink_rate must be between 0 and 60, got 90"):
        GenerateOptions(blink_rate=90)


@pytest.fixture(scope="module")
def real_face(data):
    """The first frame of an unseen speaker's clip as the photo, with 4 s of its speech."""
    from avct.inference import Pipeline, load_reference, load_speech
    from avct.video.reader import read_video

    clip = data / "video" / "hdtf_katiehill_sadtalker_8s.mp4"
    photo = next(iter(read_video(clip)))
    return Pipeline.load(backend="torch"), load_reference(photo), load_speech(clip)


def test_a_real_photo_blinks_as_planned_and_the_brows_stay(real_face):
    from avct.face.landmarks import detect_faces

    pipeline, reference, speech = real_face
    options = GenerateOptions(still=True, mouth_scale=0.0, crop_only=True, size="native", blink_rate=40)
    closures = pipeline.eye_closures(speech, reference, options)
    n = 60
    frames = list(itertools.islice(pipeline.frames(reference, speech, options=options), n))
    landmarks = [detect_faces(f)[0].landmarks for f in frames]
    openness = eye_openness(landmarks)
    landmarks_open = {i: detect_faces(f)[0].landmarks for i, f in enumerate(
        itertools.islice(pipeline.frames(reference, speech, options=options.replace(blink_rate=0)), n)) if closures[i] > 0}
    planned = _blinks(closures[:n])
    assert len(planned) >= 1
    seen = blink_events(openness, FPS)
    assert len(seen) == len(planned), (seen, planned)
    for a, b in planned:
        assert openness[a:b].min() <= 0.6                    # shut: dlib reads the eyes closed
    no_blinks = list(itertools.islice(pipeline.frames(reference, speech, options=options.replace(blink_rate=0)), n))
    assert all(np.array_equal(frames[i], no_blinks[i]) for i in range(n) if closures[i] == 0)
    # in a blink only the eyes change: every changed pixel lies below the brows and within the eyes' columns
    for a, b in planned:
        for i in range(a, b):
            rows, cols = np.nonzero(np.any(frames[i] != no_blinks[i], axis=2))
            brows, eyes = landmarks_open[i][17:27], landmarks_open[i][36:48]
            order = np.argsort(brows[:, 0])
            brow_y = np.interp(cols, brows[order, 0], brows[order, 1])   # the brows' line above each pixel
            assert np.all(rows > brow_y + 2) and rows.max() <= eyes[:, 1].max() + 2
            assert cols.min() >= eyes[:, 0].min() - 2 and cols.max() <= eyes[:, 0].max() + 2

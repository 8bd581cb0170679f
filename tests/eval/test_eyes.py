"""Blinks and head motion as `avct evaluate` measures them: analytic landmark sequences with known answers,
a real clip against itself (its own blinks, head-motion ratio 1) and a still video (no blink, no motion)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from avct.eval.eyes import blink_events, eye_openness, eye_statistics
from avct.eval.head_motion import head_spread, spread_ratio
from avct.face.landmark_groups import eye_aspect_ratio

FPS = 25.0


def face(openness: float = 1.0, shift=(0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """68 points: eyes 40 px wide and 12·openness px open, 60 px apart (the rest in a row below)."""
    pts = np.stack([np.linspace(50, 250, 68), np.full(68, 300.0)], 1)
    h = 6.0 * openness
    for first, cx in ((36, 100.0), (42, 160.0)):
        pts[first:first + 6] = [[cx - 20, 100], [cx - 7, 100 - h], [cx + 7, 100 - h], [cx + 20, 100],
                                [cx + 7, 100 + h], [cx - 7, 100 + h]]
    return pts * scale + np.asarray(shift)


def test_eye_aspect_ratio_is_the_lids_gap_over_the_width():
    assert eye_aspect_ratio(face()) == pytest.approx(12 / 40)
    assert eye_aspect_ratio(face(0.5, shift=(30, -7), scale=2.5)) == pytest.approx(6 / 40)  # size, place drop out
    assert eye_aspect_ratio(face(0.0)) == 0.0


def test_blinks_on_known_curves():
    open_curve = np.ones(100)
    assert blink_events(open_curve, FPS) == []
    one = open_curve.copy()
    one[40:45] = [0.8, 0.5, 0.3, 0.6, 0.8]               # a 5-frame blink (dips below 0.70, back above 0.75)
    assert blink_events(one, FPS) == [(41, 44)]
    jitter = one.copy()
    jitter[44:48] = [0.72, 0.74, 0.71, 0.9]              # hovering between the thresholds is still that blink
    assert blink_events(jitter, FPS) == [(41, 47)]
    double = one.copy()
    double[46:48] = [0.4, 0.9]                           # closes again one frame after reopening: one blink
    assert blink_events(double, FPS) == [(41, 47)]
    down = open_curve.copy()
    down[20:60] = 0.5                                    # eyes cast down for 1.6 s: not a blink
    assert blink_events(down, FPS) == []
    missing = one.copy()
    missing[10:20] = np.nan                              # frames without a face start nothing
    assert blink_events(missing, FPS) == [(41, 44)]


def test_eye_statistics_and_head_spread_of_landmark_sequences():
    seq = [face(o) for o in [1, 1, 1, 0.5, 0.1, 0.5, 1, 1] * 10]   # a blink every 8 frames (0.32 s)
    stats = eye_statistics(seq, len(seq) / FPS)
    assert stats.blinks == 10 and stats.per_minute == pytest.approx(10 / (80 / FPS) * 60)
    assert stats.deepest == pytest.approx(0.1)
    assert np.allclose(eye_openness([face()] * 3 + [None]), [1, 1, 1, np.nan], equal_nan=True)
    still = [face()] * 20
    assert eye_statistics(still, 20 / FPS).blinks == 0 and head_spread(still) == 0.0
    moving = [face(shift=(3 * np.sin(t), 4 * np.cos(t))) for t in np.linspace(0, 2 * np.pi, 200, endpoint=False)]
    # nose tip moves on an ellipse of radii 3, 4 px: spread sqrt(4.5 + 8) px over an inter-ocular distance of 60
    assert head_spread(moving) == pytest.approx(np.sqrt(4.5 + 8) / 60, rel=1e-3)
    doubled = [face(shift=(6 * np.sin(t), 8 * np.cos(t))) for t in np.linspace(0, 2 * np.pi, 200, endpoint=False)]
    assert spread_ratio(head_spread(doubled), head_spread(moving)) == pytest.approx(2.0, rel=1e-3)
    assert spread_ratio(0.1, 0.0) is None and head_spread([face()]) is None


def test_evaluate_reports_a_clips_own_blinks_and_a_still_videos_none(data, tmp_path):
    """Every frame (--every 1): the real clip against itself has its own blink rate on both sides and head
    motion 1; its first frame held still has 0 blinks, closure 1 and head motion 0."""
    from avct.cli import evaluate as eval_cli
    from avct.video.reader import probe_video, read_video
    from avct.video.writer import write_video

    name = "vox2_man_hoodie_620900105_pcavs"   # 4.4 s at 224 px: every frame is measured in seconds
    clip = data / "video" / f"{name}.mp4"
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir(), ref.mkdir()
    (gen / f"{name}.mp4").symlink_to(clip)
    (ref / f"{name}.mp4").symlink_to(clip)
    first = next(iter(read_video(clip)))
    count = probe_video(clip).frame_count
    write_video(gen / "still.mp4", (first for _ in range(count)), audio_path=clip)
    (ref / "still.mp4").symlink_to(clip)
    parser = argparse.ArgumentParser(prog="avct")
    eval_cli.add_evaluate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", "--generated", str(gen), "--reference", str(ref), "-o",
                              str(tmp_path / "report"), "--device", "cpu", "-q"])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    rows = {r["name"]: r for r in _csv(tmp_path / "report" / "per_video.csv")}
    itself, still = rows[name], rows["still"]
    assert float(itself["blinks_per_min"]) == float(itself["blinks_per_min_reference"]) > 0
    assert float(itself["head_motion"]) == 1.0
    # a still picture, H.264-encoded: its landmarks jitter by a fraction of a pixel, nothing more
    assert float(still["blinks_per_min"]) == 0.0 and float(still["eye_closure"]) > 0.9
    assert float(still["head_motion"]) < 0.05
    assert float(still["blinks_per_min_reference"]) == float(itself["blinks_per_min"])
    assert summary["reference"]["head_motion"] == 1.0 and 0.5 <= summary["head_motion"] < 0.53


def _csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))

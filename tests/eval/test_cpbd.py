"""CPBD: identical to the reference package on real frames, and it falls with blur."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from avct.eval.cpbd import cpbd, cpbd_rgb, to_gray

VIDEOS = ["vox2_man_hoodie_620900105_pcavs.mp4", "obama_weekly_address_lia_47s.mov",
          "hdtf_katiehill_sadtalker_8s.mp4"]  # 224, 256 and 512 px


@pytest.fixture(scope="module")
def grays(data):
    from avct.video.reader import read_video

    return [to_gray(next(itertools.islice(read_video(data / "video" / v), 5, None))) for v in VIDEOS]


def test_matches_reference_package(grays):
    ref = pytest.importorskip("cpbd")
    for g in grays:
        blurred = cv2.GaussianBlur(g, (0, 0), 1.0)
        for img in (g, blurred):
            assert cpbd(img) == pytest.approx(ref.compute(img), abs=1e-9)


def test_falls_with_blur(grays):
    for g in grays:
        values = [cpbd(g)] + [cpbd(cv2.GaussianBlur(g, (0, 0), s)) for s in (1.0, 2.0, 4.0)]
        assert values[0] > values[1] > values[2] >= values[3], values
        assert 0.1 < values[0] < 1.0


def test_edge_cases(grays):
    assert cpbd(np.full((128, 128), 90, np.uint8)) == 0.0  # no edges
    assert cpbd(grays[0][:40, :40]) == 0.0                 # no whole 64x64 block
    rgb = np.repeat(grays[0][..., None], 3, axis=2)
    assert cpbd_rgb(rgb) == pytest.approx(cpbd(grays[0]))

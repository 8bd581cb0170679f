"""Held-out reconstruction (the protocol behind the bundled weights' figures) on a tiny real dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiny_dataset import VIDEO, build_tiny_dataset

FRAMES = 12


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def pipeline(small_checkpoint_dir):
    from avct.pipeline import Pipeline

    return Pipeline.from_checkpoint(small_checkpoint_dir, device="cpu")


@pytest.fixture(scope="module")
def heldout(data, tmp_path_factory, pipeline):
    from avct.eval.heldout import reconstruct_clips

    root = build_tiny_dataset(data / "video" / VIDEO, tmp_path_factory.mktemp("heldout"), clips=1,
                              clip_frames=FRAMES)
    out = tmp_path_factory.mktemp("videos")
    return root, reconstruct_clips(root, out, pipeline, progress=False)


def test_every_variant_has_every_clip_with_the_same_length(heldout):
    from avct.video import probe_video

    _, folders = heldout
    assert set(folders) == {"reference", "generated", "classic", "static", "rendered_static"}
    infos = {v: probe_video(f / "obama_00.mp4") for v, f in folders.items()}
    counts = {v: i.frame_count for v, i in infos.items()}
    assert len(set(counts.values())) == 1 and 0 < counts["reference"] <= FRAMES, counts
    for info in infos.values():  # each video carries its own frames' audio, no trailing extra
        assert info.has_audio and abs(info.audio_duration - info.video_duration) < 0.005


def test_baselines_hold_still_on_the_right_picture(heldout, pipeline):
    from avct.pipeline import load_reference
    from avct.video import read_video

    root, folders = heldout
    first = np.load(Path(root) / "clips" / "obama_00" / "frames.npy")[0]
    static = list(read_video(folders["static"] / "obama_00.mp4"))
    assert all(_psnr(f, first) > 30 for f in static)  # frame 0, only the codec's loss
    still = pipeline.still_frame(load_reference(np.ascontiguousarray(first), crop=False))
    rendered = list(read_video(folders["rendered_static"] / "obama_00.mp4"))
    assert all(_psnr(f, still) > 30 for f in rendered)
    assert _psnr(still, first) < 30  # an untrained renderer's picture, not the photo itself


def test_still_frame_is_the_first_generated_frame(heldout, pipeline):
    """Relative motion makes frame 0's driving keypoints the source's own (kp_src + 0, J·J0⁻¹·J_src with
    J = J0), so the first generated frame is the renderer's still picture of the reference."""
    from avct.options import GenerateOptions
    from avct.pipeline import Speech, load_reference

    clip = Path(heldout[0]) / "clips" / "obama_00"
    reference = load_reference(np.ascontiguousarray(np.load(clip / "frames.npy")[0]), crop=False)
    speech = Speech(np.load(clip / "features.npy"), np.load(clip / "phoneme_ids.npy"))
    first = next(pipeline.frames(reference, speech, options=GenerateOptions(render="classic")))
    assert np.abs(first.astype(int) - pipeline.still_frame(reference).astype(int)).max() <= 1

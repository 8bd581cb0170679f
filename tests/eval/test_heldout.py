"""Held-out reconstruction (the protocol behind the bundled weights' figures) on a tiny real dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.tiny_dataset import VIDEO, build_tiny_dataset

FRAMES = 12


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def pipeline(small_checkpoint_dir):
    from avct.inference.pipeline import Pipeline

    return Pipeline.load(small_checkpoint_dir, device="cpu")


@pytest.fixture(scope="module")
def heldout(data, tmp_path_factory, pipeline):
    from avct.eval.heldout import reconstruct_clips

    root = build_tiny_dataset(data / "video" / VIDEO, tmp_path_factory.mktemp("heldout"), clips=1,
                              clip_frames=FRAMES)
    out = tmp_path_factory.mktemp("videos")
    return root, reconstruct_clips(root, out, pipeline, progress=False)


def test_every_variant_has_every_clip_with_the_same_length(heldout):
    from avct.video.reader import probe_video

    _, folders = heldout
    assert set(folders) == {"reference", "generated", "classic", "static", "rendered_static"}
    infos = {v: probe_video(f / "obama_00.mp4") for v, f in folders.items()}
    counts = {v: i.frame_count for v, i in infos.items()}
    assert len(set(counts.values())) == 1 and 0 < counts["reference"] <= FRAMES, counts
    for info in infos.values():  # each video carries its own frames' audio, no trailing extra
        assert info.has_audio and abs(info.audio_duration - info.video_duration) < 0.005


def test_baselines_hold_still_on_the_right_picture(heldout, pipeline):
    from avct.inference.inputs import load_reference
    from avct.video.reader import read_video

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
    from avct.inference.options import GenerateOptions
    from avct.inference.inputs import Speech, load_reference

    clip = Path(heldout[0]) / "clips" / "obama_00"
    reference = load_reference(np.ascontiguousarray(np.load(clip / "frames.npy")[0]), crop=False)
    speech = Speech(np.load(clip / "features.npy"), np.load(clip / "phoneme_ids.npy"))
    first = next(pipeline.frames(reference, speech, options=GenerateOptions(render="classic")))
    assert np.abs(first.astype(int) - pipeline.still_frame(reference).astype(int)).max() <= 1



def test_comparison_table_of_the_variants(tmp_path):
    """The four evaluations side by side with the real clips, averaged and per clip (known numbers in
    the files `avct evaluate` writes: per_video.csv per evaluation, the summaries it returns)."""
    from avct.eval.heldout import EVALUATIONS, REAL_LABEL, comparison_markdown
    from avct.eval.report import write_csv

    scores = {"model": (0.31, 0.42), "classic": (0.2, 0.3), "rendered_static": (0.0, 0.0), "static": (0.0, 0.0)}
    summaries = {}
    for k, (name, (r, amp)) in enumerate(scores.items()):
        rows = [{"name": clip, "fid_video": 50.0 + k + c, "cpbd": 0.1, "cpbd_reference": 0.2 + c / 10, "lmd": 0.05,
                 "lip_r": r, "lip_amp": amp, "silence_gap": None, "sharpness": 0.5, "avoff": None, "avconf": None,
                 "avoff_reference": 1.0, "avconf_reference": 2.5}
                for c, clip in enumerate(("clip_a", "clip_b"))]
        (tmp_path / name).mkdir()
        write_csv(tmp_path / name / "per_video.csv", rows)
        summaries[name] = {"fid": 40.0 + k, "cpbd": 0.1, "lmd": 0.05, "lip_r": r, "lip_amp": amp,
                           "silence_gap": None, "sharpness": 0.5, "avoff": None, "avconf": None,
                           "reference": {"cpbd": 0.25, "avoff": 1.0, "avconf": 2.5}}
    table = comparison_markdown(summaries, tmp_path, "no SyncNet")
    assert "AVOff / AVConf: no SyncNet." in table and "lip r↑" in table
    averaged, per_clip = table.split("## Per clip")
    assert "| avct, sharp path (default) | 40.000 | 0.100 | 0.050 | 0.31 | 0.42 | — | 0.50 | — | — |" in averaged
    assert "| avct, classic 256² renderer | 41.000 | 0.100 | 0.050 | 0.20 | 0.30 | — | 0.50 | — | — |" in averaged
    assert "| static photo (first frame repeated) | 43.000 |" in averaged
    # blinks and eye closure (not in these summaries: "—"), head motion 1 by definition
    assert f"| {REAL_LABEL} | 0.000 | 0.250 | 0.000 | 1.00 | 1.00 | 0.000 | 1.00 | — | — | 1.00 | 1.00 | 2.50 |" in averaged
    assert "| clip_b: static render | 53.000 | 0.100 | 0.050 | 0.00 | 0.00 | — | 0.50 |" in per_clip
    assert "| clip_b: real clip | 0.000 | 0.300 | 0.000 | 1.00 | 1.00 | 0.000 | 1.00 | — | — | 1.00 | 1.00 | 2.50 |" in per_clip
    labels = [line.split("|")[1].strip() for line in per_clip.splitlines() if line.startswith("| clip_")]
    assert labels == [f"{c}: {v}" for c in ("clip_a", "clip_b")
                      for v in ("avct, sharp path", "avct, classic 256² renderer", "static render", "static photo",
                                "real clip")]
    assert set(EVALUATIONS) == set(scores)


def test_reenactment_with_the_clip_itself(heldout):
    """Driven by its own first frame the renderer draws its still picture; then one frame per driving
    frame, each moved by that frame's keypoints (relative to the first). Bundled weights: a real renderer
    (in PyTorch fp32: int8 rounds a batch of two differently from a batch of one, by up to 4 levels)."""
    from avct.weights import default_weights_dir
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import load_reference

    pipeline = Pipeline.load(default_weights_dir(), device="cpu", batch_size=2, backend="torch")
    frames = np.load(Path(heldout[0]) / "clips" / "obama_00" / "frames.npy")
    reference = load_reference(np.ascontiguousarray(frames[0]), crop=False)
    driven = list(pipeline.reenact(reference, (f for f in frames[[0, 0, 5, 11, 0]])))   # a lazy stream, 3 batches
    assert len(driven) == 5 and driven[0].shape == (256, 256, 3) and driven[0].dtype == np.uint8
    still = pipeline.still_frame(reference)
    for i in (0, 1, 4):   # frame 0 again: the keypoints equal the initial ones, nothing moves
        assert np.abs(driven[i].astype(int) - still.astype(int)).max() <= 1
    moved = np.abs(driven[3].astype(int) - still.astype(int)).mean()
    assert moved > 0.5, moved   # frame 11: its own keypoints, another picture
    assert _psnr(driven[3], frames[11]) > _psnr(still, frames[11])   # ... closer to the real frame 11

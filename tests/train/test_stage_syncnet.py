"""SyncNet stage (D_sync): windows and negatives, over-fitting a fixed batch of a real clip, export/load."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from support.stage_helpers import SYNCNET_OVERRIDES, SYNCNET_STEPS, build_stage, drop_factor, overfit_syncnet, seed_all
from avct.models.syncnet import crop_boxes
from avct.train.stages import get_stage
from avct.train.stages.syncnet import SyncNetStage, SyncWindows, load_syncnet

# Measured on the tiny clip (seed 0, 1 thread): BCE 0.89 -> 0.001 in 40 steps (factor ~800).
OVERFIT_FACTOR = 50


@pytest.fixture(scope="module")
def syncnet_run(tiny_dataset, tmp_path_factory):
    return overfit_syncnet(tiny_dataset, tmp_path_factory.mktemp("syncnet_weights"))


def test_registry_finds_the_stage():
    assert get_stage("syncnet") is SyncNetStage


def test_sync_windows(tiny_dataset):
    ds = SyncWindows(tiny_dataset, window=5, image_size=32, negative_ratio=0.5, min_offset=5)
    assert len(ds) == sum(c.usable_frames - 4 for c in ds.clips)   # centres 2 .. usable-3 of each clip
    clip = ds.clips[0]
    features = np.load(clip.folder / "features.npy")
    frames = np.load(clip.folder / "frames.npy")
    boxes = np.load(clip.folder / "mouth_boxes.npy")
    labels = []
    for seed in range(12):
        seed_all(seed)
        item = ds[10]                                          # centre frame 12 of clip 0
        assert item["crops"].shape == (5, 3, 32, 32) and item["audio"].shape == (20, 41)
        labels.append(float(item["label"]))
        # which window is the audio from? it must be the true one for positives, >= 5 frames away otherwise
        starts = [s for s in range(0, 4 * clip.usable_frames - 19, 4)
                  if np.array_equal(features[s:s + 20], item["audio"])]
        assert len(starts) == 1
        offset = starts[0] // 4 + 2 - 12
        assert offset == 0 if item["label"] == 1 else abs(offset) >= 5
    assert set(labels) == {0.0, 1.0}
    expected = crop_boxes(torch.from_numpy(frames[10:15]).permute(0, 3, 1, 2).float() / 255,
                          torch.from_numpy(boxes[10:15]).float(), 32)
    assert torch.allclose(item["crops"], expected)


def test_syncnet_overfits_a_fixed_batch(syncnet_run, tiny_dataset):
    _, losses = syncnet_run
    factor = drop_factor(losses)
    print(f"syncnet over-fit: {losses[0]:.3f} -> {losses[-1]:.4f}, factor {factor:.0f} in {SYNCNET_STEPS} steps")
    assert len(losses) == SYNCNET_STEPS and factor > OVERFIT_FACTOR


def test_syncnet_export_and_api(syncnet_run, tiny_dataset):
    weights, _ = syncnet_run
    assert {p.name for p in weights.iterdir()} >= {"syncnet.safetensors", "syncnet.json"}
    net = load_syncnet(weights)
    assert net.cfg.image_size == SYNCNET_OVERRIDES["image_size"] and not net.training
    ds = SyncWindows(tiny_dataset, 5, net.cfg.image_size, negative_ratio=0.0, min_offset=5)
    seed_all(0)
    item = ds[20]
    e_v, e_a = net.embed_video(item["crops"][None]), net.embed_audio(item["audio"][None])
    assert e_v.shape == e_a.shape == (1, 512)
    p = net(item["crops"][None], item["audio"][None])
    assert torch.allclose(p, (e_v * e_a).sum(-1), atol=1e-6)
    # the mouth-crop helper gives the training crops
    frames = torch.from_numpy(ds.clips[0].frames[20:25].copy()).permute(0, 3, 1, 2).float() / 255
    boxes = torch.from_numpy(ds.clips[0].mouth_boxes[20:25].astype(np.float32))
    assert torch.allclose(net.mouth_crops(frames, boxes), ds[20]["crops"])     # item i = frames i..i+4 of clip 0


def test_syncnet_init_must_match(syncnet_run, tiny_dataset):
    from avct.errors import AvctError

    stage = build_stage(SyncNetStage, "syncnet", SYNCNET_OVERRIDES, tiny_dataset, init={"syncnet": syncnet_run[0]})
    assert all(torch.equal(a, b) for a, b in zip(stage.model.state_dict().values(),
                                                 load_syncnet(syncnet_run[0]).state_dict().values()))
    with pytest.raises(AvctError, match="another shape"):
        build_stage(SyncNetStage, "syncnet", {**SYNCNET_OVERRIDES, "image_size": 48}, tiny_dataset,
                    init={"syncnet": syncnet_run[0]})

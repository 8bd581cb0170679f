"""Head-motion stage: data windows, normalisation, over-fitting a fixed batch, export."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from avct.weights import load_models
from avct.errors import AvctError
from avct.train.config import load_config
from avct.train.engine import train
from avct.train.seeding import seed_everything
from avct.train.stage import AmpContext, StageContext
from avct.train.stages.headmotion import HeadMotionStage, PoseSequences

OVERFIT_STEPS = 40
OVERFIT_FACTOR = 10.0  # loss must drop at least this much on one fixed batch (measured 31x, 1 thread)
# Narrower than `small` so that CPU tests stay quick; same structure.
TINY_MODEL = {"head_motion": {"widths": [8, 16, 32, 64], "embedding_dim": 32, "hidden_size": 32}}


def make_stage(data_dir, **overrides) -> HeadMotionStage:
    config = load_config("headmotion", {"preset": "small", "seq_len": 8, "model_overrides": TINY_MODEL,
                                        **overrides})
    seed_everything(config.seed)
    return HeadMotionStage(StageContext(config=config, data_dir=data_dir, device=torch.device("cpu")))


def test_items_follow_inference_layout(tiny_dataset):
    stage = make_stage(tiny_dataset)
    data = stage.dataset()
    assert len(data) == 2 * (50 - 8 + 1)  # every 8-frame window of both clips (50 usable frames each)
    item = data[len(data) - 1]
    assert item["pose_box"].shape == (1, 256, 256) and set(item["pose_box"].unique().tolist()) <= {0.0, 255.0}
    assert item["audio"].shape == (7, 4, 41) and item["poses"].shape == (8, 6)
    clip, start = data.windows[-1]
    raw = np.load(tiny_dataset / "clips" / "obama_01" / "features.npy")
    np.testing.assert_array_equal(item["audio"].numpy().reshape(-1, 41), raw[4 * start:4 * (start + 7)])
    # normalisation is the exact inverse of the predictor's denormalize
    poses = np.load(tiny_dataset / "clips" / "obama_01" / "poses.npy")[start:start + 8]
    back = stage.model.denormalize(item["poses"].double())
    np.testing.assert_allclose(back.numpy(), poses, rtol=0, atol=1e-4)


def test_windows_skip_lost_poses(tiny_dataset, tmp_path):
    data_dir = tmp_path / "ds"
    shutil.copytree(tiny_dataset, data_dir)
    landmarks = np.load(data_dir / "clips" / "obama_00" / "landmarks.npy")
    landmarks[20] = np.nan  # face lost on frame 20: its pose is only interpolated
    np.save(data_dir / "clips" / "obama_00" / "landmarks.npy", landmarks)
    hm = load_config("headmotion", "small").model_config().head_motion
    data = PoseSequences(data_dir, 8, 1, hm.pose_min, hm.pose_max)
    starts = [s for c, s in data.windows if c == 0]
    assert not any(s <= 20 < s + 8 for s in starts) and len(starts) == 43 - 8
    with pytest.raises(AvctError, match="consecutive usable frames"):
        PoseSequences(data_dir, 400, 1, hm.pose_min, hm.pose_max)


def test_not_a_dataset(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(AvctError, match="not an avct dataset"):
        make_stage(tmp_path).dataset()


def _overfit(data_dir, steps: int = OVERFIT_STEPS) -> list[float]:
    stage = make_stage(data_dir, lr=3e-3, seq_len=6)
    data = stage.dataset()
    batch = torch.utils.data.default_collate([data[0], data[len(data) // 2]])
    modules = stage.trainable()
    optimizers = stage.optimizers(modules)
    amp = AmpContext(torch.device("cpu"), None)
    losses = []
    for _ in range(steps):
        losses.append(stage.train_step(batch, modules, optimizers, amp).loss)
        amp.update()
    return losses


def test_overfits_a_fixed_batch_deterministically(tiny_dataset):
    losses = _overfit(tiny_dataset)
    factor = losses[0] / min(losses[-5:])
    print(f"head-motion over-fit: loss {losses[0]:.4f} -> {min(losses[-5:]):.5f} ({factor:.0f}x in {OVERFIT_STEPS} steps)")
    assert factor > OVERFIT_FACTOR
    assert _overfit(tiny_dataset, steps=5) == losses[:5]  # bit-identical when repeated


def test_export_loads_in_avct(tiny_dataset, tmp_path):
    config = load_config("headmotion", {"preset": "small", "seq_len": 6, "batch_size": 2, "steps": 1,
                                        "model_overrides": TINY_MODEL})
    result = train("headmotion", config, tiny_dataset, tmp_path / "run", progress=False)
    models = load_models(result.weights_dir)
    assert models.head_motion is not None
    assert models.keypoint_detector is None and models.generator is None and models.avct is None
    assert models.config == config.model_config()
    # fine-tuning from the run dir loads the same weights
    stage = make_stage(tiny_dataset, seq_len=6)
    stage2 = HeadMotionStage(StageContext(config=stage.config, data_dir=tiny_dataset, device=torch.device("cpu"),
                                          init={"headmotion": result.weights_dir}))
    for k, v in models.head_motion.state_dict().items():
        assert torch.equal(stage2.model.state_dict()[k], v)

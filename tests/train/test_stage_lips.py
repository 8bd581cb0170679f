"""Lip-aperture stage: windows and targets from the stored landmarks, the loss terms on analytic curves,
over-fitting a fixed batch, and an engine run whose exported weights generation loads."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from avct.errors import AvctError
from avct.face.landmark_groups import aperture_curve
from avct.train.engine import train
from avct.train.stages.lips import ApertureWindows, LipsStage, masked_curve_losses
from avct.weights import load_models

from support.stage_helpers import Runner, build_stage, drop_factor, fixed_batch

SEQ = 16


@pytest.fixture(scope="module")
def talking_dataset(tiny_dataset, tmp_path_factory):
    """The tiny dataset with a mouth that opens and closes: the lower inner lip of every frame moved
    down by 4 + 4·sin(frame / 3) px, so the target apertures are known."""
    out = tmp_path_factory.mktemp("talking") / "ds"
    shutil.copytree(tiny_dataset, out)
    for clip in ("obama_00", "obama_01"):
        path = out / "clips" / clip / "landmarks.npy"
        marks = np.load(path)
        opening = 4 + 4 * np.sin(np.arange(len(marks)) / 3.0)
        marks[:, [65, 66, 67], 1] += opening[:, None]
        np.save(path, marks.astype(np.float32))
    return out


def make_stage(data_dir, **overrides) -> LipsStage:
    return build_stage(LipsStage, "lips", {"seq_len": SEQ, "window_stride": 2, **overrides}, data_dir)


def test_windows_hold_the_features_and_the_landmarks_apertures(talking_dataset):
    data = ApertureWindows(talking_dataset, SEQ, 2, augment=False)
    assert len(data) == 2 * ((50 - SEQ) // 2 + 1)
    c, start = data.windows[-1]
    item = data[len(data) - 1]
    raw = np.load(talking_dataset / "clips" / "obama_01" / "features.npy")
    np.testing.assert_array_equal(item["rows"].numpy(), raw[4 * start:4 * (start + SEQ)])
    marks = np.load(talking_dataset / "clips" / "obama_01" / "landmarks.npy").astype(np.float64)
    expected = aperture_curve(list(marks[start:start + SEQ]))
    np.testing.assert_allclose(item["aperture"].numpy(), expected, rtol=1e-6)
    assert item["mask"].numpy().all() and item["mean"].shape == (26,)
    assert np.ptp(item["aperture"].numpy()) > 0.05  # the mouth really opens and closes


def test_augmentation_moves_bands_but_keeps_the_targets(talking_dataset):
    plain = ApertureWindows(talking_dataset, SEQ, 2, augment=False)[3]
    np.random.seed(1)
    augmented = ApertureWindows(talking_dataset, SEQ, 2, augment=True)[3]
    assert torch.equal(plain["aperture"], augmented["aperture"])
    assert not torch.equal(plain["rows"][:, 13:39], augmented["rows"][:, 13:39])
    assert torch.equal(plain["rows"][:, :13], augmented["rows"][:, :13])  # MFCC, F0, voicing untouched


def test_windows_need_a_face_in_most_frames(talking_dataset, tmp_path):
    data_dir = tmp_path / "ds"
    shutil.copytree(talking_dataset, data_dir)
    path = data_dir / "clips" / "obama_00" / "landmarks.npy"
    marks = np.load(path)
    marks[10:20] = np.nan  # face lost on frames 10-19
    np.save(path, marks)
    data = ApertureWindows(data_dir, SEQ, 1, augment=False)
    starts = [s for c, s in data.windows if c == 0]
    for s in starts:  # at most a quarter of a window may be without a face
        assert len(set(range(s, s + SEQ)) & set(range(10, 20))) <= SEQ // 4
    assert 0 not in starts and 34 in starts
    with pytest.raises(AvctError, match="frames with a face"):
        ApertureWindows(data_dir, 400, 1)


def test_loss_terms_on_known_curves():
    t = torch.linspace(0, 6, 40)
    target = (0.1 + 0.05 * torch.sin(t))[None]
    mask = torch.ones_like(target)
    same = masked_curve_losses(target.clone(), target, mask)
    assert all(float(v) == pytest.approx(0, abs=1e-6) for v in same.values())
    doubled = masked_curve_losses(0.1 + 2 * (target - 0.1), target, mask)  # in time, twice the motion
    assert float(doubled["correlation"]) == pytest.approx(0, abs=1e-5)
    assert float(doubled["amplitude"]) == pytest.approx(1.0, rel=1e-3)       # (2 - 1)²
    inverted = masked_curve_losses(0.2 - target, target, mask)
    assert float(inverted["correlation"]) == pytest.approx(2.0, abs=1e-5)   # r = -1
    half = mask.clone()
    half[:, 20:] = 0                                                       # masked frames do not count
    wrong_tail = target.clone()
    wrong_tail[:, 20:] = 5.0
    assert float(masked_curve_losses(wrong_tail, target, half)["mse"]) == pytest.approx(0, abs=1e-8)


def test_overfits_a_fixed_batch(talking_dataset):
    stage = make_stage(talking_dataset, lr=3e-3)
    batch = fixed_batch(stage, [0, len(stage.dataset()) - 1])
    losses = Runner(stage).steps(batch, 60)
    assert drop_factor(losses) > 3.0, losses


def test_every_member_learns_on_its_own_loss(talking_dataset):
    stage = make_stage(talking_dataset, lr=3e-3, model_overrides={"lip_aperture": {"members": 2, "width": 8}})
    batch = fixed_batch(stage, [0, len(stage.dataset()) - 1])
    model = stage.model
    before = model.member_apertures(batch["rows"], batch["phonemes"], batch["mean"]).detach()
    losses = Runner(stage).steps(batch, 60)
    after = model.member_apertures(batch["rows"], batch["phonemes"], batch["mean"]).detach()
    assert drop_factor(losses) > 3.0, losses
    target, mask = batch["aperture"], batch["mask"]
    for k in range(2):  # each member alone now fits (not only their mean)
        error = lambda curves: float((((curves[:, k] - target) ** 2) * mask).sum() / mask.sum())
        assert error(after) < error(before) / 3


def test_engine_run_exports_weights_generation_loads(talking_dataset, tmp_path):
    result = train("lips", {"preset": "small", "seq_len": SEQ, "steps": 3, "batch_size": 2,
                            "model_overrides": {"lip_aperture": {"width": 8}}},
                   talking_dataset, tmp_path / "run", progress=False)
    models = load_models(result.weights_dir)
    assert models.lip_aperture is not None and models.generator is None
    scale = models.lip_aperture.input_scale
    assert scale.shape == (26,) and not torch.equal(scale, torch.ones(26))  # fixed from the data
    # how much the lips move is fixed from the data too: the median over clips of each clip's aperture std
    spreads = [aperture_curve(list(np.load(talking_dataset / "clips" / c / "landmarks.npy").astype(np.float64)))
               .std() for c in ("obama_00", "obama_01")]
    assert models.config.lip_aperture.typical_spread == pytest.approx(float(np.median(spreads)), rel=1e-6)
    assert models.config.lip_aperture.typical_spread > 0.01  # the mouth of this data opens by 4 ± 4 px

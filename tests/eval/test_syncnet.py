"""SyncNet: the syncnet_v2 layout loads from a plain state dict, and the scoring maths finds known shifts."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from avct.errors import AvctError
from avct.eval import syncnet as sn
from avct.models.syncnet import SyncNetV2
from avct.weights.syncnet import load_syncnet_v2


@pytest.fixture(scope="module")
def layout(shared):
    path = shared / "reference" / "syncnet" / "syncnet_v2.layout.tsv"
    with open(path, newline="") as f:
        return [(r["key"], tuple(int(v) for v in r["shape"].strip("[]").split(",") if v.strip()), r["dtype"])
                for r in csv.DictReader(f, delimiter="\t")]


def _random_state(layout, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the layout's keys/shapes/dtypes, filled like a trained network would be."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in layout:
        if dtype == "int64":
            state[key] = torch.tensor(100, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = torch.randn(shape, generator=g) * 0.05
        elif len(shape) == 1:  # BatchNorm weight
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


def test_network_has_exactly_the_layout(layout):
    mine = SyncNetV2().state_dict()
    assert [k for k, _, _ in layout] == list(mine)
    for key, shape, dtype in layout:
        assert tuple(mine[key].shape) == shape, key
        assert str(mine[key].dtype).removeprefix("torch.") == dtype, key


def test_loads_a_state_dict_and_embeds_a_5_frame_clip(layout, tmp_path):
    path = tmp_path / "syncnet_v2.model"
    torch.save(_random_state(layout), path)
    model = load_syncnet_v2(path)
    assert not model.training
    torch.manual_seed(0)
    clip = torch.rand(2, 3, 5, 224, 224) * 255
    windows = torch.randn(2, 1, 13, 20) * 10
    v, a = model.embed_video(clip), model.embed_audio(windows)
    assert v.shape == a.shape == (2, 1024)
    assert torch.isfinite(v).all() and torch.isfinite(a).all()
    assert isinstance(sn.load_embedder(path), SyncNetV2)


def test_refuses_anything_but_the_layout(layout, tmp_path):
    state = _random_state(layout)
    bad = dict(state)
    bad["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(bad, tmp_path / "shape.model")
    with pytest.raises(AvctError, match="netfcaud.3.weight"):
        load_syncnet_v2(tmp_path / "shape.model")
    missing = {k: v for k, v in state.items() if not k.startswith("netcnnlip.18")}
    torch.save(missing, tmp_path / "missing.model")
    with pytest.raises(AvctError, match="missing"):
        load_syncnet_v2(tmp_path / "missing.model")
    torch.save(SyncNetV2(), tmp_path / "pickled.model")  # a whole pickled module: never unpickled
    with pytest.raises(AvctError, match="plain state dict"):
        load_syncnet_v2(tmp_path / "pickled.model")
    with pytest.raises(AvctError, match="not found"):
        load_syncnet_v2(tmp_path / "absent.model")


@pytest.mark.parametrize("shift", [-7, -3, -1, 0, 2, 3, 5])
def test_scoring_recovers_a_known_shift(shift):
    """Audio embedding j = video embedding j - shift (audio lags by `shift` frames) -> AVOff = -shift."""
    rng = np.random.default_rng(abs(shift))
    n, d = 120, 64
    base = rng.normal(size=(n + 40, d))
    video = base[20:20 + n]
    audio = base[20 - shift:20 - shift + n] + rng.normal(scale=0.3, size=(n, d))
    result = sn.sync_scores(video, audio)
    assert result.offset == -shift
    assert result.confidence > 5.0
    assert result.min_dist == pytest.approx(float(result.mdist.min()))
    assert result.frame_conf.shape == (n,)
    unrelated = sn.sync_scores(video, rng.normal(size=(n, d)))
    assert unrelated.confidence < 0.3 * result.confidence


def test_windows_are_the_reference_mfcc_slices():
    rng = np.random.default_rng(0)
    samples = rng.normal(scale=3000, size=16000 * 2)
    mfcc = sn.mfcc_features(samples)
    assert mfcc.shape == (13, 199)  # 1 + ceil((32000 - 400) / 160) frames at 100 Hz
    w = sn.default_make_windows(samples, [0, 7, 45])
    assert w.shape == (3, 1, 13, 20)
    np.testing.assert_allclose(w[1, 0].numpy(), mfcc[:, 28:48], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w[2, 0, :, :19].numpy(), mfcc[:, 180:199], rtol=1e-5, atol=1e-5)
    assert np.all(w[2, 0, :, 19].numpy() == 0)  # past the end: zeros


class _BrightnessEnergy:
    """A toy embedder: log brightness of the 5 frames vs log energy of the 5 frames' audio (z-scored).
    Exercises clip/window alignment with real MFCC framing, without any network."""

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        x = torch.log(clips.mean(dim=(1, 3, 4)))  # (N, 5)
        return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)

    def embed_audio(self, windows: torch.Tensor) -> torch.Tensor:
        energy = windows[:, 0, 0, :].reshape(-1, 5, 4).mean(-1)  # MFCC c0 = log frame energy
        return (energy - energy.mean(1, keepdim=True)) / (energy.std(1, keepdim=True) + 1e-6)


@pytest.mark.parametrize("shift", [-3, 0, 3])
def test_score_sync_end_to_end_on_a_synthetic_video(shift):
    rng = np.random.default_rng(10 + shift)
    frames = 100
    brightness = rng.uniform(40, 220, size=frames + 20)
    crops = np.repeat(brightness[10:10 + frames, None, None, None], 224, 1).repeat(224, 2).repeat(3, 3)
    crops = crops.astype(np.uint8)
    amplitude = brightness[10 - shift:10 - shift + frames]  # the sound of frame t is heard at t + shift
    samples = (rng.normal(size=(frames, 640)) * amplitude[:, None] * 50).reshape(-1)
    result = sn.score_sync(crops, samples, _BrightnessEnergy())
    assert result is not None and result.frames == frames - 5
    assert result.offset == -shift
    assert sn.score_sync(crops[:5], samples, _BrightnessEnergy()) is None


def test_dsync_directory_loads_through_the_adapter(tmp_path):
    """A D_sync written by `avct train syncnet` (random small weights here) scores through DsyncEmbedder."""
    from avct.models.syncnet import SYNCNET_PRESETS, SyncNet
    from avct.weights.syncnet import save_syncnet

    torch.manual_seed(0)
    save_syncnet(SyncNet(SYNCNET_PRESETS["small"]).eval(), tmp_path / "weights")
    embedder = sn.load_embedder(tmp_path / "weights")
    assert isinstance(embedder, sn.DsyncEmbedder)
    rng = np.random.default_rng(0)
    frames = 30
    crops = rng.integers(0, 255, size=(frames, 224, 224, 3), dtype=np.uint8)
    mouths = np.tile(np.array([72.0, 140.0, 152.0, 220.0]), (frames, 1))
    samples = rng.normal(scale=2000, size=frames * 640)
    result = sn.score_sync(crops, samples, embedder, mouths=mouths)
    assert result is not None and result.frames == frames - 5
    assert -15 <= result.offset <= 15 and result.confidence >= 0
    with pytest.raises(AvctError, match="mouth boxes"):
        sn.score_sync(crops, samples, embedder)

"""Discriminators: FOMM multi-scale patch D, temporal D_seq, SyncNet (D_sync) and its file format."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from avct.errors import AvctError
from avct.models.discriminators import (DISCRIMINATOR_PRESETS, MultiScaleDiscriminator, PatchDiscriminator,
                                        TemporalDiscriminator)
from avct.models.syncnet import SYNCNET_PRESETS, SyncNet, crop_boxes, sync_bce, sync_loss
from avct.weights.syncnet import load_syncnet, save_syncnet


def test_patch_discriminator_shapes_and_fomm_keys():
    torch.manual_seed(0)
    d = MultiScaleDiscriminator((1, 0.5), **DISCRIMINATOR_PRESETS["small"])   # E=16, M=128, 4 blocks, sn
    pyramid = {1.0: torch.rand(2, 3, 128, 128), 0.5: torch.rand(2, 3, 64, 64)}
    out = d(pyramid)
    # 128: conv4 -> 125, pool -> 62 | 59 -> 29 | 26 -> 13 | 10 (no pool) -> 1×1 head
    assert [tuple(f.shape) for f in out.feature_maps[0]] == [(2, 32, 62, 62), (2, 64, 29, 29), (2, 128, 13, 13),
                                                            (2, 128, 10, 10)]
    assert [tuple(p.shape) for p in out.predictions] == [(2, 1, 10, 10), (2, 1, 2, 2)]
    keys = d.state_dict()
    assert "discs.1.down_blocks.0.conv.weight_orig" in keys and "discs.0-5.conv.weight_orig" in keys
    assert "discs.1.down_blocks.0.norm.weight" not in keys and "discs.1.down_blocks.1.norm.weight" in keys
    real, fake = out.split(1)
    assert real.predictions[0].shape[0] == fake.predictions[1].shape[0] == 1


def test_patch_discriminator_with_keypoint_heatmaps():
    d = PatchDiscriminator(num_channels=3, block_expansion=8, max_features=32, num_blocks=4, use_kp=True, num_kp=10)
    assert d.down_blocks[0].conv.in_channels == 13
    features, prediction = d(torch.rand(2, 3, 64, 64), torch.rand(2, 10, 2) * 2 - 1)
    assert prediction.shape == (2, 1, 2, 2) and len(features) == 4
    with pytest.raises(ValueError):
        d(torch.rand(2, 3, 64, 64))


def test_temporal_discriminator_sees_stacked_frames():
    frames = torch.rand(2, 6, 3, 64, 64)                                      # (B, T, 3, H, W)
    d = TemporalDiscriminator(6, (1,), **DISCRIMINATOR_PRESETS["small"])
    assert d.discs["1"].down_blocks[0].conv.in_channels == 18               # T×3 input channels
    stacked = TemporalDiscriminator.stack_frames(frames)
    assert torch.equal(stacked[:, 3:6], frames[:, 1])                        # frame-major channels
    out = d({1.0: stacked})
    assert out.predictions[0].shape == (2, 1, 2, 2)


def test_syncnet_embeddings_and_probability():
    torch.manual_seed(0)
    cfg = dataclasses.replace(SYNCNET_PRESETS["small"], image_size=48)
    net = SyncNet(cfg).eval()
    crops, audio = torch.rand(3, 5, 3, 48, 48), torch.randn(3, 20, 41) * 10
    e_v, e_a = net.embed_video(crops), net.embed_audio(audio)
    assert e_v.shape == e_a.shape == (3, 512)
    assert torch.allclose(e_v.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(e_a.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (e_v >= 0).all() and (e_a >= 0).all()
    p = net(crops, audio)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    assert torch.allclose(p, torch.nn.functional.cosine_similarity(e_v, e_a), atol=1e-6)   # Eq. 1
    with pytest.raises(ValueError):
        net.embed_video(torch.rand(3, 4, 3, 48, 48))
    with pytest.raises(ValueError):
        net.embed_audio(torch.randn(3, 16, 41))
    assert sync_bce(torch.tensor([0.999999, 1e-6]), torch.tensor([1.0, 0.0])).item() < 1e-4
    assert sync_loss(torch.tensor([1.0])).item() == 0


def test_syncnet_presets_sizes():
    counts = {name: sum(p.numel() for p in SyncNet(cfg).parameters()) for name, cfg in SYNCNET_PRESETS.items()}
    assert counts["small"] < counts["official"] / 5


def test_crop_boxes_exact_for_an_integer_box_of_the_output_size():
    img = torch.rand(2, 3, 64, 64)
    boxes = torch.tensor([[10, 20, 26, 36], [0, 0, 16, 16]])               # 16×16 boxes, x1/y1 exclusive
    crops = crop_boxes(img, boxes, 16)
    assert torch.allclose(crops[0], img[0, :, 20:36, 10:26], atol=1e-5)
    assert torch.allclose(crops[1], img[1, :, 0:16, 0:16], atol=1e-5)
    whole = crop_boxes(img[:1], torch.tensor([[0, 0, 64, 64]]), 32)
    assert torch.allclose(whole, torch.nn.functional.interpolate(img[:1], size=32, mode="bilinear",
                                                                 align_corners=False), atol=1e-5)
    # leading dims and gradients
    seq = img[None].expand(3, -1, -1, -1, -1).clone().requires_grad_()
    out = crop_boxes(seq, boxes[None].expand(3, -1, -1), 8)
    assert out.shape == (3, 2, 3, 8, 8)
    out.sum().backward()
    assert seq.grad.abs().sum() > 0


def test_syncnet_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = SyncNet(dataclasses.replace(SYNCNET_PRESETS["small"], image_size=32)).eval()
    save_syncnet(net, tmp_path / "w")
    meta = json.loads((tmp_path / "w" / "syncnet.json").read_text())
    assert meta["format"] == "avct-syncnet" and meta["config"]["image_size"] == 32
    loaded = load_syncnet(tmp_path / "w")
    assert loaded.cfg == net.cfg and not loaded.training
    crops, audio = torch.rand(2, 5, 3, 32, 32), torch.randn(2, 20, 41)
    assert torch.allclose(loaded(crops, audio), net(crops, audio))
    assert load_syncnet(tmp_path / "w" / "syncnet.json").cfg == net.cfg
    (tmp_path / "run" / "weights").mkdir(parents=True)
    save_syncnet(net, tmp_path / "run" / "weights")
    assert load_syncnet(tmp_path / "run").cfg == net.cfg                       # a run dir works too
    with pytest.raises(AvctError, match="no SyncNet"):
        load_syncnet(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "syncnet.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(AvctError, match="not an avct SyncNet"):
        load_syncnet(tmp_path / "bad")

"""The lip-aperture network: one aperture per frame, and deaf to loudness and microphone colour (the
fbank's utterance mean is removed, so a constant dB offset per band changes nothing)."""
from __future__ import annotations

import pytest
import torch

from avct.config import LipApertureConfig
from avct.models.lip_aperture import LipApertureNet


def random_speech(frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(frames * 4, 41, generator=g)
    rows[:, 13:39] -= 8.0                      # log-fbank scale
    rows[:, 40] = (rows[:, 40] > 0).float()    # voiced flag
    return rows, torch.randint(0, 41, (frames,), generator=g)


def test_one_non_negative_aperture_per_frame():
    torch.manual_seed(0)
    net = LipApertureNet(LipApertureConfig()).eval()
    rows, phonemes = random_speech(30)
    out = net.predict(rows[:-2], phonemes)     # a partial last frame is dropped
    assert out.shape == (29,) and (out >= 0).all()
    batch = net(rows[None], phonemes[None])
    assert batch.shape == (1, 30)


def test_louder_speech_or_another_microphone_gives_the_same_apertures():
    torch.manual_seed(0)
    net = LipApertureNet(LipApertureConfig()).eval()
    rows, phonemes = random_speech(40)
    louder = rows.clone()
    louder[:, 13:39] += 2.5                                   # +2.5 (natural log) in every band: louder
    coloured = rows.clone()
    coloured[:, 13:39] += torch.linspace(-1, 1, 26)           # a microphone's fixed tilt
    coloured[:, :13] += 7.0                                   # MFCCs are not an input
    base = net.predict(rows, phonemes)
    assert torch.allclose(net.predict(louder, phonemes), base, atol=1e-5)
    assert torch.allclose(net.predict(coloured, phonemes), base, atol=1e-5)
    other_f0 = rows.clone()
    other_f0[:, 39] *= 2                                      # F0 in Hz is not an input either
    assert torch.equal(net.predict(other_f0, phonemes), base)


def _member_weights(ensemble: LipApertureNet, k: int, single: LipApertureNet) -> None:
    """Copy member k of ``ensemble`` into the one-member ``single`` (its slice of every grouped layer)."""
    w = single.cfg.width
    pd = single.cfg.phoneme_dim
    own = {"conv_in": w, "conv_rows": w, "to_frames": w, "from_phonemes": w, "head": 1,
           **{f"blocks.{i}": w for i in range(len(single.blocks))}}
    state = {}
    for name, value in ensemble.state_dict().items():
        layer = name.rsplit(".", 1)[0]
        if name == "input_scale":
            state[name] = value
        elif layer == "phoneme_embedding":
            state[name] = value[:, k * pd:(k + 1) * pd]
        else:
            n = own[layer]
            state[name] = value[k * n:(k + 1) * n]
    single.load_state_dict(state)


def test_members_are_independent_networks_whose_mean_is_the_output():
    torch.manual_seed(0)
    ensemble = LipApertureNet(LipApertureConfig(members=3)).eval()
    rows, phonemes = random_speech(24, seed=1)
    singles = []
    for k in range(3):
        single = LipApertureNet(LipApertureConfig()).eval()
        _member_weights(ensemble, k, single)
        singles.append(single(rows[None], phonemes[None])[0])
    members = ensemble.member_apertures(rows[None], phonemes[None])[0]
    for k in range(3):
        assert torch.allclose(members[k], singles[k], atol=1e-5)
    assert torch.allclose(ensemble(rows[None], phonemes[None])[0], torch.stack(singles).mean(0), atol=1e-5)


def test_prediction_moves_as_much_as_the_training_speakers_typically_do():
    """With ``typical_spread`` the utterance's swings are scaled to it: same average, same timing."""
    torch.manual_seed(0)
    plain = LipApertureNet(LipApertureConfig(members=3)).eval()
    with torch.no_grad():
        plain.head.bias.fill_(1.0)                 # apertures well above 0: nothing clamped
    typical = LipApertureNet(LipApertureConfig(members=3, typical_spread=0.06)).eval()
    typical.load_state_dict(plain.state_dict())
    rows, phonemes = random_speech(60, seed=3)
    before, after = plain.predict(rows, phonemes), typical.predict(rows, phonemes)
    assert after.std().item() == pytest.approx(0.06, rel=1e-4)
    assert after.mean().item() == pytest.approx(before.mean().item(), abs=1e-5)
    assert torch.corrcoef(torch.stack([after, before]))[0, 1] > 0.9999


def test_ensemble_prediction_keeps_the_members_spread():
    torch.manual_seed(0)
    ensemble = LipApertureNet(LipApertureConfig(members=3)).eval()
    rows, phonemes = random_speech(60, seed=2)
    with torch.no_grad():
        ensemble.head.bias.fill_(1.0)              # apertures well above 0: nothing clamped
    members = ensemble.member_apertures(rows[None], phonemes[None])[0]
    out = ensemble.predict(rows, phonemes)
    mean = members.mean(0)
    assert torch.allclose(out.std(), members.std(dim=1).mean(), rtol=1e-4)       # a member's typical spread
    assert torch.allclose(out.mean(), mean.mean(), atol=1e-5)                     # same average
    assert torch.corrcoef(torch.stack([out, mean]))[0, 1] > 0.9999                # same timing
    single = LipApertureNet(LipApertureConfig()).eval()
    _member_weights(ensemble, 0, single)
    assert torch.allclose(single.predict(rows, phonemes), single(rows[None], phonemes[None])[0].clamp_min(0))

"""The lip-aperture network: one aperture per frame, and deaf to loudness and microphone colour (the
fbank's utterance mean is removed, so a constant dB offset per band changes nothing)."""
from __future__ import annotations

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

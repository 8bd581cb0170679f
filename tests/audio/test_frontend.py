"""The speech front-end's options: fast vs official F0, the recogniser beside the features, progress."""
from __future__ import annotations

import numpy as np
import pytest

from avct.audio import features as feats
from avct.audio import recognize
from avct.audio.decode import load_audio
from avct.audio.features import acoustic_features, f0_harvest, f0_harvest_fast, normalize_waveform
from avct.audio.frontend import CombinedProgress
from avct.audio.phonemes import frame_phoneme_ids, read_phoneme_json
from avct.errors import AvctError
from avct.inference.options import GenerateOptions
from avct.inference.inputs import load_speech

GOFORWARD = "audio/pocketsphinx_goforward_s16le_16k.raw"


@pytest.fixture(scope="module")
def goforward_path(data):
    return data / GOFORWARD


@pytest.mark.parametrize("clip", ["audio/librivox_austen_0870_7s.wav",            # low male voice
                                  "audio/sonic_talk_female_english_10s.mp3"])    # high female voice
def test_fast_f0_agrees_with_official_on_real_speech(data, clip):
    """Harvest on a 4 kHz copy sees the same band (F0 <= 800 Hz) as Harvest at 16 kHz: on 10 real clips
    voicing agreed on 0.915-1.000 of the rows, the median relative F0 error of rows voiced in both was
    0.01-0.06 %, and 0-3.6 % of them were off by more than 20 % (octave choices). Thresholds leave a
    margin over the worst clip: a broken resampler or a wrong rate fails all three by far."""
    x = normalize_waveform(load_audio(data / clip).samples[: 16000 * 5])  # 5 s keep the test short
    official, fast = f0_harvest(x), f0_harvest_fast(x)
    assert fast.shape == official.shape
    voiced_o, voiced_f = official > 0, fast > 0
    assert np.mean(voiced_o == voiced_f) > 0.9
    both = voiced_o & voiced_f
    relative = np.abs(fast[both] / official[both] - 1)
    assert np.median(relative) < 0.01
    assert np.mean(relative > 0.2) < 0.05


def test_decimate_matches_scipy_resample_poly(data):
    """The fast F0's 16 -> 4 kHz copy without importing scipy.signal: the same numbers as
    ``resample_poly(x, 1, 4)`` on odd and even lengths, and the same F0 from Harvest on a real clip."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(1)
    for n in (1, 3, 4, 5, 81, 16001, 48003):
        x = rng.standard_normal(n)
        np.testing.assert_allclose(feats.decimate(x, 4), resample_poly(x, 1, 4), rtol=0, atol=1e-12)
    np.testing.assert_allclose(feats.decimate(x, 2), resample_poly(x, 1, 2), rtol=0, atol=1e-12)
    x = normalize_waveform(load_audio(data / "audio/librivox_austen_0870_7s.wav").samples[: 16000 * 3])
    ours, theirs = f0_harvest(feats.decimate(x, 4), 4000), f0_harvest(resample_poly(x, 1, 4), 4000)
    np.testing.assert_array_equal(ours > 0, theirs > 0)  # the same voicing, row for row
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


def test_fast_f0_has_official_row_count():
    """One row per 10 ms of the 16 kHz input, whatever the length (the 4 kHz copy's count can differ)."""
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    x = np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(len(t))
    for n in (721, 16157, 16159):
        assert len(f0_harvest_fast(x[:n])) == len(f0_harvest(x[:n])) == 1 + n // 160
    f0 = f0_harvest_fast(x[:8000])
    assert np.median(f0[f0 > 0]) == pytest.approx(150, rel=0.01)  # a pure 150 Hz tone


def test_f0_option_is_plumbed(data, goforward_path):
    """Official mode is bit-identical to the default features (the recipe the parity tests check); the
    generation default is the fast F0; the MFCC/fbank columns do not depend on the F0 method."""
    wav = data / "phoneme_ref" / "id01921_2kRfa3djUmQ_00036.wav"
    samples = load_audio(wav).samples
    official = load_speech(wav, phonemes=wav.with_suffix(".json"), f0="official")
    np.testing.assert_array_equal(official.features, acoustic_features(samples).astype(np.float32))
    default = load_speech(wav, phonemes=wav.with_suffix(".json"))
    assert GenerateOptions().f0 == "fast"
    np.testing.assert_array_equal(default.features, acoustic_features(samples, f0="fast").astype(np.float32))
    np.testing.assert_array_equal(default.features[:, :39], official.features[:, :39])
    assert not np.array_equal(default.features[:, 39], official.features[:, 39])
    np.testing.assert_array_equal(default.phonemes, frame_phoneme_ids(read_phoneme_json(wav.with_suffix(".json"))))


def test_f0_option_validation():
    assert GenerateOptions(f0=" Official ").f0 == "official"
    assert GenerateOptions.from_mapping({"f0": "official"}).f0 == "official"
    with pytest.raises(AvctError, match="f0 must be one of fast, official"):
        GenerateOptions(f0="yin")
    with pytest.raises(AvctError, match="f0 must be one of"):
        acoustic_features(np.ones(1000), f0="harvest")


def test_combined_progress_weighs_parts():
    calls = []
    progress = CombinedProgress(calls.append, {"a": 1.0, "b": 3.0})
    a, b = progress.part("a"), progress.part("b")
    a(0.5)
    b(1.0)
    a(0.4)  # a part going back changes nothing
    a(1.0)
    assert calls == [0.125, 0.875, 1.0]


def test_features_report_increasing_progress_ending_at_one(monkeypatch):
    """Long audio is analysed in blocks; each block reports (forced small so it is cheap)."""
    monkeypatch.setattr(feats, "BLOCK_ROWS", 100)
    monkeypatch.setattr(feats, "CONTEXT_ROWS", 30)
    monkeypatch.setattr(feats, "F0_ONE_PASS_ROWS", 200)
    rng = np.random.default_rng(0)
    samples = rng.standard_normal(16000 * 5) * 1000  # 500 rows: 5 spectral blocks, several F0 blocks
    calls = []
    acoustic_features(samples, f0="fast", on_progress=calls.append)
    assert len(calls) >= 8 and calls[-1] == 1.0 and calls.count(1.0) == 1
    assert np.all(np.diff(calls) > 0) and 0 < calls[0] < 1


def test_recogniser_reports_progress_per_piece(goforward_path, monkeypatch):
    monkeypatch.setattr(recognize, "MAX_CHUNK_S", 1.2)
    monkeypatch.setattr(recognize, "CUT_SEARCH_S", 0.5)
    samples = load_audio(goforward_path).samples
    for kwargs in ({}, {"mode": "allphone"}, {"transcript": "go forward ten meters"}):
        calls = []
        recognize.recognize_phonemes(samples, on_progress=calls.append, **kwargs)
        assert len(calls) == 3 and calls[-1] == 1.0, (kwargs, calls)
        assert np.all(np.diff(calls) > 0)


def test_load_speech_progress_covers_features_and_phonemes(goforward_path, monkeypatch):
    """Recognition runs beside the features; one fraction covers both and the result is the same as
    computing them one after the other."""
    monkeypatch.setattr(recognize, "MAX_CHUNK_S", 1.2)
    monkeypatch.setattr(recognize, "CUT_SEARCH_S", 0.5)
    calls = []
    speech = load_speech(goforward_path, on_progress=calls.append)
    assert len(calls) >= 3 and calls[-1] == 1.0 and calls.count(1.0) == 1
    assert np.all(np.diff(calls) > 0) and calls[0] > 0
    samples = load_audio(goforward_path).samples
    np.testing.assert_array_equal(speech.features, acoustic_features(samples, f0="fast").astype(np.float32))
    np.testing.assert_array_equal(speech.phonemes, frame_phoneme_ids(recognize.recognize_phonemes(samples)))

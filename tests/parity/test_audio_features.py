"""41-d features against the official ones (parity pack §2.2)."""
import numpy as np
import pytest

from avct.audio.features import acoustic_features, fill_unvoiced, normalize_waveform
from support.parity_data import golden


@pytest.fixture(scope="module")
def g(parity):
    return golden(parity, "audio_features.npz")


def test_features_16k_match_official(g):
    feats = acoustic_features(g["wav16k_int16"], f0="official")
    assert feats.shape == (440, 41)
    np.testing.assert_allclose(feats[:, :39], g["feat41_16k"][:, :39], rtol=0, atol=1e-6)
    np.testing.assert_allclose(feats[:, 39], g["feat41_16k"][:, 39], rtol=1e-9)
    np.testing.assert_array_equal(feats[:, 40], g["feat41_16k"][:, 40])
    np.testing.assert_array_equal(acoustic_features(g["wav16k_int16"]), feats)  # official is the default here


def test_normalisation_and_f0_filling(g):
    np.testing.assert_allclose(normalize_waveform(g["wav16k_int16"]), g["normalized_audio_16k"], atol=1e-15)
    filled = fill_unvoiced(g["f0_raw_16k"], g["voiced_16k"])
    np.testing.assert_allclose(filled, g["f0_interp_16k"], rtol=1e-9)
    assert set(np.unique(g["voiced_16k"])) == {0, 1}


def test_fill_unvoiced_analytic():
    f0 = np.array([0, 0, 100, 0, 0, 130, 0], float)
    voiced = (f0 != 0).astype(int)
    np.testing.assert_allclose(fill_unvoiced(f0, voiced), [100, 100, 100, 110, 120, 130, 130])
    np.testing.assert_array_equal(fill_unvoiced(np.zeros(4), np.zeros(4, int)), np.zeros(4))


def test_blockwise_features(g, monkeypatch):
    """Long audio is analysed in blocks (bounded memory): MFCC/fbank exactly as one pass; F0 is one pass
    up to F0_ONE_PASS_ROWS (exact), beyond that blockwise with cuts at quiet points."""
    import avct.audio.features as features

    one_pass = g["feat41_16k"]
    monkeypatch.setattr(features, "BLOCK_ROWS", 100)
    monkeypatch.setattr(features, "CONTEXT_ROWS", 30)
    assert len(features._block_ranges(features._even_cuts(440), 440)) == 5
    blocked = acoustic_features(g["wav16k_int16"])
    np.testing.assert_allclose(blocked, one_pass, rtol=0, atol=1e-9)  # F0 still one pass here

    monkeypatch.setattr(features, "F0_ONE_PASS_ROWS", 200)
    x = features.normalize_waveform(g["wav16k_int16"])
    cuts = features._quiet_cuts(x, 442)
    assert cuts[0] == 0 and cuts[-1] == 442 and np.all(np.diff(cuts) >= 50)
    energy = [np.sum(x[c * 160:(c + 1) * 160] ** 2) for c in cuts[1:-1]]
    assert max(energy) < np.mean(x ** 2) * 160  # cuts land in quieter than average 10 ms frames
    blocked = acoustic_features(g["wav16k_int16"])
    np.testing.assert_allclose(blocked[:, :39], one_pass[:, :39], rtol=0, atol=1e-9)
    assert blocked.shape == one_pass.shape and set(np.unique(blocked[:, 40])) <= {0, 1}

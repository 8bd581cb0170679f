"""The 41-d acoustic features of the paper: per 10 ms row
``[13 MFCC | 26 log mel filterbank | F0 in Hz (unvoiced gaps filled) | voiced flag]``.

No normalisation beyond peak-normalising the waveform: the official checkpoints were trained on these
raw scales (MFCC ≈ ±60, log-fbank ≈ −13..0, F0 ≈ 70–400 Hz). Four rows make one 25 fps video frame.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FEATURE_DIM = 41
ROWS_PER_FRAME = 4  # 4 x 10 ms = one 40 ms video frame


def normalize_waveform(samples: np.ndarray) -> np.ndarray:
    """Remove the mean and scale to peak 1 (float64), as the official code does."""
    x = np.asarray(samples, dtype=np.float64)
    x = x - np.mean(x)
    peak = np.max(np.abs(x)) if x.size else 0.0
    return x / peak if peak > 0 else x


def fill_unvoiced(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Fill unvoiced runs: leading ← first voiced value, trailing ← last voiced value, interior runs ←
    straight line between the neighbouring voiced values. All-unvoiced input stays 0."""
    f0 = np.asarray(f0, dtype=np.float64).copy()
    idx = np.flatnonzero(voiced)
    if idx.size == 0:
        return f0
    # np.interp is exactly "linear between neighbours, constant beyond the ends".
    gaps = np.flatnonzero(voiced == 0)
    f0[gaps] = np.interp(gaps, idx, f0[idx])
    return f0


def f0_harvest(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """pyworld Harvest F0 in Hz at a 10 ms frame period (0 = unvoiced)."""
    import pyworld

    return pyworld.harvest(np.ascontiguousarray(x, dtype=np.float64), sample_rate, frame_period=10)[0]


def acoustic_features(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(T, 41) float64 features at 100 Hz from a mono waveform (any scale)."""
    import python_speech_features as psf

    x = normalize_waveform(samples)
    mfcc = psf.mfcc(x, sample_rate)            # (T1, 13), rectangular window, c0 = log energy
    fbank = psf.logfbank(x, sample_rate)       # (T1, 26)
    f0 = f0_harvest(x, sample_rate)            # (T2,)
    voiced = (f0 != 0.0).astype(np.int64)
    f0 = fill_unvoiced(f0, voiced)
    n = min(len(mfcc), len(fbank), len(f0))
    return np.concatenate([mfcc[:n], fbank[:n], f0[:n, None], voiced[:n, None]], axis=1)


def frame_count(features: np.ndarray) -> int:
    """Number of whole 25 fps video frames the features cover."""
    return len(features) // ROWS_PER_FRAME

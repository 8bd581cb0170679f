"""The 41-d acoustic features of the paper: per 10 ms row
``[13 MFCC | 26 log mel filterbank | F0 in Hz (unvoiced gaps filled) | voiced flag]``.

No normalisation beyond peak-normalising the waveform: the official checkpoints were trained on these
raw scales (MFCC ≈ ±60, log-fbank ≈ −13..0, F0 ≈ 70–400 Hz). Four rows make one 25 fps video frame.

F0 has two methods (``F0Method``): "official" is pyworld Harvest on the 16 kHz signal, as the official
code (training data, evaluation and parity use it: it is ``acoustic_features``' default); "fast" is the
same Harvest on a 4 kHz copy, at about half the cost (the generation default, ``GenerateOptions.f0``).

Why not something cheaper: the networks take F0 in Hz, and where another estimator decides Harvest's
contour choices (how far voicing extends, which octave) differently, F0 moves by tens of Hz over whole
pauses (it is interpolated across them). Judged by frames rendered from each F0 against frames from
official F0: DIO + StoneMask, far cheaper, moved the frames more than Harvest at 4 kHz (with only its
voicing flag swapped in they stayed close, so its Hz values are what matters); Harvest at 2 or 2.5 kHz
was erratic (the 800 Hz ceiling nears the Nyquist). Harvest at 4 kHz is not as close on every clip, as
Harvest itself moves that much under small input changes. The PSNRs per method and clip are in
docs/frontend.md ("F0"); ``benchmarks/frontend.py`` measures the fast method's cost.
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np

from ..media import ROWS_PER_FRAME, SAMPLE_RATE

FEATURE_DIM = 41
HOP = 160           # 10 ms at 16 kHz
WINDOW = 400        # 25 ms analysis window
PREEMPH = 0.97
# Long audio is analysed in blocks so memory stays bounded. MFCC/fbank blocks are exact. Harvest is not
# local (its contour fixing looks far along the signal: 10 s blocks flipped voicing on 3 % of a 30 s clip's
# frames), and needs ~0.8 GB per minute in one pass; so F0 is computed in one pass (exactly as the official
# code) up to F0_ONE_PASS_ROWS, and beyond that in BLOCK_ROWS blocks cut at the quietest point near each
# nominal cut, with CONTEXT_ROWS of context each side.
BLOCK_ROWS = 1000          # 10 s
CONTEXT_ROWS = 100         # 1 s
F0_ONE_PASS_ROWS = 6000    # 60 s
F0Method = Literal["fast", "official"]
F0_METHODS: tuple[str, ...] = ("fast", "official")
FAST_F0_RATE = 4000        # Harvest's 800 Hz ceiling stays well below this rate's 2 kHz Nyquist
# Share of the features' CPU time that the MFCC/fbank part takes (measured: 0.012 s/s against 0.2–0.44 s/s
# for F0), for progress reports only.
SPECTRAL_SHARE = 0.05


def normalization(samples: np.ndarray) -> tuple[float, float]:
    """(mean, peak of |x − mean|) of the whole waveform, without a float64 copy of it."""
    if samples.size == 0:
        return 0.0, 0.0
    mean = float(np.mean(samples, dtype=np.float64))
    peak = max(abs(float(samples.max()) - mean), abs(float(samples.min()) - mean))
    return mean, peak


def normalize_waveform(samples: np.ndarray, stats: tuple[float, float] | None = None) -> np.ndarray:
    """Remove the mean and scale to peak 1 (float64), as the official code does."""
    mean, peak = stats or normalization(np.asarray(samples))
    x = np.asarray(samples, dtype=np.float64) - mean
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


def decimate(x: np.ndarray, factor: int) -> np.ndarray:
    """``x`` low-pass filtered and kept every ``factor``-th sample: the same numbers (to ~1e-15) as
    ``scipy.signal.resample_poly(x, 1, factor)`` with its defaults (a 20·factor + 1 tap windowed sinc,
    Kaiser β 5, cut-off at the new Nyquist, unit gain at DC, centred on each kept sample).

    Why not scipy itself: importing ``scipy.signal`` (it imports ``scipy.stats``) is CPU work that holds
    the GIL at the start of every job's front-end, which is on the first frame's critical path (its cost
    and the first frame it saved: docs/frontend.md); the filter is a few lines of NumPy (tested against
    scipy)."""
    half = 10 * factor
    taps = np.arange(-half, half + 1)
    kernel = np.sinc(taps / factor) * np.kaiser(2 * half + 1, 5.0)
    kernel /= kernel.sum()
    return np.convolve(np.asarray(x, dtype=np.float64), kernel)[half::factor][: -(-len(x) // factor)]


def f0_harvest_fast(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Harvest on a FAST_F0_RATE copy (:func:`decimate`), one row per 10 ms of ``x`` like
    ``f0_harvest`` (Harvest's row count of the shorter copy can differ by one; the last row repeats)."""
    if sample_rate % FAST_F0_RATE:
        raise ValueError(f"fast F0 needs a sample rate that is a multiple of {FAST_F0_RATE} Hz, got {sample_rate}")
    rows = 1 + len(x) // (sample_rate // 100)
    f0 = f0_harvest(decimate(x, sample_rate // FAST_F0_RATE), FAST_F0_RATE)
    return f0[:rows] if len(f0) >= rows else np.concatenate([f0, np.repeat(f0[-1:], rows - len(f0))])


F0_ESTIMATORS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "official": f0_harvest, "fast": f0_harvest_fast}


def check_f0_method(method: str) -> str:
    """The method itself, or an AvctError naming the choices."""
    if method not in F0_ESTIMATORS:
        from ..errors import AvctError

        raise AvctError(f"f0 must be one of {', '.join(F0_METHODS)}, got {method!r}")
    return method


def _spectral(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T, 39) = 13 MFCC (rectangular window, c0 = log energy) | 26 log-fbank, python_speech_features
    defaults; ``x`` is already pre-emphasised."""
    import python_speech_features as psf

    return np.concatenate([psf.mfcc(x, sample_rate, preemph=0), psf.logfbank(x, sample_rate, preemph=0)], axis=1)


def _block_ranges(cuts: list[int], num_rows: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, context start, context stop) for consecutive cut points."""
    return [(a, b, max(0, a - CONTEXT_ROWS), min(num_rows, b + CONTEXT_ROWS)) for a, b in zip(cuts[:-1], cuts[1:])]


def _even_cuts(num_rows: int) -> list[int]:
    return list(range(0, num_rows, BLOCK_ROWS)) + [num_rows]


def _quiet_cuts(x: np.ndarray, num_rows: int) -> list[int]:
    """Cut points ~BLOCK_ROWS apart, each moved to the quietest 50 ms within ±30 % of a block."""
    energy = np.add.reduceat(np.asarray(x[: num_rows * HOP], np.float64) ** 2, np.arange(0, min(len(x), num_rows * HOP), HOP))
    energy = np.convolve(energy, np.ones(5) / 5, mode="same")
    cuts, search = [0], int(0.3 * BLOCK_ROWS)
    while num_rows - cuts[-1] > BLOCK_ROWS + BLOCK_ROWS // 2:
        lo = max(cuts[-1] + BLOCK_ROWS // 2, cuts[-1] + BLOCK_ROWS - search)
        hi = min(num_rows - BLOCK_ROWS // 2, cuts[-1] + BLOCK_ROWS + search)
        cuts.append(lo + int(np.argmin(energy[lo:hi])))
    return cuts + [num_rows]


def acoustic_features(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *, f0: F0Method = "official",
                      on_progress: Callable[[float], None] | None = None) -> np.ndarray:
    """(T, 41) float64 features at 100 Hz from a mono waveform (any scale), in bounded memory.

    ``f0``: "official" (Harvest at 16 kHz, bit-identical to the official features) or "fast" (see the
    module doc). ``on_progress(fraction)`` is called after every block with the share of the work done,
    increasing, the last call 1.0.
    """
    estimate_f0 = F0_ESTIMATORS[check_f0_method(f0)]
    report = on_progress or (lambda fraction: None)
    samples = np.asarray(samples)
    stats = normalization(samples)
    n = len(samples)
    spec_rows = 1 + int(np.ceil((n - WINDOW) / HOP)) if n > WINDOW else 1
    f0_rows = 1 + n // HOP

    spectral = np.empty((spec_rows, 39))
    for start, stop, _, _ in _block_ranges(_even_cuts(spec_rows), spec_rows):
        a = start * HOP
        b = min(n, (stop - 1) * HOP + WINDOW)
        x = normalize_waveform(samples[max(0, a - 1):b], stats)
        x = np.append(x[0], x[1:] - PREEMPH * x[:-1]) if a == 0 else x[1:] - PREEMPH * x[:-1]
        spectral[start:stop] = _spectral(x, sample_rate)[: stop - start]
        report(SPECTRAL_SHARE * stop / spec_rows)

    pitch = np.empty(f0_rows)
    cuts = [0, f0_rows] if f0_rows <= F0_ONE_PASS_ROWS else _quiet_cuts(samples, f0_rows)
    for start, stop, ctx_a, ctx_b in _block_ranges(cuts, f0_rows):
        x = normalize_waveform(samples[ctx_a * HOP: ctx_b * HOP], stats) if ctx_b < f0_rows else \
            normalize_waveform(samples[ctx_a * HOP:], stats)
        pitch[start:stop] = estimate_f0(x, sample_rate)[start - ctx_a: stop - ctx_a]
        if stop < f0_rows:
            report(SPECTRAL_SHARE + (1 - SPECTRAL_SHARE) * stop / f0_rows)
    voiced = (pitch != 0.0).astype(np.int64)
    pitch = fill_unvoiced(pitch, voiced)
    rows = min(spec_rows, f0_rows)
    report(1.0)
    return np.concatenate([spectral[:rows], pitch[:rows, None], voiced[:rows, None]], axis=1)


def frame_count(features: np.ndarray) -> int:
    """Number of whole 25 fps video frames the features cover."""
    return len(features) // ROWS_PER_FRAME

"""Decoded speech → 41-d features and phonemes in one call, the recogniser running beside the features,
with one progress fraction for both.

Why a thread and not a process: pocketsphinx holds the GIL while it decodes, but pyworld's Harvest (most
of the features' time) releases it (a pure-Python thread beside each shows it: docs/frontend.md, "Features
beside the recogniser"). So the features run in a worker thread while this thread
recognises: Harvest gets the other core, and the short numpy steps of the features slip in between the
recogniser's pieces. A process would load the recogniser's models a second time and copy the audio.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from .features import acoustic_features, check_f0_method
from .phonemes import Word
from ..media import SAMPLE_RATE

# CPU seconds per second of audio of each part (benchmarks/frontend.py, 2 busy cores), used only to weigh
# the parts' progress into one fraction.
FEATURE_COST = {"fast": 0.2, "official": 0.36}
PHONEME_COST = 0.4


class CombinedProgress:
    """Several parts' fractions → one weighted fraction for ``callback``: never decreasing, calls never
    overlapping (parts report from different threads), the last call exactly 1.0."""

    def __init__(self, callback: Callable[[float], None] | None, weights: dict[str, float]) -> None:
        self._callback = callback
        self._weights = {name: w / sum(weights.values()) for name, w in weights.items()}
        self._done = dict.fromkeys(weights, 0.0)
        self._last = 0.0
        self._lock = threading.Lock()

    def part(self, name: str) -> Callable[[float], None]:
        """The ``on_progress`` to hand to one part."""
        return lambda fraction: self._update(name, fraction)

    def _update(self, name: str, fraction: float) -> None:
        with self._lock:
            self._done[name] = max(self._done[name], min(1.0, float(fraction)))
            complete = all(v >= 1.0 for v in self._done.values())
            total = 1.0 if complete else min(sum(self._weights[k] * v for k, v in self._done.items()), 1.0 - 1e-9)
            if self._callback is not None and total > self._last:
                self._last = total
                self._callback(total)


def features_and_phonemes(samples: np.ndarray, *, f0: str, words: list[Word] | None = None,
                          transcript: str | None = None,
                          on_progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, list[Word]]:
    """(features (T, 41), words) of 16 kHz speech on the int16 scale (as ``load_audio`` returns).

    ``words`` given (e.g. read from the official JSON): only the features are computed. Otherwise the
    phonemes are recognised offline (force-aligned to ``transcript`` if given) while the features are
    computed in a worker thread. ``on_progress(fraction)`` covers both (may be called from the worker).
    """
    check_f0_method(f0)
    if words is not None:
        progress = CombinedProgress(on_progress, {"features": 1.0})
        return acoustic_features(samples, SAMPLE_RATE, f0=f0, on_progress=progress.part("features")), words
    from .recognize import recognize_phonemes

    progress = CombinedProgress(on_progress, {"features": FEATURE_COST[f0], "phonemes": PHONEME_COST})
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avct-features")
    try:
        features = pool.submit(acoustic_features, samples, SAMPLE_RATE, f0=f0,
                               on_progress=progress.part("features"))
        words = recognize_phonemes(samples, transcript=transcript, on_progress=progress.part("phonemes"))
        return features.result(), words
    finally:
        pool.shutdown(wait=False)  # after an error nobody waits for the features


def speech_front_end(audio, *, phonemes=None, transcript: str | None = None, f0: str = "fast",
                     on_progress: Callable[[float], None] | None = None,
                     on_decoded: Callable[[float], None] | None = None) -> tuple[np.ndarray, list[Word]]:
    """A speech file -> (features (T, 41), words): decoded to 16 kHz, the phonemes read from ``phonemes``
    (official JSON) if given, else recognised (force-aligned to ``transcript`` if given) beside the
    features. ``on_decoded(seconds)`` once the audio is decoded; ``on_progress`` as
    :func:`features_and_phonemes`. The one front-end of a job, in this process or in its own
    (:mod:`avct.audio.frontend_process`)."""
    from .decode import load_audio
    from .phonemes import read_phoneme_json

    words = read_phoneme_json(phonemes) if phonemes is not None else None
    decoded = load_audio(audio)
    if on_decoded is not None:
        on_decoded(len(decoded.samples) / decoded.sample_rate)
    return features_and_phonemes(decoded.samples, f0=f0, words=words, transcript=transcript, on_progress=on_progress)

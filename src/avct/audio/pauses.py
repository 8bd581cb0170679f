"""Pauses in speech: runs of quiet frames long enough not to be the dips between syllables.

One rule for the two places that need it: the lip metric's silence gap (:func:`avct.eval.lips.silent_frames`,
on the waveform) and the mouth's rest in pauses during generation (:func:`avct.inference.mouth_opening.pause_frames`,
on the filterbank).
"""
from __future__ import annotations

import numpy as np


def long_runs(quiet: np.ndarray, min_frames: int) -> np.ndarray:
    """(n,) bool: the frames of ``quiet`` that belong to a run of at least ``min_frames`` True values."""
    quiet = np.asarray(quiet, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    out = np.zeros(len(quiet), dtype=bool)
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start >= min_frames:
            out[start:stop] = True
    return out

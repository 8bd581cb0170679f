"""When the eyes blink, and how far closed they are in each frame (the warp: :mod:`avct.inference.eyelids`).

Why a plan apart from the networks: nothing in a speech recording says when a speaker blinks, and the
official checkpoints never do; a face that never blinks is the first thing a viewer finds dead. People
blink 10-30 times a minute while speaking, at irregular intervals, each blink lasting 100-300 ms with a
fast close and a slower opening, and more often where speech pauses (the end of a phrase).

The plan: intervals drawn from a gamma distribution (shape INTERVAL_SHAPE: irregular, but rarely two
blinks in a row) whose mean gives ``rate`` blinks a minute; a blink that falls within SNAP_S of the start
of a pause in the speech moves there; each blink closes within its first third and opens over the rest.
The random draws are seeded from the inputs (the speech's features and the photo's landmarks), so the
same job always blinks the same way, and another photo or speech blinks otherwise.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..media import FPS

INTERVAL_SHAPE = 3.0    # gamma shape of the intervals between blinks (1: memoryless; larger: more regular)
MIN_INTERVAL_S = 0.6    # never two blinks closer than this
SNAP_S = 0.7            # a blink this close to a pause's start moves there
DURATION_S = (0.12, 0.28)  # a blink's length, drawn uniformly (closing, fully shut, opening)


def blink_seed(*parts: np.ndarray | None) -> int:
    """A seed from the inputs' bytes (not the clock): the same job blinks the same way every time."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        if part is not None:
            digest.update(np.ascontiguousarray(part).tobytes())
    return int.from_bytes(digest.digest(), "little")


def blink_profile(frames: int) -> np.ndarray:
    """(frames,) closures of one blink lasting ``frames`` frames: shut (1) at the end of its first third,
    smoothly open again over the rest."""
    frames = max(2, int(frames))
    closing = max(1, round(frames / 3))
    opening = frames - closing
    ease = lambda t: t * t * (3 - 2 * t)  # noqa: E731  smoothstep
    shut = [ease(k / closing) for k in range(1, closing + 1)]
    reopen = [1 - ease(k / (opening + 1)) for k in range(1, opening + 1)]
    return np.array(shut + reopen, np.float64)


def pause_starts(pauses: np.ndarray) -> np.ndarray:
    """Frames where a pause of the speech begins."""
    pauses = np.asarray(pauses, bool)
    return np.flatnonzero(pauses & ~np.concatenate([[False], pauses[:-1]]))


def blink_plan(num_frames: int, rate: float, pauses: np.ndarray | None = None, seed: int = 0,
               fps: float = FPS) -> np.ndarray:
    """(num_frames,) eye closure of every frame, 0 (open) .. 1 (shut); ``rate`` blinks a minute (0: none);
    ``pauses``: (num_frames,) bool, the frames in pauses of the speech."""
    closure = np.zeros(num_frames, np.float64)
    if rate <= 0 or num_frames <= 0:
        return closure
    rng = np.random.default_rng(seed)
    mean_interval = 60.0 / rate
    starts = [] if pauses is None else pause_starts(pauses) / fps
    t = rng.uniform(0.2, 1.0) * min(mean_interval, 3.0)  # the first blink comes within the first seconds
    last = -np.inf
    while t * fps < num_frames:
        near = [s for s in starts if abs(s - t) <= SNAP_S]
        at = min(near, key=lambda s: abs(s - t)) + 1 / fps if near else t
        length = max(2, round(rng.uniform(*DURATION_S) * fps))
        if at - last >= MIN_INTERVAL_S:
            first = int(round(at * fps))
            profile = blink_profile(length)[: max(0, num_frames - first)]
            closure[first:first + len(profile)] = np.maximum(closure[first:first + len(profile)], profile)
            last = at
        t = max(at, t) + max(MIN_INTERVAL_S, rng.gamma(INTERVAL_SHAPE, mean_interval / INTERVAL_SHAPE))
    return closure

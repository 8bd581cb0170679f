"""The head's motion computed on every k-th frame only, linearly interpolated in between.

Why: where the sharp output does not show the renderer's picture (``--fill auto`` with the bundled
weights, ``--fill photo``), a frame needs from the networks only the dense motion field that warps the
photo; the lips are opened by the mouth warp, per frame, outside the networks. That field moves with
the head, which turns slowly at 25 fps, yet computing it (the AVCT's keypoints, then the dense motion
network) was most of a frame's CPU time. With ``motion_step`` 2 the networks run on every other frame
and the frames between get the mean of their neighbours' fields. ``motion_step`` 1 is every frame, as
before; the renderer's picture, when shown, always comes from every frame.

Key frames are the multiples of the step, and the last frame of the video, so that no frame is
extrapolated, and so that which frames are keys does not depend on how the video is cut into chunks:
a chunk computes the keys that bracket its frames (one of them also computed by the next chunk).
"""
from __future__ import annotations

import numpy as np
import torch


def key_frames(start: int, stop: int, total: int, step: int) -> np.ndarray:
    """Sorted frame indices whose motion is computed so that frames [start, stop) of a ``total``-frame
    video can be interpolated: the multiples of ``step`` from the one at or before ``start`` to the one
    at or after ``stop - 1``, that last one clamped to the video's last frame."""
    first = start // step * step
    last = min(-(-(stop - 1) // step) * step, total - 1)
    keys = np.arange(first, last + 1, step)
    if keys[-1] != last:
        keys = np.append(keys, last)
    return keys


def interpolate(outputs: dict[str, torch.Tensor], keys: np.ndarray, start: int, stop: int) -> dict[str, torch.Tensor]:
    """Per-key tensors (len(keys), ...) -> the same for frames [start, stop), each the linear blend of
    the keys before and after it (a key frame gets its own value exactly)."""
    frames = np.arange(start, stop)
    before = np.searchsorted(keys, frames, side="right") - 1      # last key <= frame
    after = np.searchsorted(keys, frames, side="left")            # first key >= frame (the same on a key)
    span = keys[after] - keys[before]
    weight = torch.from_numpy(np.where(span > 0, (frames - keys[before]) / np.maximum(span, 1), 0.0))
    b, a = torch.from_numpy(before), torch.from_numpy(after)
    blended = {}
    for name, value in outputs.items():
        w = weight.to(value.dtype).view(-1, *([1] * (value.dim() - 1)))
        blended[name] = value[b] * (1 - w) + value[a] * w
    return blended

"""Motion on key frames, interpolated between (avct.inference.key_frames): analytic cases."""
from __future__ import annotations

import numpy as np
import torch

from avct.inference.key_frames import interpolate, key_frames


def test_key_frames_bracket_each_chunk_and_end_on_the_last_frame():
    assert key_frames(0, 1, 50, 2).tolist() == [0]                   # the first frame alone
    assert key_frames(1, 9, 50, 2).tolist() == [0, 2, 4, 6, 8]       # frame 1 needs 0 and 2
    assert key_frames(9, 25, 50, 2).tolist() == list(range(8, 26, 2))
    assert key_frames(45, 50, 50, 2).tolist() == [44, 46, 48, 49]    # the last frame is a key: no extrapolation
    assert key_frames(10, 20, 20, 3).tolist() == [9, 12, 15, 18, 19]
    assert key_frames(3, 7, 50, 1).tolist() == [3, 4, 5, 6]          # step 1: every frame, as before
    # which frames are keys does not depend on the chunking
    whole = set(key_frames(0, 50, 50, 2).tolist())
    pieces = set().union(*(key_frames(a, b, 50, 2).tolist() for a, b in ((0, 1), (1, 9), (9, 25), (25, 50))))
    assert pieces == whole


def test_interpolation_keeps_keys_and_reproduces_linear_motion():
    keys = key_frames(5, 20, 20, 3)                                   # [3, 6, ..., 18, 19]
    field = torch.randn(1, 4, 4, 2)
    slope = torch.randn(1, 4, 4, 2)
    at = lambda frames: field + slope * torch.as_tensor(frames, dtype=torch.float32).view(-1, 1, 1, 1)
    out = interpolate({"deformation": at(keys), "occlusion_map": at(keys)[..., :1]}, keys, 5, 20)
    assert out["deformation"].shape == (15, 4, 4, 2) and out["occlusion_map"].shape == (15, 4, 4, 1)
    assert torch.allclose(out["deformation"], at(np.arange(5, 20)), atol=1e-5)
    # a key frame gets its own value bit for bit, a frame between two keys their weighted mean
    values = torch.randn(len(keys), 3)
    out = interpolate({"x": values}, keys, 5, 20)["x"]
    assert torch.equal(out[6 - 5], values[1])                         # frame 6 is the second key
    assert torch.allclose(out[7 - 5], values[1] * 2 / 3 + values[2] / 3)
    assert torch.allclose(out[19 - 5], values[-1]) and torch.allclose(out[18 - 5], values[-2])

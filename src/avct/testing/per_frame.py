"""The official inference loop's structure, kept as a straightforward reference implementation.

For every output frame it re-runs the keypoint detector, builds the 11-frame window (phonemes, audio
rows, pose boxes) from scratch, runs the AVCT on that one window and renders with the full generator
forward (re-encoding the source), all at batch 1, with the official layers (conv, BN, ReLU and upsampling
each on its own: :func:`avct.models.blocks.plain_layers`). Same algorithm and outputs as
``Pipeline.frames`` (which caches, batches and folds all of that); used to test that equality and as the
benchmark baseline.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..models.avct import window_inputs
from ..models.blocks import plain_layers
from ..models.motion import relative_motion
from ..inference.inputs import Reference, Speech
from ..inference.pipeline import Pipeline


def window(speech: Speech, poses: np.ndarray, rid: int, num_w: int):
    """The official per-frame window: (11,) phonemes, (11, 4, 41) audio, (11, 256, 256) pose boxes."""
    positions = np.arange(rid - num_w, rid + num_w + 1)
    return window_inputs(positions, speech.num_frames, speech.phonemes, speech.frame_rows(), poses)


def per_frame_predictions(pipeline: Pipeline, reference: Reference, speech: Speech) -> Iterator[torch.Tensor]:
    """Yield (1, 3, 256, 256) float frames in [0, 1], one window and one full generator pass per frame."""
    m, dev, dt = pipeline.models, pipeline.device, pipeline.avct_dtype
    poses = pipeline.head_poses(reference, speech)
    image = reference.image.to(dev, torch.float32)
    kp_initial = None
    for rid in range(speech.num_frames):
        with torch.inference_mode(), plain_layers():  # not across the yield: the flag is global
            detected = m.keypoint_detector.detect(image)
            ph, audio, boxes = window(speech, poses, rid, m.avct.cfg.num_w)
            kp_drv = m.avct(torch.from_numpy(ph)[None].to(dev), torch.from_numpy(audio)[None].to(dev, dt),
                            torch.from_numpy(boxes)[None].to(dev, dt), detected.feature_map.to(dt)).to(torch.float32)
            if kp_initial is None:
                kp_initial = kp_drv
            kp_norm = relative_motion(detected.keypoints, kp_drv, kp_initial)
            frame = m.generator(image, detected.keypoints, kp_norm)["prediction"].float()
        yield frame

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

from ..audio.features import ROWS_PER_FRAME
from ..audio.phonemes import SIL_ID
from ..face.pose_box import draw_pose_boxes
from ..models.blocks import plain_layers
from ..models.motion import relative_motion
from ..inference.pipeline import Pipeline, Reference, Speech


def window(speech: Speech, poses: np.ndarray, rid: int, num_w: int):
    """The official per-frame window: (11,) phonemes, (11, 4, 41) audio, (11, 256, 256) pose boxes."""
    n = speech.num_frames
    idx = np.arange(rid - num_w, rid + num_w + 1)
    valid = (idx >= 0) & (idx < n)
    ph = np.array([speech.phonemes[i] if ok else SIL_ID for i, ok in zip(idx, valid)], dtype=np.int64)
    audio = np.stack([speech.features[ROWS_PER_FRAME * i: ROWS_PER_FRAME * (i + 1)] if ok
                      else np.zeros((ROWS_PER_FRAME, speech.features.shape[1]), np.float32)
                      for i, ok in zip(idx, valid)])
    boxes = draw_pose_boxes(poses[np.clip(idx, 0, n - 1)])
    return ph, audio.astype(np.float32), boxes


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

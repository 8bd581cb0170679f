"""Helpers over the dataset reader (``avct.data.dataset``) shared by the renderer, syncnet and avct stages."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.dataset import ClipArrays, TalkingHeadDataset

__all__ = ["ClipArrays", "read_clips", "frames_chw", "clean_starts"]


def read_clips(data_dir: Path | str) -> list[ClipArrays]:
    """Every clip of the dataset (arrays memory-mapped on first use; picklable for DataLoader workers)."""
    dataset = TalkingHeadDataset(data_dir)
    return [dataset.clip(i) for i in range(len(dataset))]


def frames_chw(clip: ClipArrays, idx) -> np.ndarray:
    """uint8 frames (..., 3, 256, 256) for an index or index array (copied out of the memory map)."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(clip.frames[idx]), -1, -3))


def clean_starts(clip: ClipArrays, length: int) -> np.ndarray:
    """Starts s of the windows [s, s + length) inside the usable frames in which the face was found on
    every frame (poses and mouth boxes of lost frames are only interpolated: the dataset doc asks
    training windows to avoid them)."""
    n = clip.usable_frames
    if n < length:
        return np.zeros(0, np.int64)
    if clip.info.lost_frames == 0:
        return np.arange(n - length + 1)
    lost = np.concatenate([[0], np.cumsum(~clip.face_found[:n])])
    starts = np.arange(n - length + 1)
    return starts[lost[starts + length] == lost[starts]]

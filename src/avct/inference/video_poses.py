"""The head-pose track of a real video (for ``pose_from``), measured as ``avct preprocess`` measures
training poses: one fixed crop around the speaker (:func:`avct.data.preprocess.crop.choose_crop`), the video
resampled to 25 fps by timestamps, dlib landmarks and :func:`avct.face.head_pose.estimate_head_pose` on
each crop. Only the frames the job needs are decoded past the first ``max_frames``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import AvctError
from ..limits import check_pixels
from ..media import FPS


def video_head_poses(path: str | os.PathLike, *, max_frames: int | None = None) -> np.ndarray:
    """(T, 6) head poses ``[Rx, Ry, Rz, Tx, Ty, Tz]`` of the video's speaker at 25 fps, at most
    ``max_frames`` of them; NaN rows where the face was lost. AvctError (one line, naming the video)
    when the video cannot be read or shows no usable face."""
    from ..data.preprocess.crop import choose_crop
    from ..data.preprocess.frames import speaker_crops
    from ..data.preprocess.scan import scan_video
    from ..face.head_pose import estimate_head_pose
    from ..video.reader import probe_video

    path = Path(path)
    if path.is_dir():
        raise AvctError(f"pose video is a folder, not a file: {path}")
    if not path.is_file():
        raise AvctError(f"pose video not found: {path}")
    max_seconds = None if max_frames is None else max_frames / FPS
    try:
        info = probe_video(path)
        check_pixels(info.width, info.height, f"pose video {path}")  # before a frame is decoded
        scan = scan_video(path, max_seconds=max_seconds, expected_seconds=info.video_duration or info.duration)
        ticks = scan.tick_sources(max_seconds)
        if len(ticks) == 0:
            raise AvctError("it holds no frames")
        choice = choose_crop(scan.detections, scan.height, scan.width)
        poses = np.full((len(ticks), 6), np.nan)
        for indices, _, points in speaker_crops(path, ticks, choice):
            if not np.isnan(points[0, 0]):
                try:
                    poses[indices] = estimate_head_pose(points)
                except AvctError:
                    pass  # no plausible fit on this frame: held like a lost face
    except AvctError as e:
        message = str(e)
        raise AvctError(message if str(path) in message else f"pose video {path}: {message}") from None
    if np.isnan(poses[:, 0]).all():
        raise AvctError(f"pose video {path}: no head pose could be measured on any frame")
    return poses

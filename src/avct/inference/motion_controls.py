"""Motion controls: what the user may change about the predicted motion, as transformations of the
head poses and keypoints that drive the renderer (never a post-effect on frames).

Head poses ``(N, 6)`` = ``[Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)]`` per 25 fps frame, as
:meth:`avct.inference.stages.Stages.head_poses` predicts them. They reach the pictures only through the pose
boxes the AVCT reads, so a changed pose track changes the keypoints the AVCT predicts:

* ``still``: every frame gets the reference pose (the lips still move with the speech), and the
  keypoints' common translation is removed (below);
* ``pose_scale S``: ``ref + S * (pose - ref)`` per component, and the keypoints' common translation
  scaled by ``S``; ``S = 0`` is exactly ``still``;
* ``pose_from VIDEO``: the poses of a real video's head, as changes from its first frame added to the
  reference pose (the head moves like the video's, from where the photo's head is);
* ``mouth_scale S``: keypoints ``kp_silent + S * (kp_speech - kp_silent)`` (values and jacobians), where
  ``kp_silent`` is the AVCT's answer to silence (phoneme SIL, zero audio features) with the same poses:
  the part of the motion the speech causes is scaled, the rest (head motion) is kept.

Why the keypoints' common translation (the mean of all keypoints' displacement since the first frame)
belongs to head motion: the AVCT also nods with the speech. With the bundled weights, a held pose track
alone still moves the nose, all keypoints together (mostly a common translation, with smaller
per-keypoint spreads around it); removing the common part keeps the nose in its place while the face
still moves with the speech (dlib inner-lip opening: same spread). Measured in docs/output.md.
So ``still`` holds both, and ``pose_scale`` scales both (its visible effect is not linear in ``S``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..models.keypoints import Keypoints
from .options import GenerateOptions


def hold_pose(reference_pose: np.ndarray, num_frames: int) -> np.ndarray:
    """``still``: (num_frames, 6) float64, every row the reference pose."""
    return np.tile(np.asarray(reference_pose, dtype=np.float64).reshape(1, 6), (num_frames, 1))


def scale_poses(poses: np.ndarray, reference_pose: np.ndarray, scale: float) -> np.ndarray:
    """``pose_scale``: ``ref + scale * (poses - ref)`` per component, float64 (scale 0 gives exactly
    :func:`hold_pose`, scale 1 the poses themselves)."""
    ref = np.asarray(reference_pose, dtype=np.float64).reshape(1, 6)
    return ref + float(scale) * (np.asarray(poses, dtype=np.float64) - ref)


def hold_missing(poses: np.ndarray) -> np.ndarray:
    """Rows that are NaN (no face in that frame) take the last pose before them; leading ones take the
    first pose found. ValueError if no row has a pose."""
    poses = np.asarray(poses, dtype=np.float64)
    found = ~np.isnan(poses).any(axis=1)
    if not found.any():
        raise ValueError("no frame has a head pose")
    last_found = np.maximum.accumulate(np.where(found, np.arange(len(poses)), -1))
    return poses[np.where(last_found >= 0, last_found, np.flatnonzero(found)[0])]


def loop_frames(count: int, num_frames: int) -> np.ndarray:
    """Indices into a track of ``count`` frames for ``num_frames`` output frames: the track, then
    played backwards, forwards again and so on (no jump where it would restart); cut when longer."""
    if count <= 1:
        return np.zeros(num_frames, dtype=np.int64)
    phase = np.arange(num_frames) % (2 * count - 2)
    return np.where(phase < count, phase, 2 * count - 2 - phase)


def transfer_pose_changes(video_poses: np.ndarray, reference_pose: np.ndarray, num_frames: int) -> np.ndarray:
    """``pose_from``: (num_frames, 6) = reference pose + the video's pose changes from its first frame.

    ``video_poses``: (T, 6) at 25 fps, NaN rows where the face was lost (held, :func:`hold_missing`);
    looped or cut to ``num_frames`` (:func:`loop_frames`)."""
    track = hold_missing(video_poses)
    changes = track - track[0]
    ref = np.asarray(reference_pose, dtype=np.float64).reshape(1, 6)
    return ref + changes[loop_frames(len(track), num_frames)]


def head_scale(options: GenerateOptions) -> float:
    """How much head motion a job keeps: 0 for ``still``, else ``pose_scale``."""
    return 0.0 if options.still else options.pose_scale


def scale_common_translation(kp: Keypoints, kp_initial: Keypoints, scale: float) -> Keypoints:
    """Keypoints whose common translation since the first frame (mean over the keypoints of
    ``kp - kp_initial``) is scaled by ``scale``; their motion relative to each other is kept."""
    translation = (kp.value - kp_initial.value).mean(dim=-2, keepdim=True)  # (B, 1, 2)
    return Keypoints(kp.value - (1.0 - scale) * translation, kp.jacobian)


def scale_mouth(kp_speech: Keypoints, kp_silent: Keypoints, scale: float) -> Keypoints:
    """``mouth_scale``: ``kp_silent + scale * (kp_speech - kp_silent)`` for values and jacobians."""
    def blend(speech, silent):
        return None if speech is None else silent + scale * (speech - silent)

    return Keypoints(blend(kp_speech.value, kp_silent.value), blend(kp_speech.jacobian, kp_silent.jacobian))


def driving_poses(options: GenerateOptions, reference_pose: np.ndarray, num_frames: int,
                  predicted: Callable[[], np.ndarray]) -> np.ndarray:
    """The head poses of a job: the reference pose (``still``), the pose video's changes
    (``pose_from``) or ``predicted()`` (called only when needed), then scaled by ``pose_scale``."""
    scale = head_scale(options)
    if scale == 0.0:
        return hold_pose(reference_pose, num_frames)
    if options.pose_from is not None:
        from .video_poses import video_head_poses

        poses = transfer_pose_changes(video_head_poses(options.pose_from, max_frames=num_frames),
                                      reference_pose, num_frames)
    else:
        poses = predicted()
    return poses if scale == 1.0 else scale_poses(poses, reference_pose, scale)

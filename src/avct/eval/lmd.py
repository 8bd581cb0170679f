"""LMD: the normalised relative mouth-landmark distance between generated and reference frames.

The paper computes LMD (Chen et al. 2019) "normalised and relative ... to avoid the influence of both
head poses and image resolution": generated videos have other head motion than the ground truth and may
have another resolution, so absolute pixel distances would mostly measure pose and size. Definition
used here (dimensionless; units of the face's own inter-ocular distance):

For a frame, let ``L`` be the 68 dlib landmarks (iBUG-300W order, the same detector and predictor as the
front-end, :mod:`avct.face.landmarks`), ``e_l = mean(L[36:42])`` and ``e_r = mean(L[42:48])`` the eye
centres, ``d = ||e_r - e_l||`` the inter-ocular distance and ``θ`` the angle of ``e_r - e_l``. The
mouth points ``M = L[48:68]`` (20 points) are normalised as

    M̂ = R(-θ) (M - mean(M)) / d

i.e. relative to their own centroid (translation removed), scaled by the inter-ocular distance (image
size and face size removed) and rotated so that the eye line is horizontal (in-plane head roll
removed). For a frame pair the distance is the mean over the 20 points of the Euclidean distance
``||M̂_gen[k] - M̂_ref[k]||``; the video's LMD is the mean over all frame pairs where both frames have a
face, and the reported LMD is the mean over all frames of all videos (equivalently over frames and
points). Identical videos give exactly 0, and a uniform translation, scaling or in-plane rotation of a
video changes its normalised landmarks only by the landmark detector's own (sub-pixel) jitter.

Frame pairing: frame ``i`` of the generated video is compared with the reference frame shown at the
same time (same index when both have the same frame rate); the shorter video sets the length.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..face.landmark_groups import LEFT_EYE, MOUTH, RIGHT_EYE
from ..face.landmarks import detect_faces

__all__ = ["normalize_mouth", "landmark_distance", "frame_landmarks", "pair_indices", "video_lmd"]



def normalize_mouth(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks -> (20, 2) mouth points, centred, de-rotated, in inter-ocular units."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    eye = pts[RIGHT_EYE].mean(0) - pts[LEFT_EYE].mean(0)
    d = float(np.hypot(*eye))
    if not np.isfinite(d) or d <= 0:
        raise ValueError("degenerate landmarks: the eye centres coincide")
    c, s = eye / d  # cos θ, sin θ
    rot = np.array([[c, s], [-s, c]])  # R(-θ)
    mouth = pts[MOUTH] - pts[MOUTH].mean(0)
    return mouth @ rot.T / d


def landmark_distance(generated: np.ndarray, reference: np.ndarray) -> float:
    """Mean over the 20 mouth points of the distance between normalised landmarks of one frame pair."""
    a, b = normalize_mouth(generated), normalize_mouth(reference)
    return float(np.linalg.norm(a - b, axis=1).mean())


def frame_landmarks(rgb: np.ndarray) -> np.ndarray | None:
    """The largest face's 68 landmarks of an RGB frame, or None when there is no face."""
    faces = detect_faces(rgb)
    return faces[0].landmarks if faces else None


def pair_indices(n_gen: int, fps_gen: float, n_ref: int, fps_ref: float, shift: int = 0) -> list[tuple[int, int]]:
    """(generated index, reference index) pairs shown at the same time; same index for equal rates.
    ``shift``: pair generated frame i with the reference frame shown at the time of generated frame
    i + shift instead (the timing diagnostic, :func:`avct.eval.lips.timing_profile`)."""
    if n_gen <= 0 or n_ref <= 0:
        return []
    same_rate = not fps_gen or not fps_ref or abs(fps_gen - fps_ref) < 1e-3
    pairs = []
    for i in range(n_gen):
        j = i + shift if same_rate else int(np.floor((i + shift) * fps_ref / fps_gen + 0.5))
        if j < 0:
            continue
        if j >= n_ref:
            break
        pairs.append((i, j))
    return pairs


def video_lmd(generated: dict[int, np.ndarray | None], reference: dict[int, np.ndarray | None],
              pairs: Sequence[tuple[int, int]]) -> list[float]:
    """Per-frame-pair LMD for the pairs whose two frames both have landmarks (missing ones skipped)."""
    out = []
    for i, j in pairs:
        a, b = generated.get(i), reference.get(j)
        if a is None or b is None:
            continue
        try:
            out.append(landmark_distance(a, b))
        except ValueError:
            continue
    return out

"""Does the generated mouth follow the speech? Lip-aperture statistics and a face-sharpness ratio.

Why these and not pixel change in a mouth box: head motion moves every pixel of a mouth box, so a
shaking head with a frozen mouth scored as "moving lips". The mouth *aperture* below is measured on
dlib's landmarks of each frame relative to the face's own size, so head motion, face size and image
resolution drop out; what is left is how far the lips are apart.

Per frame (dlib's 68 landmarks of the largest face, :mod:`avct.face.landmarks`, 0-based iBUG order;
:func:`avct.face.landmark_groups.mouth_aperture`)::

    aperture = mean(|p61 − p67|, |p62 − p66|, |p63 − p65|) / |mean(p36..p41) − mean(p42..p47)|

i.e. the mean inner-lip gap in units of the inter-ocular distance (0 = lips closed). The real clip is
resampled to the generated frame times (by time, nearest frame: :func:`avct.eval.lmd.pair_indices`),
and over the frame pairs where *both* frames have a face:

* ``r``: Pearson correlation of the two aperture curves (1: the lips open and close with the real
  ones; 0 when the generated curve is constant, i.e. a frozen mouth — its std below 1e-6 of the real
  one, so that rounding noise is not correlated; None when the real curve is constant or fewer than
  3 pairs have faces);
* ``amplitude``: std(generated) / std(real) (1: the lips move as much as the real ones; 0: frozen);
* ``silence_gap``: mean(generated − real aperture) over the pairs whose audio is silent (positive: the
  generated mouth hangs open in pauses); None without silent frames. Silence rule
  (:func:`silent_frames`): a video frame's 40 ms audio window is *quiet* when its RMS is more than
  20 dB below the clip's speech level (the 90th percentile of the 40 ms RMS values over the whole
  clip), and *silent* when it belongs to a run of at least 3 quiet frames (120 ms: pauses, not the
  short dips between syllables, during which the lips keep moving).

``sharpness``: variance of the Laplacian of the face box (dlib's detector box, grayscale, resized to
128²), median over the generated frames / median over the paired real frames (1 = as sharp as the
real video; a blurry renderer gives ≪ 1). Unlike CPBD it looks at the face only, at a fixed scale.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from ..audio.pauses import long_runs
from ..face.landmark_groups import mouth_aperture
from .cpbd import to_gray
from .lmd import pair_indices

__all__ = ["face_sharpness", "silent_frames",
           "LipStats", "lip_statistics", "sharpness_ratio", "FrameMeasures", "measure_frames",
           "measure_video", "LipComparison", "compare_measures", "timing_profile", "timing_peak"]

SHARPNESS_SIZE = 128        # face box resized to this square before the Laplacian
QUIET_DB = -20.0            # a 40 ms window this far below the speech level is quiet
SPEECH_PERCENTILE = 90      # the clip's speech level: this percentile of its 40 ms RMS values
MIN_SILENT_FRAMES = 3       # quiet frames in a row that make a pause
MIN_PAIRS = 3               # fewer frame pairs with faces: no statistics
FROZEN_AMPLITUDE = 1e-6     # generated std / real std below this: a constant curve (r = 0)


# ---- per frame ------------------------------------------------------------------------------------
def face_sharpness(rgb: np.ndarray, box: Sequence[float]) -> float:
    """Variance of the Laplacian of the face box (x0, y0, x1, y1; inclusive, as dlib's), grayscale,
    resized to 128² (NaN when the box lies outside the image)."""
    gray = to_gray(rgb)
    h, w = gray.shape
    x0, y0 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
    x1, y1 = min(int(round(box[2])) + 1, w), min(int(round(box[3])) + 1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return math.nan
    face = cv2.resize(gray[y0:y1, x0:x1], (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(face, cv2.CV_64F).var())


# ---- audio ----------------------------------------------------------------------------------------
def silent_frames(samples: np.ndarray, sample_rate: int, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) bool: video frame i (audio window [i/fps, (i+1)/fps)) lies in a pause of the speech.

    The rule is the module docstring's: quiet = RMS more than 20 dB below the 90th percentile of the
    clip's window RMS values; silent = part of a run of at least 3 quiet frames. Frames past the end of
    the audio are not silent (unknown)."""
    x = np.asarray(samples, dtype=np.float64)
    bounds = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    rms = np.full(n_frames, np.nan)
    for i in range(n_frames):
        window = x[bounds[i]:bounds[i + 1]]
        if len(window):
            rms[i] = np.sqrt(np.mean(window * window))
    known = np.isfinite(rms)
    if not known.any():
        return np.zeros(n_frames, dtype=bool)
    level = np.percentile(rms[known], SPEECH_PERCENTILE)
    quiet = known & (rms < level * 10.0 ** (QUIET_DB / 20.0))
    return long_runs(quiet, MIN_SILENT_FRAMES)


# ---- statistics -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LipStats:
    """Lip-motion statistics of one generated video against its real clip (None: not computable)."""

    r: float | None
    amplitude: float | None
    silence_gap: float | None
    pairs: int            # frame pairs with a face on both sides
    silent_pairs: int     # ... of which silent


def lip_statistics(generated: np.ndarray, real: np.ndarray, silent: np.ndarray | None = None) -> LipStats:
    """r, amplitude ratio and silence gap of two aperture curves of the same frame times (NaN = no face)."""
    g, rl = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    if g.shape != rl.shape:
        raise ValueError(f"aperture curves differ in length: {g.shape} vs {rl.shape}")
    both = np.isfinite(g) & np.isfinite(rl)
    n = int(both.sum())
    gap, n_silent = None, 0
    if silent is not None:
        quiet = both & np.asarray(silent, dtype=bool)
        n_silent = int(quiet.sum())
        if n_silent:
            gap = float(np.mean(g[quiet] - rl[quiet]))
    if n < MIN_PAIRS:
        return LipStats(None, None, gap, n, n_silent)
    g, rl = g[both], rl[both]
    real_std = float(rl.std())
    if real_std == 0.0:
        return LipStats(None, None, gap, n, n_silent)
    amplitude = float(g.std()) / real_std
    # a frozen mouth has no correlation; below 1e-6 of the real variation only rounding is left
    r = 0.0 if amplitude < FROZEN_AMPLITUDE else float(np.corrcoef(g, rl)[0, 1])
    return LipStats(r, amplitude, gap, n, n_silent)


def sharpness_ratio(generated: Iterable[float], real: Iterable[float]) -> float | None:
    """median(generated) / median(real) over the finite values; None when either side has none."""
    g = np.array([v for v in generated if v is not None and np.isfinite(v)])
    rl = np.array([v for v in real if v is not None and np.isfinite(v)])
    if not len(g) or not len(rl) or np.median(rl) <= 0:
        return None
    return float(np.median(g) / np.median(rl))


# ---- whole videos ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameMeasures:
    """Per-frame aperture and face sharpness of one video (NaN where no face was found)."""

    aperture: np.ndarray
    sharpness: np.ndarray
    fps: float

    def __len__(self) -> int:
        return len(self.aperture)


def measure_frames(frames: Iterable[np.ndarray], fps: float) -> FrameMeasures:
    """Aperture and sharpness of every RGB frame (the largest face of each)."""
    from ..face.landmarks import detect_faces

    aperture, sharp = [], []
    for frame in frames:
        faces = detect_faces(frame)
        aperture.append(mouth_aperture(faces[0].landmarks) if faces else math.nan)
        sharp.append(face_sharpness(frame, faces[0].box) if faces else math.nan)
    return FrameMeasures(np.array(aperture, np.float64), np.array(sharp, np.float64), float(fps))


def measure_video(path: str | os.PathLike) -> FrameMeasures:
    """:func:`measure_frames` of every frame of a video file."""
    from ..video.reader import probe_video, read_video

    return measure_frames(read_video(path), probe_video(path).fps)


@dataclass(frozen=True)
class LipComparison:
    """One generated video against its real clip: lip statistics and the sharpness ratio."""

    lips: LipStats
    sharpness: float | None
    frames: int  # generated frames with a real frame at the same time


def compare_measures(generated: FrameMeasures, real: FrameMeasures,
                     audio: tuple[np.ndarray, int] | None = None) -> LipComparison:
    """Pair each generated frame with the real frame shown at its time and compare.

    ``audio``: (samples, sample_rate) of the speech for the silence gap (its time 0 = frame 0)."""
    gi, rj = _paired(generated, real)
    silent = None
    if audio is not None and len(gi):
        silent = silent_frames(audio[0], audio[1], len(generated), generated.fps)[gi]
    stats = lip_statistics(generated.aperture[gi], real.aperture[rj], silent)
    return LipComparison(stats, sharpness_ratio(generated.sharpness[gi], real.sharpness[rj]), len(gi))


def _paired(generated: FrameMeasures, real: FrameMeasures, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(generated indices, real indices) of the frames shown at the same time (``shift``: see
    :func:`avct.eval.lmd.pair_indices`), as two int arrays."""
    pairs = np.array(pair_indices(len(generated), generated.fps, len(real), real.fps, shift=shift),
                     dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def timing_profile(generated: FrameMeasures, real: FrameMeasures, max_lag: int = 3) -> dict[int, float | None]:
    """Lip r with the real clip shifted: lag k pairs generated frame i with the real frame shown at time
    (i + k) / fps (k > 0: the real mouth moves later than the generated one), for k in −max_lag … max_lag.

    A diagnostic beside the metric, which pairs equal times: when r peaks away from 0, what is lost is
    timing, the generated mouth's or the real clip's own (its sound running ahead of or behind its
    picture, common in web video), not the mouth's shape."""
    profile: dict[int, float | None] = {}
    for lag in range(-max_lag, max_lag + 1):
        gi, rj = _paired(generated, real, lag)
        profile[lag] = lip_statistics(generated.aperture[gi], real.aperture[rj]).r
    return profile


def timing_peak(generated: FrameMeasures, real: FrameMeasures, max_lag: int = 3) -> tuple[int | None, float | None]:
    """The lag at which :func:`timing_profile` peaks and r there; (None, None) when no lag has an r."""
    profile = {lag: r for lag, r in timing_profile(generated, real, max_lag).items() if r is not None}
    if not profile:
        return None, None
    best = max(profile, key=profile.get)
    return best, profile[best]

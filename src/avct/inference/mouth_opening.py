"""Opening the photo's mouth by a given amount: a warp of the lips and jaw, composed into the sharp
output's sampling map (:mod:`avct.inference.sharp`).

Why a geometric warp: the renderer's keypoints carry the head and face, but a renderer trained on a
CPU budget moves the lips by a third of the real amount even when driven by a real clip's own keypoints
(model card). The lip-aperture network (:mod:`avct.models.lip_aperture`) predicts how far apart the
lips are; this module moves them apart (or together) by exactly that much in the photo, at its own
resolution, before the renderer's motion field moves the head.

Per column x of the mouth (from dlib's landmarks of the photo; y grows downwards), with the opening
``o`` in pixels (negative closes) weighted across the mouth ``w(x) = (1 − u²)²``, ``u`` = distance from
the mouth's centre in half mouth-widths, the vertical sampling map is piecewise linear through::

    where the frame shows (y_in)         reads the photo at (y_out)
    nose                                 nose                   (nothing above moves)
    upper inner lip − UPPER·w·o          upper inner lip        (the upper lip rises a little)
    lower inner lip + (1−UPPER)·w·o      lower inner lip        (the lower lip drops the rest)
    chin + JAW·w·o                       chin                   (the jaw follows)
    below the chin, CHIN_TAIL of the lip-to-chin distance: unchanged

so the rows between the lips read the lips' meeting line, stretched into a gap that is then darkened
(``shade``: the mouth's inside, which the photo does not have; see SHADE), and a negative ``o`` squeezes an
open mouth shut. Nothing moves outside the mouth's columns or above the nose; the map stays monotonic
(the lips never cross), so nothing folds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio.pauses import long_runs
from ..face.landmark_groups import (CHIN, LOWER_INNER_LIP, MOUTH_CORNERS, NOSE_BASE, UPPER_INNER_LIP,
                                    inter_ocular_distance, mouth_aperture)

UPPER = 0.3          # share of the opening taken by the upper lip (the jaw carries the rest)
JAW = 0.6            # share of the lower lip's drop that the chin follows
CHIN_TAIL = 0.6      # below the chin, the warp fades out over this fraction of the lip-to-chin distance
WIDTH_MARGIN = 1.15  # the opening's half width, in half mouth-widths (corner to corner, outer lips)
# The gap's shade, the mouth's inside (which the photo does not have): dark across the gap but for a
# soft edge at each lip, min(1, SHADE_EDGE·sin(π t)) at height t of the gap, times SHADE, in full from
# SHADE_FULL inter-ocular distances of opening. A faint shade in the middle only (0.55·sin(π t), in full
# from 0.12) showed an opening as thicker, smeared lips rather than an open mouth: on a bearded man's
# closed mouth (an unseen wide-shot clip) dlib read an opening of 0.12 as 0.38 of it, and a viewer saw
# the same; with this shade, 0.68. Driven by real apertures (sharp + real lips) it changed nothing
# measurable on the 25 training clips (r 0.848 vs 0.851, median amplitude 0.88 vs 0.90, first 8 s of
# each), so READ_GAIN stands; on the seven held-out clips' whole photos r 0.91 vs 0.90, amplitude 0.98
# vs 0.93 (model card). Darker still (0.8, full from 0.05) read no better and looked like a black hole.
SHADE = 0.7
SHADE_FULL = 0.06
SHADE_EDGE = 2.0
# dlib's landmarks read a warped opening smaller than it is (a stretched lip line is not a real mouth's
# inside): driven by the real apertures of five training clips (sharp output, their own keypoints), the
# generated aperture moved 0.73-0.80 times as much as the real one (mean 0.77; r 0.87-0.99). The
# opening is scaled up by the inverse, so that a predicted aperture reads as that aperture.
READ_GAIN = 1.3



@dataclass(frozen=True)
class MouthShape:
    """A face's mouth, in the pixels of the image the warp samples."""

    upper: np.ndarray        # (5, 2) inner upper lip, corner to corner
    lower: np.ndarray        # (5, 2) inner lower lip
    centre_x: float
    half_width: float        # of the opening's weight profile
    nose_y: float
    chin_y: float
    iod: float               # inter-ocular distance (the aperture's unit)
    aperture: float          # this face's own aperture, inter-ocular units (:func:`avct.face.landmark_groups.mouth_aperture`)

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> "MouthShape":
        pts = np.asarray(landmarks, np.float64)
        corners = pts[list(MOUTH_CORNERS)]
        return cls(upper=pts[list(UPPER_INNER_LIP)], lower=pts[list(LOWER_INNER_LIP)],
                   centre_x=float(corners[:, 0].mean()),
                   half_width=float(WIDTH_MARGIN * abs(corners[1, 0] - corners[0, 0]) / 2),
                   nose_y=float(pts[NOSE_BASE, 1]), chin_y=float(pts[CHIN, 1]),
                   iod=inter_ocular_distance(pts),
                   aperture=float(mouth_aperture(pts)))

    def weight(self, x: np.ndarray) -> np.ndarray:
        """The opening's share at columns ``x``: 1 at the centre, 0 beyond the corners."""
        u = (np.asarray(x, np.float32) - self.centre_x) / max(self.half_width, 1.0)
        return np.clip(1 - u * u, 0, 1) ** 2

    def pixels_per_aperture(self) -> float:
        """Pixels of opening ``o`` that raise the aperture read on the frame by one inter-ocular unit: the
        metric averages three lip pairs, which the profile ``w`` opens by less than its centre, and the
        landmarks under-read a warped mouth (READ_GAIN)."""
        pair_x = np.array([(self.upper[i, 0] + self.lower[i, 0]) / 2 for i in (1, 2, 3)])
        return READ_GAIN * self.iod / max(float(self.weight(pair_x).mean()), 0.2)

    def zone(self, max_opening: float) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the sampled pixels the warp can change for openings up to ``max_opening`` px."""
        lip_to_chin = self.chin_y - float(self.lower[:, 1].max())
        bottom = self.chin_y + CHIN_TAIL * max(lip_to_chin, 1.0) + JAW * abs(max_opening)
        return (self.centre_x - self.half_width, self.nose_y, self.centre_x + self.half_width, bottom)


REST_PERCENTILE = 5   # the lowest apertures the network predicts for an utterance: its "lips at rest"
PAUSE_DB = 20.0       # a frame this far below the speech level (90th percentile of frame energies) is quiet
PAUSE_FRAMES = 10     # ... and quiet frames in a row this long (0.4 s) make a pause, where the lips rest


def rest_level(predicted: np.ndarray) -> float:
    """The network's "lips at rest" for an utterance: the REST_PERCENTILE-th percentile of its apertures."""
    return float(np.percentile(predicted, REST_PERCENTILE))


def aperture_changes(predicted: np.ndarray, photo_aperture: float) -> np.ndarray:
    """How much to change the photo's aperture in each frame, given the network's apertures for the
    utterance (inter-ocular units).

    The network's level differs between voices (on one held-out clip its mean was twice the real one,
    mouth open in every pause), and the photo shows this person's own mouth. So the prediction is read
    relative to its own rest level, the REST_PERCENTILE-th percentile over the utterance, and added to
    the lower of that rest and the photo's aperture: a closed mouth in the photo stays closed at rest
    and opens by the predicted motion; an open one closes to the predicted rest in pauses."""
    predicted = np.asarray(predicted, np.float64)
    if not len(predicted):
        return predicted
    rest = rest_level(predicted)
    return min(photo_aperture, rest) + (predicted - rest) - photo_aperture


def pause_frames(features: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) bool: the frames in pauses of the speech, from the 41-d feature rows' log-fbank
    (4 rows a frame): quiet when the frame's filterbank power is PAUSE_DB below the utterance's speech
    level, a pause when PAUSE_FRAMES quiet frames follow each other (not the dips between syllables).

    Why a rule beside the network: speakers often open the mouth to breathe in before a phrase, and the
    network learned that from its clips; on a held-out clip it opened the mouth to 0.29 in a silent
    pause where the real one stayed at 0.04. Nobody expects a talking photo to gape in silence.
    Only pauses of 0.4 s and longer: in the shorter quiet runs between words, real lips are still
    moving (in the 22 training clips with quiet frames, the real aperture averaged 0.11 in them and 0.11
    in speech). In two-fold cross-speaker validation on the 25 training clips
    (``scripts/lip_validation.py``), resting in runs of 10 frames instead of 3 raised the correlation
    with the real aperture from 0.41 to 0.44, and the clips whose aperture in silence was within 0.02
    of the real one from 3 to 6 of the 22 with pauses."""
    rows = np.asarray(features[: num_frames * 4, 13:39], np.float64).reshape(num_frames, 4, 26)
    power = np.log(np.exp(rows).sum(axis=2).mean(axis=1) + 1e-12)          # natural log of power
    if not len(power):
        return np.zeros(0, dtype=bool)
    quiet = power < np.percentile(power, 90) - PAUSE_DB / 10 * np.log(10)
    return long_runs(quiet, PAUSE_FRAMES)


def rest_in_pauses(predicted: np.ndarray, pause: np.ndarray) -> np.ndarray:
    """The predicted apertures with the pauses' frames at the utterance's rest level, eased over one
    frame each side (a 3-frame mean at the edges) so that the lips do not snap shut."""
    predicted = np.asarray(predicted, np.float64)
    if not pause.any():
        return predicted
    gated = np.where(pause, rest_level(predicted), predicted)
    eased = np.convolve(np.pad(gated, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    edges = pause != np.roll(pause, 1)
    edges |= np.roll(edges, -1)
    edges[0] = edges[-1] = False
    return np.where(edges, eased, gated)


def aperture_plan(predicted: np.ndarray, features: np.ndarray, photo_aperture: float) -> np.ndarray:
    """The lip-aperture network's apertures for an utterance (its 41-d feature rows beside them) -> the
    change of the photo's aperture in each frame: at rest in the speech's pauses (:func:`rest_in_pauses`),
    read relative to the photo's own mouth (:func:`aperture_changes`). Generation and
    ``scripts/lip_validation.py`` both go through here, so what is validated is what runs."""
    predicted = np.asarray(predicted, np.float64)
    return aperture_changes(rest_in_pauses(predicted, pause_frames(features, len(predicted))), photo_aperture)


def open_mouth(map_x: np.ndarray, map_y: np.ndarray, mouth: MouthShape, opening: float) -> np.ndarray | None:
    """Compose the mouth warp into a sampling map, in place: ``map_y`` (any shape, float32) becomes
    where the frame reads the photo once the mouth is opened by ``opening`` px (negative: closed).

    Returns the shade of each map pixel (0..1, the inside of the opened mouth), or None when the
    opening is zero."""
    if opening == 0:
        return None
    x, y = map_x, map_y
    w = mouth.weight(x)
    order_u, order_l = np.argsort(mouth.upper[:, 0]), np.argsort(mouth.lower[:, 0])
    y_upper = np.interp(x, mouth.upper[order_u, 0], mouth.upper[order_u, 1]).astype(np.float32)
    y_lower = np.interp(x, mouth.lower[order_l, 0], mouth.lower[order_l, 1]).astype(np.float32)
    y_lower = np.maximum(y_lower, y_upper)
    gap = y_lower - y_upper
    lip_to_chin = max(mouth.chin_y - float(mouth.lower[:, 1].max()), 2.0)
    # the opening at each column, limited so that the lips meet but never cross, the upper lip stays
    # below the nose and the chin above the warp's lower end
    o = np.float32(opening) * w
    o = np.maximum(o, -gap)
    o = np.minimum(o, np.maximum((y_upper - mouth.nose_y - 1) / UPPER, 0))
    o = np.minimum(o, CHIN_TAIL * lip_to_chin / JAW * 0.9)
    bottom = np.float32(mouth.chin_y + CHIN_TAIL * lip_to_chin)
    knots_in = (np.float32(mouth.nose_y), y_upper - UPPER * o, y_lower + (1 - UPPER) * o,
                np.float32(mouth.chin_y) + JAW * o, bottom)
    knots_out = (np.float32(mouth.nose_y), y_upper, y_lower, np.float32(mouth.chin_y), bottom)
    out = y.copy()
    shade = np.zeros_like(y)
    moved = o != 0  # elsewhere the map is the identity exactly (no float round trip)
    for k in range(4):
        lo, hi = knots_in[k], knots_in[k + 1]
        inside = moved & (y >= lo) & (y < hi)
        t = (y - lo) / np.maximum(hi - lo, 1e-3)
        out = np.where(inside, knots_out[k] + t * (knots_out[k + 1] - knots_out[k]), out)
        if k == 1:  # between the lips: the mouth's inside
            depth = np.clip(o / (SHADE_FULL * mouth.iod), 0, 1)
            profile = np.minimum(SHADE_EDGE * np.sin(np.pi * np.clip(t, 0, 1)), 1)
            shade = np.where(inside & (o > 0), profile * depth, shade)
    map_y[...] = out
    return shade


def darken(face: np.ndarray, shade: np.ndarray) -> None:
    """Darken uint8 pixels in place by SHADE × ``shade`` (the mouth's inside)."""
    factor = 1 - SHADE * shade[..., None]
    face[...] = np.clip(np.rint(face.astype(np.float32) * factor), 0, 255).astype(np.uint8)

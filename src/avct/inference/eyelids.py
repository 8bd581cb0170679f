"""Closing the photo's eyes by a given amount: a warp of the upper lids, composed into the sharp output's
sampling map (:mod:`avct.inference.sharp`), as :mod:`avct.inference.mouth_opening` opens the lips.

Why a geometric warp: the renderer's keypoints carry the head, not the lids, so no weights blink by
themselves; and a lid drawn by the 256² renderer would be blurred. Moving the photo's own upper lid down
over the eye keeps its lashes and skin at the photo's resolution.

Per column x of an eye (from dlib's six eye points of the photo; y grows downwards), with the closure
``c`` (0 open, 1 shut) and the gap between the lids ``g(x)``, the upper lid comes down by ``d = c·g(x)``::

    where the frame shows (y_in)      reads the photo at (y_out)
    fold top (below the brow)         fold top                 (nothing above moves)
    upper lid + d                     upper lid                (the lid and its lashes come down)
    below that, to the lower lid      itself                   (the part of the eye still uncovered)

so the lid's skin between the fold and the lashes stretches over the eye, like the real lid, and the
eye below it is covered, not squeezed. At the corners the lids meet (g = 0) and nothing moves; outside
the eye's columns and above the fold the map is the identity exactly. The fold top stays below the
brow (at most FOLD eye-widths above the lid, and never above BROW_SHARE of the way to the brow), so
brows and the rims of glasses do not move.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face.landmark_groups import EYES

FOLD = 0.18        # the lid skin that slides down starts this many eye widths above the lid, at most ...
BROW_SHARE = 0.5   # ... and this share of the way from the lid up to the brow
LASHES = 0.07      # the lash line, this many eye widths above the lid's edge, moves down unstretched
OVERLAP = 0.05     # shut, the lash line reaches this many eye widths below dlib's lower-lid points (which sit
                   # on the lid's inner edge: without it a sliver of the eye shows under a closed lid)
SMOOTH = 0.12      # the stretched skin is blurred across this many eye widths (stretching streaks it)
BROWS = ((17, 18, 19, 20, 21), (22, 23, 24, 25, 26))  # dlib's brow points above EYES[0], EYES[1]


@dataclass(frozen=True)
class EyeShape:
    """One eye, in the pixels of the image the warp samples: its lids as parabolas y = a·x² + b·x + c
    through dlib's points (four points a lid: a polyline would show its corners on a closed lid)."""

    left: float            # corner x, image left
    right: float           # corner x, image right
    upper: np.ndarray      # (3,) upper lid's parabola coefficients
    lower: np.ndarray      # (3,) lower lid's
    brow: np.ndarray       # (5, 2) the brow above it, by x

    @property
    def width(self) -> float:
        return self.right - self.left

    def lids(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(upper, lower) lid heights at columns ``x``; the lower never above the upper."""
        upper = np.polyval(self.upper, x).astype(np.float32)
        return upper, np.maximum(np.polyval(self.lower, x).astype(np.float32), upper)

    def zone(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the sampled pixels a closing can change."""
        x = np.linspace(self.left, self.right, 9)
        upper, lower = self.lids(x)
        return (self.left, float(upper.min()) - FOLD * max(self.width, 1.0), self.right, float(lower.max()))


def eye_shapes(landmarks: np.ndarray) -> tuple[EyeShape, EyeShape] | None:
    """Both eyes of (68, 2) landmarks, or None where an eye has no width (a degenerate detection)."""
    pts = np.asarray(landmarks, np.float64)
    eyes = []
    for (p1, p2, p3, p4, p5, p6), brow in zip(EYES, BROWS):
        left, right = sorted((pts[p1, 0], pts[p4, 0]))
        if not right - left > 1:
            return None
        upper = np.polyfit(pts[[p1, p2, p3, p4], 0], pts[[p1, p2, p3, p4], 1], 2)
        lower = np.polyfit(pts[[p1, p6, p5, p4], 0], pts[[p1, p6, p5, p4], 1], 2)
        order = np.argsort(pts[list(brow), 0])
        eyes.append(EyeShape(float(left), float(right), upper, lower, pts[list(brow)][order]))
    return eyes[0], eyes[1]


def close_eye(map_x: np.ndarray, map_y: np.ndarray, eye: EyeShape, closure: float) -> np.ndarray | None:
    """Compose the eyelid warp into a sampling map, in place: ``map_y`` (any shape, float32) becomes
    where the frame reads the photo once the eye is closed by ``closure`` (0..1).

    Returns how much each map pixel shows stretched lid skin (0..1, for :func:`smooth_lid`), or None
    when nothing moves."""
    if closure <= 0:
        return None
    x, y = map_x, map_y
    y_upper, y_lower = eye.lids(x)
    y_brow = np.interp(x, eye.brow[:, 0], eye.brow[:, 1]).astype(np.float32)
    inside = (x > eye.left) & (x < eye.right)
    w = np.float32(max(eye.width, 1.0))
    taper = np.clip(1 - ((x - (eye.left + eye.right) / 2) / (w / 2)) ** 2, 0, 1)  # 0 at the corners
    reach = y_lower - y_upper + np.float32(OVERLAP) * w * taper
    d = np.where(inside, np.float32(min(closure, 1.0)) * reach, np.float32(0))
    fold = np.maximum(np.minimum(np.float32(FOLD) * w, BROW_SHARE * (y_upper - y_brow)), np.float32(LASHES * 2) * w)
    top, lashes = y_upper - fold, y_upper - np.float32(LASHES) * w
    moved = d > 0
    skin = moved & (y >= top) & (y < lashes + d)         # the skin above the lashes, stretched down by d
    lash = moved & (y >= lashes + d) & (y < y_upper + d)  # the lash line, moved down by d
    stretched = top + (y - top) * (lashes - top) / np.maximum(lashes + d - top, np.float32(1e-3))
    out = np.where(skin, stretched, np.where(lash, y - d, y))
    map_y[...] = out
    return np.where(skin, np.clip(d / np.maximum(lashes - top, 1), 0, 1), np.float32(0))


def smooth_lid(face: np.ndarray, weight: np.ndarray, eye_width: float) -> None:
    """Blur uint8 pixels across (horizontally) in place, by ``weight``: stretching the lid's skin down
    turns its little horizontal detail into vertical streaks, which a real lid does not show."""
    k = max(3, int(SMOOTH * eye_width) | 1)
    blurred = cv2.blur(face, (k, 1), borderType=cv2.BORDER_REPLICATE).astype(np.float32)
    a = face.astype(np.float32)
    face[...] = np.clip(np.rint(a + weight[..., None] * (blurred - a)), 0, 255).astype(np.uint8)

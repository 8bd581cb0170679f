"""Sharp output: the photo itself, warped at its own resolution by the renderer's motion field.

The renderer draws a 256² face through a small bottleneck, so its pictures are blurry. But it also
computes *where every output pixel comes from* (the dense motion field, 64×64) and *where the source
cannot be seen* (the occlusion map). This module applies that field to the original photo at its own
resolution and uses the renderer's picture only where the occlusion map says the photo has nothing to
show (the inside of an opening mouth, newly exposed background):

    displacement = deformation − identity                          (B, 64, 64, 2), crop-normalised
    grid         = identity(h, w) + bicubic_upsample(gauss_σ(displacement))  (B, h, w, 2), σ: FIELD_SMOOTHING
    warped       = grid_sample(photo region around the crop, grid)  sharp, native resolution
    ρ            = smoothstep((hi − occlusion) / (hi − lo))         renderer weight, 0 where visible
    face         = ρ · upsample(rendered) + (1 − ρ) · warped
    frame        = photo with the crop replaced by feather · face + (1 − feather) · photo

Where :mod:`avct.inference.mouth_opening` opens the lips (weights with a lip-aperture network), the
renderer's picture is not needed, and only its dense motion runs (ρ = 0; ``shows_picture``, ``--fill``).
The eyes blink by :mod:`avct.inference.eyelids`, with any weights: both warps are composed into the same
sampling map, so the face is read from the photo once a frame.

The displacement (not the field) is upsampled, so zero motion is the photo exactly; the warp samples a
region larger than the crop, so motion near the crop's edges pulls in real photo pixels rather than
smearing the border. The renderer still runs at 256², whatever the photo's size; the work here is per
frame, on the CPU, at the output's resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np
import torch

from ..models.blocks import make_coordinate_grid
from .eyelids import EyeShape, close_eye, eye_shapes, smooth_lid
from .mouth_opening import MouthShape, darken, open_mouth
from .options import GenerateOptions

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right/bottom exclusive

# Renderer weight from the occlusion map: fully the photo above OCCLUSION_VISIBLE, fully the renderer
# below OCCLUSION_HIDDEN, a smooth blend between (no visible edge between warped and rendered parts).
OCCLUSION_VISIBLE = 0.95
OCCLUSION_HIDDEN = 0.35
FEATHER = 0.08          # paste-back transition, fraction of the crop's shorter side
SOURCE_MARGIN = 0.25    # photo around the crop the warp may pull from, fraction of the crop's side
# Sub-pixel shifts: bilinear averages neighbours (visibly softer, ~0.9 of the photo's sharpness on a real
# clip), bicubic keeps the detail (~1.0). The photo region is upsampled bicubically once per video by
# FINE (odd: pixel centres land on samples, so zero motion stays the photo exactly), and each frame reads
# it nearest-neighbour: bicubic values at positions rounded to 1/FINE px (at most 1/6 px off; the field
# itself moves ~3 px and wobbles ~0.8 px from frame to frame). On a 400² crop of a real photo under a
# smooth random field: 0.43 vs 2.1 ms a frame for a bicubic remap, Laplacian variance ratio to the photo
# 1.01 vs 0.945, 47 dB from the bicubic remap's frames.
FINE = 3
# The renderer's field moves the head by its keypoints and the background not at all, and switches
# between the two within a cell or two of its 64² grid. At the photo's resolution that switch tears
# whatever lies on it: at a head turn, a strand of hair came loose from the head (retalking_face5, 4.8 s,
# the README's contact sheet). The displacement is smoothed on the grid (a Gaussian of this sigma, in
# grid cells) before it is upsampled: the hair then bends with the head instead of tearing, and the
# background right beside the head moves a little with it. A step in the field becomes a ramp whose
# steepest slope is 1/(σ√(2π)) = 0.13 of the step per cell.
FIELD_SMOOTHING = 3.0


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def feather_mask(h: int, w: int, soft_edges: tuple[bool, bool, bool, bool], width: float) -> np.ndarray:
    """(h, w) weight of the animated crop: 1 inside, easing to 0 over ``width`` px at the edges that
    have photo beyond them (``soft_edges`` = left, top, right, bottom); edges on the photo's border stay 1."""
    def ramp(n: int, soft_lo: bool, soft_hi: bool) -> np.ndarray:
        d = np.arange(n, dtype=np.float32) + 0.5
        r = np.ones(n, np.float32)
        if soft_lo:
            r = np.minimum(r, d / width)
        if soft_hi:
            r = np.minimum(r, (n - d) / width)
        return smoothstep(r)

    left, top, right, bottom = soft_edges
    return ramp(h, top, bottom)[:, None] * ramp(w, left, right)[None, :]


@dataclass
class Canvas:
    """The picture the animated face is drawn into, prepared once per video.

    ``picture`` is what a frame shows when nothing moves: the (size-capped) photo, or for crop-only
    output just the crop. The face crop sits at ``box`` inside it; the warp samples ``source``, the part
    of the picture around the crop at ``region`` (so motion near the crop's edges finds real pixels).
    """

    picture: np.ndarray            # (H, W, 3) uint8
    box: Box                       # the face crop inside ``picture``
    region: Box                    # what ``source`` covers, inside ``picture`` coordinates
    source: np.ndarray             # (hR, wR, 3) uint8
    feather: np.ndarray            # (h, w) float32 paste-back weight of the animated crop
    crop_only: bool                # frames are just the box
    mouth: MouthShape | None = None  # the face's mouth in ``source`` pixels (for the mouth opening)
    eyes: tuple[EyeShape, EyeShape] | None = None  # its eyes in ``source`` pixels (for blinks)

    @property
    def crop_size(self) -> tuple[int, int]:
        l, t, r, b = self.box
        return b - t, r - l


def _even(n: int) -> int:
    return max(2, n - n % 2)


def output_scale(photo_shape: tuple[int, ...], crop_box: Box, options: GenerateOptions) -> tuple[float, float]:
    """(sx, sy): how the photo is resized for the output. Full photo: shrink to ``max_size`` (long side),
    never enlarge. Crop only: the crop becomes ``size``² (256² by default) or keeps its own size (native)."""
    h, w = photo_shape[:2]
    if not options.crop_only:
        s = min(1.0, options.max_size / max(h, w))
        return s, s
    l, t, r, b = crop_box
    if options.size == "native":
        return _even(r - l) / (r - l), _even(b - t) / (b - t)
    side = options.size or 256
    return side / (r - l), side / (b - t)


def make_canvas(photo: np.ndarray, crop_box: Box | None, options: GenerateOptions,
                landmarks: np.ndarray | None = None, *, mouth: bool = True) -> Canvas:
    """The output picture for ``photo`` (H, W, 3) uint8 whose face crop is ``crop_box`` (None: the whole
    photo is the crop, as ``--no-crop``); ``landmarks``: the face's (68, 2) landmarks in photo pixels,
    for the eyes' blinks (:mod:`avct.inference.eyelids`) and, with ``mouth``, the mouth's opening
    (:mod:`avct.inference.mouth_opening`); None: neither moves by itself."""
    h, w = photo.shape[:2]
    crop_box = crop_box or (0, 0, w, h)
    sx, sy = output_scale(photo.shape, crop_box, options)
    l, t, r, b = crop_box
    if options.crop_only:
        box_w, box_h = round((r - l) * sx), round((b - t) * sy)
        # Resize only the crop plus a margin (a 6000 px photo is never resized whole for a 256² crop).
        m = round(SOURCE_MARGIN * max(r - l, b - t))
        rl, rt, rr, rb = max(0, l - m), max(0, t - m), min(w, r + m), min(h, b + m)
        region_img = cv2.resize(photo[rt:rb, rl:rr], (round((rr - rl) * sx), round((rb - rt) * sy)),
                                interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_CUBIC)
        bl, bt = round((l - rl) * sx), round((t - rt) * sy)
        box = (bl, bt, bl + box_w, bt + box_h)
        region_img = _fit(region_img, box)
        picture = np.ascontiguousarray(region_img[box[1]:box[3], box[0]:box[2]])
        region = (-box[0], -box[1], region_img.shape[1] - box[0], region_img.shape[0] - box[1])
        feather = np.ones((box_h, box_w), np.float32)
        source_img = region_img
        box = (0, 0, box_w, box_h)
        # photo pixel -> source pixel (pixel centres; _fit pads only right and bottom, as bl, bt >= 0)
        to_source = ((rr - rl) * sx, rl, (rb - rt) * sy, rt, rr - rl, rb - rt)
    else:
        size = (max(1, round(w * sx)), max(1, round(h * sy)))
        picture = photo if size == (w, h) else cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        ph, pw = picture.shape[:2]
        bl, bt = round(l * sx), round(t * sy)   # position, then size: a square crop stays square
        box = (bl, bt, min(pw, bl + round((r - l) * sx)), min(ph, bt + round((b - t) * sy)))
        bl, bt, br, bb = box
        m = round(SOURCE_MARGIN * max(br - bl, bb - bt))
        region = (max(0, bl - m), max(0, bt - m), min(pw, br + m), min(ph, bb + m))
        source_img = picture[region[1]:region[3], region[0]:region[2]]
        soft = (bl > 0, bt > 0, br < pw, bb < ph)
        feather = feather_mask(bb - bt, br - bl, soft, max(2.0, FEATHER * min(br - bl, bb - bt)))
        to_source = (pw, region[0] / (pw / w), ph, region[1] / (ph / h), w, h)
    mouth_shape, eyes = None, None
    if landmarks is not None:
        out_w, origin_x, out_h, origin_y, in_w, in_h = to_source
        points = np.asarray(landmarks, np.float64)
        in_source = np.stack([(points[:, 0] - origin_x + 0.5) * out_w / in_w - 0.5,
                              (points[:, 1] - origin_y + 0.5) * out_h / in_h - 0.5], 1)
        mouth_shape = MouthShape.from_landmarks(in_source) if mouth else None
        eyes = eye_shapes(in_source)
    return Canvas(np.ascontiguousarray(picture), box, region, np.ascontiguousarray(source_img), feather,
                  options.crop_only, mouth_shape, eyes)


def _fit(region_img: np.ndarray, box: Box) -> np.ndarray:
    """Pad (edge) a resized region so that the rounded box lies inside it."""
    l, t, r, b = box
    h, w = region_img.shape[:2]
    pad = ((max(0, -t), max(0, b - h)), (max(0, -l), max(0, r - w)), (0, 0))
    return np.pad(region_img, pad, mode="edge") if any(p for pair in pad[:2] for p in pair) else region_img


def shows_picture(options: GenerateOptions, canvas: Canvas) -> bool:
    """Whether the renderer's picture is drawn where the occlusion map says the photo cannot show a part
    (``options.fill``; ``auto``: unless the mouth warp opens the lips). What the warped photo cannot show
    is chiefly the inside of an opening mouth; where :mod:`avct.inference.mouth_opening` opens the lips it
    shades that inside itself, and the renderer's picture changes little else (bundled weights, a real
    clip: 0.4-1.5 grey levels on average, under 0.3 % of pixels by more than 8) while costing ~85 % of
    the renderer's work. Official checkpoints (no lip-aperture network) draw the mouth with the renderer."""
    if options.fill == "auto":
        return canvas.mouth is None
    return options.fill == "renderer"


class SharpCompositor:
    """Turns the renderer's outputs for a batch of frames into full-resolution uint8 frames.

    Per frame on the CPU with OpenCV (``remap``/``resize`` on uint8 images are SIMD and threaded, ~10×
    torch's CPU grid_sample), whatever device rendered: only the 64² field, the occlusion map and the
    256² picture come back from it."""

    def __init__(self, canvas: Canvas):
        self.canvas = canvas
        h, w = canvas.crop_size
        l, t, _, _ = canvas.box
        rl, rt, _, _ = canvas.region
        # Pixel maps into the source region: crop pixel (i, j) reads region pixel (i + t - rt, j + l - rl)
        # when nothing moves; crop-normalised displacements are w/2 (h/2) pixels per unit.
        self.base_x = np.broadcast_to(np.arange(w, dtype=np.float32) + (l - rl), (h, w))
        self.base_y = np.broadcast_to((np.arange(h, dtype=np.float32) + (t - rt))[:, None], (h, w))
        self.half = np.float32(w / 2), np.float32(h / 2)
        self.feather = canvas.feather[..., None]                          # (h, w, 1)
        self.feather_strips = _strips(canvas.feather)
        self.crop_photo = canvas.picture[canvas.box[1]:canvas.box[3], l:canvas.box[2]]
        self.fine_source = cv2.resize(canvas.source, None, fx=FINE, fy=FINE, interpolation=cv2.INTER_CUBIC)
        self.identity64: np.ndarray | None = None

    def compose(self, rendered: torch.Tensor | None, deformation: torch.Tensor,
                occlusion: torch.Tensor | None, openings: np.ndarray | None = None,
                closures: np.ndarray | None = None) -> np.ndarray:
        """rendered (B, 3, 256, 256) in [0, 1] (None with occlusion None: the warped photo alone),
        deformation (B, h', w', 2), occlusion (B, 1, h', w') or None,
        openings (B,) mouth openings in source pixels or None, closures (B,) eye closures 0..1 or None
        -> (B, H, W, 3) uint8 frames."""
        return np.stack(list(self.frames(rendered, deformation, occlusion, openings, closures)))

    def frames(self, rendered: torch.Tensor | None, deformation: torch.Tensor,
               occlusion: torch.Tensor | None, openings: np.ndarray | None = None,
               closures: np.ndarray | None = None) -> Iterator[np.ndarray]:
        deformation = deformation.float().cpu().numpy()
        gh, gw = deformation.shape[1:3]
        if self.identity64 is None or self.identity64.shape[:2] != (gh, gw):
            self.identity64 = make_coordinate_grid(gh, gw).numpy()
        occ = None if occlusion is None else occlusion.float().cpu().numpy()[:, 0]
        drawn = None
        for i in range(len(deformation)):
            opening = 0.0 if openings is None else float(openings[i])
            closure = 0.0 if closures is None else float(closures[i])
            if occ is not None and float(occ[i].min()) < OCCLUSION_VISIBLE:
                if drawn is None:
                    drawn = (rendered.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                yield self.frame(deformation[i], occ[i], drawn[i], opening, closure)
            else:
                yield self.frame(deformation[i], None, None, opening, closure)

    def frame(self, deformation: np.ndarray, occlusion: np.ndarray | None, drawn: np.ndarray | None,
              opening: float = 0.0, closure: float = 0.0) -> np.ndarray:
        """One frame: deformation (h', w', 2), occlusion (h', w') or None, drawn (256, 256, 3) uint8,
        ``opening``: the mouth opening in source pixels (:mod:`avct.inference.mouth_opening`),
        ``closure``: how far the eyes are closed, 0..1 (:mod:`avct.inference.eyelids`)."""
        h, w = self.canvas.crop_size
        shift = deformation - self.identity64
        displacement = upsampled_displacement(shift, (w, h))
        map_x = self.base_x + displacement[..., 0] * self.half[0]
        map_y = self.base_y + displacement[..., 1] * self.half[1]
        shade, lids = None, []
        if opening or closure:  # the frame's largest displacement bounds where a warp's zone is read from
            margin = float(np.abs(shift).max()) * max(self.half) + 2
        if opening and self.canvas.mouth is not None:
            part = self._zone_rect(self.canvas.mouth.zone(opening), margin)
            if part is not None:
                shade = part, open_mouth(map_x[part], map_y[part], self.canvas.mouth, opening)
        if closure > 0 and self.canvas.eyes is not None:
            for eye in self.canvas.eyes:
                part = self._zone_rect(eye.zone(), margin)
                if part is not None:
                    lids.append((part, close_eye(map_x[part], map_y[part], eye, closure), eye.width))
        face = cv2.remap(self.fine_source, _to_fine(map_x), _to_fine(map_y), cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_REPLICATE)
        if shade is not None and shade[1] is not None:
            darken(face[shade[0]], shade[1])
        for part, weight, width in lids:
            if weight is not None:
                smooth_lid(face[part], weight, width)
        if occlusion is not None:
            rho = smoothstep((OCCLUSION_VISIBLE - cv2.resize(occlusion, (w, h), interpolation=cv2.INTER_LINEAR))
                             / (OCCLUSION_VISIBLE - OCCLUSION_HIDDEN))
            rows, cols = np.flatnonzero(rho.any(axis=1)), np.flatnonzero(rho.any(axis=0))
            if len(rows):  # blend only the rectangle where the renderer has a say
                part = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
                drawn = cv2.resize(drawn, (w, h), interpolation=cv2.INTER_LINEAR)[part]
                face[part] = _lerp(face[part], drawn, rho[part][..., None])
        for strip in self.feather_strips:  # paste-back transition, only where the feather is below 1
            face[strip] = _lerp(self.crop_photo[strip], face[strip], self.feather[strip])
        if self.canvas.crop_only:
            return face
        l, t, r, b = self.canvas.box
        out = self.canvas.picture.copy()
        out[t:b, l:r] = face
        return out


    def _zone_rect(self, zone: tuple[float, float, float, float], margin: float) -> tuple[slice, slice] | None:
        """The crop pixels whose sampling point may fall in ``zone`` (source pixels), given the largest
        displacement ``margin`` (px) of the frame's motion field."""
        h, w = self.canvas.crop_size
        dx, dy = self.base_x[0, 0], self.base_y[0, 0]
        x0, x1 = max(0, int(zone[0] - dx - margin)), min(w, int(zone[2] - dx + margin) + 1)
        y0, y1 = max(0, int(zone[1] - dy - margin)), min(h, int(zone[3] - dy + margin) + 1)
        return np.s_[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else None


def upsampled_displacement(shift: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h', w', 2) displacement on the renderer's grid -> (h, w, 2) at the crop's ``size`` = (w, h):
    smoothed by FIELD_SMOOTHING grid cells, then upsampled bicubically (zero stays exactly zero)."""
    if FIELD_SMOOTHING > 0:
        shift = cv2.GaussianBlur(np.ascontiguousarray(shift, np.float32), (0, 0), FIELD_SMOOTHING,
                                 borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(shift, size, interpolation=cv2.INTER_CUBIC)


def _to_fine(source_map: np.ndarray) -> np.ndarray:
    """Source pixel coordinates -> coordinates in the FINE× upsampled source, in place (pixel centres:
    x -> (x + 0.5)·FINE − 0.5)."""
    source_map *= FINE
    source_map += (FINE - 1) / 2
    return source_map


def _lerp(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """a + weight · (b − a) on uint8 images, rounded back to uint8."""
    a = a.astype(np.float32)
    return np.clip(np.rint(a + weight * (b.astype(np.float32) - a)), 0, 255).astype(np.uint8)


def _strips(feather: np.ndarray) -> list[tuple[slice, slice]]:
    """Non-overlapping rectangles that cover every pixel whose feather weight is below 1 (the feather is
    an outer product of a row ramp and a column ramp, each 1 in its middle)."""
    def solid(profile: np.ndarray) -> tuple[int, int]:
        ones = np.flatnonzero(profile >= 1)
        return (int(ones[0]), int(ones[-1]) + 1) if len(ones) else (len(profile), len(profile))

    top, bottom = solid(feather.max(axis=1))
    left, right = solid(feather.max(axis=0))
    strips = [np.s_[:top, :], np.s_[bottom:, :], np.s_[top:bottom, :left], np.s_[top:bottom, right:]]
    return [s for s in strips if feather[s].size]


def compose_frames(compositor: SharpCompositor, outputs: Iterator[dict], openings: np.ndarray | None = None,
                   closures: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Renderer output dicts (prediction, deformation, occlusion_map; or the dense motion alone, without a
    prediction) -> uint8 frames, one at a time;
    ``openings``: the mouth opening of every frame, source pixels (None: the mouth is not opened);
    ``closures``: the eyes' closure of every frame, 0..1 (None: they do not blink)."""
    done = 0
    for out in outputs:
        n = len(out["deformation"])
        opening = None if openings is None else openings[done:done + n]
        closure = None if closures is None else closures[done:done + n]
        rendered = out.get("prediction")  # None: the dense motion alone (no picture to blend, see shows_picture)
        occlusion = None if rendered is None else out.get("occlusion_map")
        yield from compositor.frames(rendered, out["deformation"], occlusion, opening, closure)
        done += n

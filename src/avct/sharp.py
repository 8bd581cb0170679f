"""Sharp output: the photo itself, warped at its own resolution by the renderer's motion field.

The renderer draws a 256² face through a small bottleneck, so its pictures are blurry. But it also
computes *where every output pixel comes from* (the dense motion field, 64×64) and *where the source
cannot be seen* (the occlusion map). This module applies that field to the original photo at its own
resolution and uses the renderer's picture only where the occlusion map says the photo has nothing to
show (the inside of an opening mouth, newly exposed background):

    displacement = deformation − identity                          (B, 64, 64, 2), crop-normalised
    grid         = identity(h, w) + bicubic_upsample(displacement)  (B, h, w, 2)
    warped       = grid_sample(photo region around the crop, grid)  sharp, native resolution
    ρ            = smoothstep((hi − occlusion) / (hi − lo))         renderer weight, 0 where visible
    face         = ρ · upsample(rendered) + (1 − ρ) · warped
    frame        = photo with the crop replaced by feather · face + (1 − feather) · photo

The displacement (not the field) is upsampled, so zero motion is the photo exactly; the warp samples a
region larger than the crop, so motion near the crop's edges pulls in real photo pixels rather than
smearing the border. Everything here is fp32 geometry on tensors of at most a few megapixels per step:
the renderer still runs at 256², whatever the photo's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .models.blocks import make_coordinate_grid
from .options import GenerateOptions

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right/bottom exclusive

# Renderer weight from the occlusion map: fully the photo above OCCLUSION_VISIBLE, fully the renderer
# below OCCLUSION_HIDDEN, a smooth blend between (no visible edge between warped and rendered parts).
OCCLUSION_VISIBLE = 0.95
OCCLUSION_HIDDEN = 0.35
FEATHER = 0.08          # paste-back transition, fraction of the crop's shorter side
SOURCE_MARGIN = 0.25    # photo around the crop the warp may pull from, fraction of the crop's side
MAX_PIXELS_PER_STEP = 4_000_000  # frames composed together: bounds memory for large crops
WARP_MODE = "bicubic"  # sub-pixel shifts: bilinear averages neighbours (visibly softer), bicubic keeps detail


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def pixel_identity(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h, w, 2) normalised (x, y) of pixel centres, as grid_sample(align_corners=False) reads them:
    sampling an image with this grid returns the image unchanged."""
    x = (2 * torch.arange(w, dtype=torch.float32, device=device) + 1) / w - 1
    y = (2 * torch.arange(h, dtype=torch.float32, device=device) + 1) / h - 1
    return torch.stack([x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)], dim=2)


def feather_mask(h: int, w: int, soft_edges: tuple[bool, bool, bool, bool], width: float) -> torch.Tensor:
    """(h, w) weight of the animated crop: 1 inside, easing to 0 over ``width`` px at the edges that
    have photo beyond them (``soft_edges`` = left, top, right, bottom); edges on the photo's border stay 1."""
    def ramp(n: int, soft_lo: bool, soft_hi: bool) -> torch.Tensor:
        d = torch.arange(n, dtype=torch.float32) + 0.5
        r = torch.ones(n)
        if soft_lo:
            r = torch.minimum(r, d / width)
        if soft_hi:
            r = torch.minimum(r, (n - d) / width)
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
    source: torch.Tensor           # (1, 3, hR, wR) float32 in [0, 1]
    feather: torch.Tensor          # (h, w) paste-back weight of the animated crop
    crop_only: bool                # frames are just the box

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


def make_canvas(photo: np.ndarray, crop_box: Box | None, options: GenerateOptions) -> Canvas:
    """The output picture for ``photo`` (H, W, 3) uint8 whose face crop is ``crop_box`` (None: the whole
    photo is the crop, as ``--no-crop``)."""
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
        feather = torch.ones(box_h, box_w)
        source_img = region_img
        box = (0, 0, box_w, box_h)
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
    source = torch.from_numpy(source_img.copy()).permute(2, 0, 1)[None].float().div_(255)
    return Canvas(np.ascontiguousarray(picture), box, region, source, feather, options.crop_only)


def _fit(region_img: np.ndarray, box: Box) -> np.ndarray:
    """Pad (edge) a resized region so that the rounded box lies inside it."""
    l, t, r, b = box
    h, w = region_img.shape[:2]
    pad = ((max(0, -t), max(0, b - h)), (max(0, -l), max(0, r - w)), (0, 0))
    return np.pad(region_img, pad, mode="edge") if any(p for pair in pad[:2] for p in pair) else region_img


class SharpCompositor:
    """Turns the renderer's outputs for a batch of frames into full-resolution uint8 frames."""

    def __init__(self, canvas: Canvas):
        self.canvas = canvas
        h, w = canvas.crop_size
        l, t, r, b = canvas.box
        rl, rt, rr, rb = canvas.region
        wr, hr = rr - rl, rb - rt
        self.identity = pixel_identity(h, w)                     # (h, w, 2) crop-normalised
        # crop-normalised -> region-normalised coordinates (align_corners=False, pixel units in between)
        self.scale = torch.tensor([w / wr, h / hr])
        self.offset = torch.tensor([(2 * (l - rl) + w) / wr - 1, (2 * (t - rt) + h) / hr - 1])
        self.picture = torch.from_numpy(canvas.picture.copy())    # (H, W, 3) uint8, shared by all frames
        self.feather = canvas.feather[None, None]                 # (1, 1, h, w)
        self.crop_photo = self.picture[t:b, l:r].permute(2, 0, 1)[None].float().div(255)

    def compose(self, rendered: torch.Tensor, deformation: torch.Tensor,
                occlusion: torch.Tensor | None) -> np.ndarray:
        """rendered (B, 3, 256, 256) in [0, 1], deformation (B, h', w', 2), occlusion (B, 1, h', w') or None
        -> (B, H, W, 3) uint8 frames."""
        h, w = self.canvas.crop_size
        step = max(1, MAX_PIXELS_PER_STEP // max(1, h * w))
        return np.concatenate([self._compose(rendered[i:i + step], deformation[i:i + step],
                                             None if occlusion is None else occlusion[i:i + step])
                               for i in range(0, len(rendered), step)])

    def _compose(self, rendered, deformation, occlusion) -> np.ndarray:
        h, w = self.canvas.crop_size
        b, gh, gw, _ = deformation.shape
        rendered, deformation = rendered.float().cpu(), deformation.float().cpu()
        displacement = deformation - make_coordinate_grid(gh, gw)          # (B, gh, gw, 2)
        displacement = F.interpolate(displacement.permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                                     align_corners=False).permute(0, 2, 3, 1)
        grid = (self.identity + displacement) * self.scale + self.offset   # region-normalised (B, h, w, 2)
        warped = F.grid_sample(self.canvas.source.expand(b, -1, -1, -1), grid, mode=WARP_MODE,
                               padding_mode="border", align_corners=False)
        face = warped
        if occlusion is not None:
            occlusion = F.interpolate(occlusion.float().cpu(), size=(h, w), mode="bilinear", align_corners=False)
            rho = smoothstep((OCCLUSION_VISIBLE - occlusion) / (OCCLUSION_VISIBLE - OCCLUSION_HIDDEN))
            if bool((rho > 0).any()):
                drawn = F.interpolate(rendered, size=(h, w), mode="bicubic", align_corners=False).clamp_(0, 1)
                face = torch.lerp(warped, drawn, rho)
        face = torch.lerp(self.crop_photo, face, self.feather)
        crop = face.mul_(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (B, h, w, 3)
        if self.canvas.crop_only:
            return crop.numpy()
        l, t, r, bt = self.canvas.box
        frames = self.picture[None].repeat(b, 1, 1, 1)
        frames[:, t:bt, l:r] = crop
        return frames.numpy()


def compose_frames(compositor: SharpCompositor, outputs: Iterator[dict]) -> Iterator[np.ndarray]:
    """Renderer output dicts (prediction, deformation, occlusion_map) -> uint8 frames, one at a time."""
    for out in outputs:
        yield from compositor.compose(out["prediction"], out["deformation"], out.get("occlusion_map"))

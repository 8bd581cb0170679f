"""Occlusion-aware renderer (FOMM): a dense motion field from keypoints warps the source features.

Dense motion: each keypoint k defines a local affine map from driving to source coordinates,
``T_k(z) = kp_src_k + J_src_k · J_drv_k⁻¹ · (z − kp_drv_k)``; an hourglass predicts soft masks that
blend these (plus the identity for the background) into one sampling grid, and an occlusion map.
The source encoding does not depend on the driving keypoints, so it is computed once per video.

Mixed precision: the convolutions run in the weights' dtype (e.g. bf16) but the geometry (keypoint
Gaussians, sampling grids, masks, occlusion, warping) always runs in fp32 — a bf16 grid is off by up to
half a pixel at 256², which alone costs ~12 dB of PSNR. In fp32 every cast below is a no-op.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DenseMotionConfig, GeneratorConfig
from .blocks import (AntiAliasInterpolation2d, DerivedWeightCache, DownBlock2d, FoldedConvCache, Hourglass,
                     ResBlock2d, SameBlock2d, UpBlock2d, conv_on_packed_phases, inference, is_same_odd_conv,
                     kp2gaussian, make_coordinate_grid, memory_format_of, packed_phase_kernels)
from .keypoints import Keypoints


class DenseMotionNetwork(nn.Module):
    def __init__(self, cfg: DenseMotionConfig, num_kp: int, num_channels: int, estimate_occlusion_map: bool):
        super().__init__()
        self.cfg = cfg
        self.num_kp = num_kp
        self.hourglass = Hourglass(cfg.block_expansion, (num_kp + 1) * (num_channels + 1), cfg.num_blocks,
                                   cfg.max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, 7, padding=3)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, 7, padding=3)
                          if estimate_occlusion_map else None)
        self.down = AntiAliasInterpolation2d(num_channels, cfg.scale_factor)
        self.merged_heads = DerivedWeightCache()

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mask logits (B, K+1, h, w) and occlusion logits (B, 1, h, w) or None. At inference both 7×7
        heads run as one conv (oneDNN takes as long for 12 output channels as for 1 or 11)."""
        if self.occlusion is None:
            return self.mask(features), None
        if not inference(self):
            return self.mask(features), self.occlusion(features)
        m, o = self.mask, self.occlusion
        weight, bias = self.merged_heads.get((m.weight, m.bias, o.weight, o.bias), lambda: (
            torch.cat([m.weight, o.weight]).contiguous(memory_format=memory_format_of(m.weight)),
            torch.cat([m.bias, o.bias])))
        logits = F.conv2d(features, weight, bias, padding=m.padding)
        return logits[:, :-1], logits[:, -1:]

    def sparse_motions(self, h: int, w: int, kp_source: Keypoints, kp_driving: Keypoints) -> torch.Tensor:
        """(B, K+1, h, w, 2): identity (background) + one driving→source map per keypoint."""
        b, k, _ = kp_driving.value.shape
        identity = make_coordinate_grid(h, w, kp_source.value.dtype, kp_source.value.device).view(1, 1, h, w, 2)
        grid = identity - kp_driving.value.view(b, k, 1, 1, 2)                     # (B, K, h, w, 2)
        if kp_driving.jacobian is not None:
            # 2×2 inverses in fp32 (no low-precision inverse kernels; and they are cheap)
            jac = torch.matmul(kp_source.jacobian.float(), torch.inverse(kp_driving.jacobian.float()))
            grid = torch.matmul(jac.to(grid.dtype)[:, :, None, None], grid.unsqueeze(-1)).squeeze(-1)
        driving_to_source = grid + kp_source.value.view(b, k, 1, 1, 2)
        return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def forward(self, source_down: torch.Tensor, kp_source: Keypoints, kp_driving: Keypoints) -> dict:
        """source_down: the source already anti-aliased to the motion resolution (B, 3, h, w)."""
        kp_source, kp_driving, source_down = kp_source.to(torch.float32), kp_driving.to(torch.float32), source_down.float()
        b, c, h, w = source_down.shape
        k1 = self.num_kp + 1
        gaussians = (kp2gaussian(kp_driving.value, h, w, self.cfg.kp_variance)
                     - kp2gaussian(kp_source.value, h, w, self.cfg.kp_variance))    # (B, K, h, w)
        heatmaps = torch.cat([gaussians.new_zeros(b, 1, h, w), gaussians], dim=1).unsqueeze(2)
        motions = self.sparse_motions(h, w, kp_source, kp_driving)                 # (B, K+1, h, w, 2)
        repeated = source_down.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(b * k1, h, w, 2), align_corners=False).view(b, k1, c, h, w)
        x = torch.cat([heatmaps, deformed], dim=2).view(b, -1, h, w)               # (B, (K+1)(c+1), h, w)
        features = self.hourglass(x.to(self.mask.weight.dtype, memory_format=memory_format_of(self.mask.weight)))
        mask_logits, occlusion_logits = self.heads(features)
        mask = F.softmax(mask_logits.float(), dim=1)                                # (B, K+1, h, w)
        deformation = (motions.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 1)
        out = {"sparse_deformed": deformed, "mask": mask, "deformation": deformation}
        if occlusion_logits is not None:
            out["occlusion_map"] = torch.sigmoid(occlusion_logits.float())
        return out


@dataclass
class SourceEncoding:
    """Everything of the renderer that depends on the source image only (cache per video)."""

    image: torch.Tensor      # (B, 3, 256, 256)
    features: torch.Tensor   # (B, 256, 64, 64) encoder output, fp32 (what the warp samples)
    image_down: torch.Tensor  # (B, 3, 64, 64) anti-aliased source for the dense motion network

    def expand(self, n: int) -> "SourceEncoding":
        """Broadcast a batch-1 encoding to batch n without copying."""
        return SourceEncoding(*(t.expand(n, *t.shape[1:]) for t in (self.image, self.features, self.image_down)))


def warp(x: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """grid_sample x with a (B, h, w, 2) grid, resizing the grid bilinearly if sizes differ."""
    if deformation.shape[1:3] != x.shape[2:]:
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=x.shape[2:], mode="bilinear")
        deformation = deformation.permute(0, 2, 3, 1)
    return F.grid_sample(x, deformation, align_corners=False)


class OcclusionAwareGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.cfg = cfg
        e, m = cfg.block_expansion, cfg.max_features
        self.dense_motion_network = DenseMotionNetwork(cfg.dense_motion, cfg.num_kp, cfg.num_channels,
                                                       cfg.estimate_occlusion_map)
        self.first = SameBlock2d(cfg.num_channels, e, kernel_size=7, padding=3)
        n = cfg.num_down_blocks
        self.down_blocks = nn.ModuleList(DownBlock2d(min(m, e * 2**i), min(m, e * 2 ** (i + 1))) for i in range(n))
        self.up_blocks = nn.ModuleList(UpBlock2d(min(m, e * 2 ** (n - i)), min(m, e * 2 ** (n - i - 1)))
                                       for i in range(n))
        self.bottleneck = nn.Sequential()
        for i in range(cfg.num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(min(m, e * 2**n)))
        self.final = nn.Conv2d(e, cfg.num_channels, 7, padding=3)
        self.final_folded = FoldedConvCache()

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.final.weight.dtype

    @property
    def memory_format(self) -> torch.memory_format:
        """The weights' layout (channels-last when the pipeline chose it): activations entering the
        convolutions are given the same, or every layer converts them back and forth."""
        return memory_format_of(self.final.weight)

    def encode_source(self, source: torch.Tensor) -> SourceEncoding:
        out = self.first(source.to(self.compute_dtype))
        for block in self.down_blocks:
            out = block(out)
        # fp32 once here: the warp samples in fp32, and converting the expanded batch each time is a copy
        return SourceEncoding(source, out.float(), self.dense_motion_network.down(source.float()))

    def render(self, enc: SourceEncoding, kp_source: Keypoints, kp_driving: Keypoints,
               visualise: bool = False) -> dict:
        """Frames for driving keypoints (B of them) from an encoded source (batch B or 1)."""
        b = kp_driving.value.shape[0]
        if enc.features.shape[0] != b:
            enc = enc.expand(b)
        motion = self.motion(enc, kp_source, kp_driving)
        out = warp(enc.features.float(), motion["deformation"])
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            if occlusion.shape[2:] != out.shape[2:]:
                occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear")
            out = out.mul_(occlusion) if inference(self) else out * occlusion
        out = self.bottleneck(out.to(self.compute_dtype, memory_format=self.memory_format))
        motion["prediction"] = torch.sigmoid(self.decode(out).float())
        if visualise:
            motion["deformed"] = warp(enc.image.float(), motion["deformation"])
        return motion

    def motion(self, enc: SourceEncoding, kp_source: Keypoints, kp_driving: Keypoints) -> dict:
        """The dense motion alone (B driving frames): ``deformation`` (B, 64, 64, 2) and, where the weights
        have one, ``occlusion_map`` (B, 1, 64, 64). What the sharp output needs when it does not show the
        renderer's picture (:mod:`avct.inference.sharp`): a small part of :meth:`render`'s work
        (docs/performance.md, "The dense motion alone")."""
        b = kp_driving.value.shape[0]
        if kp_source.value.shape[0] != b:
            kp_source = Keypoints(kp_source.value.expand(b, -1, -1),
                                  None if kp_source.jacobian is None else kp_source.jacobian.expand(b, -1, -1, -1))
        if enc.image_down.shape[0] != b:
            enc = enc.expand(b)
        return self.dense_motion_network(enc.image_down, kp_source, kp_driving)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Up blocks, then the final conv (logits). At inference the last ×2 block's output stays as four
        packed phase images and the final conv reads them (:func:`conv_on_packed_phases`): the
        full-resolution 64-channel image is never built (what that saves: docs/performance.md)."""
        *ups, last = self.up_blocks or [None]
        for block in ups:
            x = block(x)
        if last is not None and last.folds_upsampling(x) and is_same_odd_conv(self.final):
            kernels, bias = self.final_folded(self.final, None, lambda w, b: (packed_phase_kernels(w), b))
            return conv_on_packed_phases(last.packed(x), kernels, bias)
        return self.final(x if last is None else last(x))

    def forward(self, source: torch.Tensor, kp_source: Keypoints, kp_driving: Keypoints) -> dict:
        return self.render(self.encode_source(source), kp_source, kp_driving, visualise=True)

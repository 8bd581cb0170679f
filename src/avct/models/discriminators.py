"""Discriminators used in training: FOMM's multi-scale patch discriminator and the temporal D_seq (the
lip-sync expert D_sync is in :mod:`avct.models.syncnet`).

- ``MultiScaleDiscriminator`` (FOMM, OFFICIAL.md C.2): per scale 4 DownBlocks (conv 4×4 no padding,
  InstanceNorm except the first, LeakyReLU 0.2, AvgPool 2 except the last), 1×1 conv head → a map of
  patch scores; optional spectral norm and keypoint-heatmap input channels. Keys as FOMM
  (``discs.<scale>.down_blocks.N.conv.weight``) so vox-adv discriminators load.
- ``TemporalDiscriminator`` (paper §3 "Batched Sequential Training"): the same PatchGAN on T frames
  stacked along channels (3T input channels): it judges a whole clip, i.e. temporal consistency.

Discriminators return feature maps too, for feature matching. A GAN step should call a discriminator
once on ``torch.cat([real, fake])`` (``DiscriminatorOutput.split``): one forward per backward keeps DDP happy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import kp2gaussian


# ---- FOMM patch discriminator ----------------------------------------------------------------------
class DiscriminatorBlock(nn.Module):
    """conv k4 (no padding) → [InstanceNorm] → LeakyReLU 0.2 → [AvgPool 2]  (FOMM ``DownBlock2d``)."""

    def __init__(self, in_ch: int, out_ch: int, norm: bool, pool: bool, sn: bool, kernel_size: int = 4):
        super().__init__()
        conv = nn.Conv2d(in_ch, out_ch, kernel_size)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_ch, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        x = F.leaky_relu(x, 0.2)
        return F.avg_pool2d(x, 2) if self.pool else x


class PatchDiscriminator(nn.Module):
    """One scale: (B, C, H, W) → feature maps of the blocks + a (B, 1, h, w) map of patch scores.

    Block i: in = C (+K heatmaps) for i = 0 else min(M, E·2^i), out = min(M, E·2^(i+1))."""

    def __init__(self, num_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = False, use_kp: bool = False, num_kp: int = 10,
                 kp_variance: float = 0.01):
        super().__init__()
        self.use_kp, self.kp_variance = use_kp, kp_variance
        blocks = []
        for i in range(num_blocks):
            in_ch = num_channels + num_kp * use_kp if i == 0 else min(max_features, block_expansion * 2**i)
            blocks.append(DiscriminatorBlock(in_ch, min(max_features, block_expansion * 2 ** (i + 1)),
                                             norm=i != 0, pool=i != num_blocks - 1, sn=sn))
        self.down_blocks = nn.ModuleList(blocks)
        conv = nn.Conv2d(min(max_features, block_expansion * 2**num_blocks), 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv

    def forward(self, x: torch.Tensor, kp_value: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        if self.use_kp:
            if kp_value is None:
                raise ValueError("this discriminator needs keypoints (use_kp)")
            x = torch.cat([x, kp2gaussian(kp_value.float(), *x.shape[2:], self.kp_variance).to(x.dtype)], dim=1)
        features = []
        for block in self.down_blocks:
            x = block(x)
            features.append(x)
        return features, self.conv(x)


@dataclass
class DiscriminatorOutput:
    """Per scale (in the order of ``scales``): the blocks' feature maps and the patch-score map."""

    feature_maps: list[list[torch.Tensor]]
    predictions: list[torch.Tensor]

    def split(self, n: int) -> tuple["DiscriminatorOutput", "DiscriminatorOutput"]:
        """Batch [:n] and [n:] (e.g. real and fake halves of one concatenated call)."""
        head = DiscriminatorOutput([[f[:n] for f in fs] for fs in self.feature_maps], [p[:n] for p in self.predictions])
        tail = DiscriminatorOutput([[f[n:] for f in fs] for fs in self.feature_maps], [p[n:] for p in self.predictions])
        return head, tail


def scale_key(scale: float) -> str:
    """FOMM's ModuleDict key of a scale: 1 → "1", 0.5 → "0-5"."""
    return str(int(scale)) if float(scale).is_integer() else str(scale).replace(".", "-")


class MultiScaleDiscriminator(nn.Module):
    """One PatchDiscriminator per pyramid scale; input = {scale: image at that scale}."""

    def __init__(self, scales: Sequence[float] = (1.0,), **kwargs):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.discs = nn.ModuleDict({scale_key(s): PatchDiscriminator(**kwargs) for s in self.scales})

    def forward(self, pyramid: dict[float, torch.Tensor], kp_value: torch.Tensor | None = None) -> DiscriminatorOutput:
        features, predictions = [], []
        for s in self.scales:
            f, p = self.discs[scale_key(s)](pyramid[s], kp_value)
            features.append(f)
            predictions.append(p)
        return DiscriminatorOutput(features, predictions)


class TemporalDiscriminator(MultiScaleDiscriminator):
    """D_seq: a multi-scale PatchGAN on ``num_frames`` frames stacked along channels.

    Input: {scale: (B, T·3, h, w)} (see ``stack_frames``); real = T successive real frames, fake = the
    T frames generated in parallel by batched sequential training."""

    def __init__(self, num_frames: int, scales: Sequence[float] = (1.0,), **kwargs):
        kwargs.pop("use_kp", None)  # keypoints of T frames are not an input of D_seq
        super().__init__(scales, num_channels=3 * num_frames, **kwargs)
        self.num_frames = num_frames

    @staticmethod
    def stack_frames(frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) → (B, T·3, H, W), frame-major (channels 0..2 = frame 0)."""
        b, t, c, h, w = frames.shape
        return frames.reshape(b, t * c, h, w)


# presets: widths for the `official` and `small` model sizes
DISCRIMINATOR_PRESETS = {
    "official": dict(block_expansion=32, max_features=512, num_blocks=4, sn=True),   # vox-256.yaml
    "small": dict(block_expansion=16, max_features=128, num_blocks=4, sn=True),
}

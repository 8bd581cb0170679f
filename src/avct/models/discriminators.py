"""Discriminators used in training: FOMM's multi-scale patch discriminator, the temporal D_seq and the
lip-sync expert D_sync (SyncNet).

- ``MultiScaleDiscriminator`` (FOMM, OFFICIAL.md C.2): per scale 4 DownBlocks (conv 4×4 no padding,
  InstanceNorm except the first, LeakyReLU 0.2, AvgPool 2 except the last), 1×1 conv head → a map of
  patch scores; optional spectral norm and keypoint-heatmap input channels. Keys as FOMM
  (``discs.<scale>.down_blocks.N.conv.weight``) so vox-adv discriminators load.
- ``TemporalDiscriminator`` (paper §3 "Batched Sequential Training"): the same PatchGAN on T frames
  stacked along channels (3T input channels): it judges a whole clip, i.e. temporal consistency.
- ``SyncNet`` (paper Eq. 1, Wav2Lip's expert in spirit): a face encoder on 5 stacked mouth crops and
  an audio encoder on the matching 20 rows (5 frames × 4) of the project's 41-d acoustic features give
  non-negative, L2-normalised 512-d embeddings; P_sync = cosine similarity ∈ [0, 1] (the ReLU before
  the normalisation keeps it non-negative so that it can be read as a probability for BCE).

Discriminators return feature maps too, for feature matching. A GAN step should call a discriminator
once on ``torch.cat([real, fake])`` (``DiscriminatorOutput.split``): one forward per backward keeps DDP happy.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AvctError
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


# ---- SyncNet (D_sync) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncNetConfig:
    """num_frames: visual window (5 = 0.2 s, centred on the judged frame); image_size: side of the square
    mouth crops; audio rows = num_frames × rows_per_frame of the ``audio_dim``-d features (20 × 41)."""

    num_frames: int = 5
    image_size: int = 96
    audio_dim: int = 41
    rows_per_frame: int = 4
    face_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    audio_channels: tuple[int, ...] = (64, 128, 256, 512)
    embedding_dim: int = 512

    @property
    def audio_rows(self) -> int:
        return self.num_frames * self.rows_per_frame

    @classmethod
    def from_dict(cls, data: dict) -> "SyncNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise AvctError(f"unknown SyncNet config field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


SYNCNET_PRESETS = {
    "official": SyncNetConfig(),
    "small": SyncNetConfig(image_size=48, face_channels=(16, 32, 64, 128), audio_channels=(32, 64, 128)),
}


class ConvUnit(nn.Module):
    """conv → BN (→ + x) → ReLU (Wav2Lip's ``Conv2d`` unit), 2-D or 1-D."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 residual: bool = False, dims: int = 2):
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.conv_block = nn.Sequential(conv(in_ch, out_ch, kernel_size, stride, padding), norm(out_ch))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return F.relu(out + x if self.residual else out)


def _encoder(in_ch: int, stem: int, widths: Sequence[int], embedding_dim: int, dims: int) -> nn.Sequential:
    """stem conv, then per width a stride-2 unit + a residual unit, global average pool, 1×1 conv + ReLU."""
    k = 7 if dims == 2 else 3
    layers: list[nn.Module] = [ConvUnit(in_ch, stem, k, 1, k // 2, dims=dims)]
    prev = stem
    for w in widths:
        layers += [ConvUnit(prev, w, 3, 2, 1, dims=dims), ConvUnit(w, w, 3, 1, 1, residual=True, dims=dims)]
        prev = w
    pool, conv = (nn.AdaptiveAvgPool2d(1), nn.Conv2d) if dims == 2 else (nn.AdaptiveAvgPool1d(1), nn.Conv1d)
    layers += [pool, conv(prev, embedding_dim, 1), nn.ReLU()]
    return nn.Sequential(*layers)


class SyncNet(nn.Module):
    """D_sync: is this audio window in sync with these 5 mouth crops?

    embed_video: (B, 5, 3, S, S) RGB mouth crops in [0, 1]        → (B, 512) non-negative, unit norm
    embed_audio: (B, 20, 41) acoustic feature rows of the 5 frames → (B, 512) non-negative, unit norm
    forward:     both → P_sync (B,) = e_v·e_a / max(‖e_v‖‖e_a‖, ε)  (paper Eq. 1), in [0, 1]
    """

    def __init__(self, cfg: SyncNetConfig = SyncNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.face_encoder = _encoder(3 * cfg.num_frames, cfg.face_channels[0], cfg.face_channels[1:],
                                     cfg.embedding_dim, dims=2)
        # raw features mix scales (MFCC ±60, log-fbank, F0 in Hz): a BatchNorm per feature first
        self.audio_norm = nn.BatchNorm1d(cfg.audio_dim)
        self.audio_encoder = _encoder(cfg.audio_dim, cfg.audio_channels[0], cfg.audio_channels[1:],
                                      cfg.embedding_dim, dims=1)

    def embed_video(self, crops: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = crops.shape
        if t != self.cfg.num_frames or (h, w) != (self.cfg.image_size,) * 2:
            raise ValueError(f"SyncNet expects (B, {self.cfg.num_frames}, 3, {self.cfg.image_size}, "
                             f"{self.cfg.image_size}) crops, got {tuple(crops.shape)}")
        x = crops.reshape(b, t * c, h, w) - 0.5                                   # (B, 15, S, S)
        return F.normalize(self.face_encoder(x).flatten(1), dim=1)

    def embed_audio(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[1:] != (self.cfg.audio_rows, self.cfg.audio_dim):
            raise ValueError(f"SyncNet expects (B, {self.cfg.audio_rows}, {self.cfg.audio_dim}) audio rows, "
                             f"got {tuple(features.shape)}")
        x = self.audio_norm(features.transpose(1, 2))                             # (B, 41, 20): time on the last axis
        return F.normalize(self.audio_encoder(x).flatten(1), dim=1)

    @staticmethod
    def similarity(e_v: torch.Tensor, e_a: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """Paper Eq. 1: cosine similarity (B,)."""
        dot = (e_v.float() * e_a.float()).sum(-1)
        return dot / torch.clamp(e_v.float().norm(dim=-1) * e_a.float().norm(dim=-1), min=eps)

    def forward(self, crops: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.similarity(self.embed_video(crops), self.embed_audio(features))

    def mouth_crops(self, frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) frames and (..., 4) boxes → (..., 3, S, S) crops at this SyncNet's size."""
        return crop_boxes(frames, boxes, self.cfg.image_size)


def sync_loss(p_sync: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L_sync = mean −log P_sync (paper, for the generator side)."""
    return -torch.log(p_sync.float().clamp(min=eps)).mean()


def sync_bce(p_sync: torch.Tensor, label: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """BCE of P_sync against 1 (in sync) / 0 (shifted audio): how D_sync is trained."""
    return F.binary_cross_entropy(p_sync.float().clamp(eps, 1 - eps), label.float())


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable crop-and-resize: images (..., C, H, W), boxes (..., 4) pixel edges (x0, y0, x1, y1)
    → (..., C, size, size), bilinear, border padding. The same function serves D_sync's training crops of
    real frames and the AVCT's crops of generated frames, so both see identically resampled mouths.

    With align_corners=False, pixel edge x ↦ normalised 2x/W − 1, so the box spans
    [2x0/W − 1, 2x1/W − 1] = centre (x0+x1)/W − 1 ± (x1−x0)/W."""
    lead = images.shape[:-3]
    c, h, w = images.shape[-3:]
    imgs = images.reshape(-1, c, h, w)
    b = boxes.reshape(-1, 4).to(imgs.dtype if imgs.is_floating_point() else torch.float32)
    x0, y0, x1, y1 = b.unbind(-1)
    theta = torch.zeros(len(b), 2, 3, dtype=b.dtype, device=imgs.device)
    theta[:, 0, 0] = (x1 - x0) / w
    theta[:, 0, 2] = (x0 + x1) / w - 1
    theta[:, 1, 1] = (y1 - y0) / h
    theta[:, 1, 2] = (y0 + y1) / h - 1
    grid = F.affine_grid(theta, [len(b), c, size, size], align_corners=False)
    out = F.grid_sample(imgs.float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(imgs.dtype).reshape(*lead, c, size, size)

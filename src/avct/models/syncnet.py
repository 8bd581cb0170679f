"""The SyncNet networks: D_sync, the lip-sync expert trained by ``avct train syncnet`` and used as a loss
(paper Eq. 1), and ``syncnet_v2``, the field's network behind the AVOff/AVConf metrics
(:mod:`avct.eval.syncnet` holds the scoring procedure).

- ``SyncNet`` (paper Eq. 1, Wav2Lip's expert in spirit): a face encoder on 5 stacked mouth crops and
  an audio encoder on the matching 20 rows (5 frames × 4) of the project's 41-d acoustic features give
  non-negative, L2-normalised 512-d embeddings; P_sync = cosine similarity ∈ [0, 1] (the ReLU before
  the normalisation keeps it non-negative so that it can be read as a probability for BCE).
- ``SyncNetV2``: syncnet_python's ``S`` layer for layer (its indices are the state-dict keys), so that a
  user's ``syncnet_v2.model`` loads as it is.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AvctError


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


# ---- network (the exact syncnet_v2 layout; indices are the state-dict keys) ---------------------


def _fc(out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out))


class SyncNetV2(nn.Module):
    """syncnet_python's ``S``: audio (N,1,13,20) MFCC and video (N,3,5,224,224) BGR -> (N, 1024) each."""

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(1, 1),
            nn.Conv2d(64, 192, 3, padding=1), nn.BatchNorm2d(192), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=(1, 2)),
            nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(256, 512, (5, 4)), nn.BatchNorm2d(512), nn.ReLU(),
        )
        self.netfcaud = _fc(embed_dim)
        self.netfclip = _fc(embed_dim)
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), nn.BatchNorm3d(96), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6)), nn.BatchNorm3d(512), nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))

    @torch.inference_mode()
    def embed_audio(self, windows: torch.Tensor) -> torch.Tensor:
        p = next(self.parameters())
        return self.forward_aud(torch.as_tensor(windows).to(p.device, p.dtype)).float().cpu()

    @torch.inference_mode()
    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        p = next(self.parameters())
        return self.forward_lip(torch.as_tensor(clips).to(p.device, p.dtype)).float().cpu()

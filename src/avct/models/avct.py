"""The Audio-Visual Correlation Transformer (paper §3.2; official name ``ph2kp``).

Per frame of an 11-frame window:
- encoder token = CNN(pose box ⊕ phoneme embedding)            — "what is said, where the head is"
- decoder query = CNN(audio ⊕ reference keypoint-detector map)  — "how this identity sounds it"
A post-norm transformer correlates the two; the centre slot of the last decoder layer is mapped to the
frame's keypoints and jacobians. Per-frame tokens do not depend on the window (BN in eval), so the
inference pipeline computes them once per frame and slides the window over the cached sequences.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio.phonemes import SIL_ID
from ..config import AVCTConfig
from ..face.pose_box import draw_pose_boxes
from .blocks import AntiAliasInterpolation2d, inference
from .keypoints import Keypoints

POSE_SCALE = 0.25  # pose boxes 256² -> 64²


def window_inputs(positions: np.ndarray, n: int, phonemes: np.ndarray, rows: np.ndarray, poses: np.ndarray,
                  *, silent: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The AVCT's inputs at frame ``positions`` of an ``n``-frame sequence, positions outside it included,
    by the official windows' padding rule: phoneme SIL and zero audio outside the sequence, the pose
    clamped to its first/last frame. ``phonemes`` (>= n,) ids, ``rows`` (>= n, 4, 41) acoustic features
    per frame, ``poses`` (>= n, 6) head poses; ``silent``: every position is padding but for its pose (the
    AVCT's answer to silence). Returns phonemes (P,) int64, audio (P, 4, 41) float32 and pose boxes
    (P, 256, 256)."""
    positions = np.asarray(positions)
    valid = (positions >= 0) & (positions < n) & (not silent)
    clamped = np.clip(positions, 0, n - 1)
    ph = np.where(valid, np.asarray(phonemes[clamped], np.int64), SIL_ID)
    audio = np.zeros((len(positions), *rows.shape[1:]), np.float32)
    audio[valid] = rows[clamped[valid]]
    return ph, audio, draw_pose_boxes(poses[clamped])


class _NormActConv(nn.Module):
    """BN → (LeakyReLU 0.2) → conv; keys ``layers.norm``, ``layers.conv``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, activation: bool):
        super().__init__()
        layers = [("norm", nn.BatchNorm2d(in_ch))]
        if activation:
            layers.append(("act", nn.LeakyReLU(0.2)))
        layers.append(("conv", nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)))
        self.layers = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DownResBlock(nn.Module):
    """Residual block that halves the resolution (imaginaire ``DownRes2dBlock``, order NACNAC)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        hidden = min(in_ch, out_ch)
        self.conv_block_0 = _NormActConv(in_ch, hidden, 3, activation=True)
        self.conv_block_1 = _NormActConv(hidden, out_ch, 3, activation=True)
        self.conv_block_s = _NormActConv(in_ch, out_ch, 1, activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.avg_pool2d(self.conv_block_1(self.conv_block_0(x)), 2)
        return residual + F.avg_pool2d(self.conv_block_s(x), 2)


def _batch_norm_part(x: torch.Tensor, norm: nn.BatchNorm2d, part: slice) -> torch.Tensor:
    """Eval-mode BN of the channels ``part`` of the BN's input, applied to ``x`` (those channels alone)."""
    return F.batch_norm(x, norm.running_mean[part], norm.running_var[part], norm.weight[part], norm.bias[part],
                        False, 0.0, norm.eps)


def down_res_block_on_split_input(block: DownResBlock, upsampled: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """``block(cat([nearest×2(upsampled), shared]))`` for a ``shared`` map common to all N inputs, without
    building the N-times repeated, concatenated input (inference only: BN in eval).

    BN, LeakyReLU and the convolutions are per channel or linear in their input channels, so each conv
    splits into its part on the upsampled channels and its part on the shared ones; the shared part runs
    once (batch 1) and is broadcast. Per-channel BN and activation commute with nearest upsampling, so they
    run at half resolution, and the 1×1 shortcut, average-pooled by 2, is the 1×1 conv at half resolution.
    The same sums in another order (a test).

    upsampled (N, Ca, h, w), shared (1, Cs, 2h, 2w) -> (N, out, h, w)."""
    c = upsampled.shape[1]
    own, common = slice(0, c), slice(c, None)
    norm0, conv0 = block.conv_block_0.layers.norm, block.conv_block_0.layers.conv
    norm_s, conv_s = block.conv_block_s.layers.norm, block.conv_block_s.layers.conv
    act = block.conv_block_0.layers.act
    z = F.interpolate(act(_batch_norm_part(upsampled, norm0, own)), scale_factor=2.0)        # (N, Ca, 2h, 2w)
    hidden = (F.conv2d(z, conv0.weight[:, own], conv0.bias, padding=conv0.padding)
              + F.conv2d(act(_batch_norm_part(shared, norm0, common)), conv0.weight[:, common], None,
                         padding=conv0.padding))                                                # (N, hid, 2h, 2w)
    shortcut = (F.conv2d(_batch_norm_part(upsampled, norm_s, own), conv_s.weight[:, own], conv_s.bias)
                + F.avg_pool2d(F.conv2d(_batch_norm_part(shared, norm_s, common), conv_s.weight[:, common]), 2))
    return F.avg_pool2d(block.conv_block_1(hidden), 2) + shortcut                               # (N, out, h, w)


def _feature_cnn(in_ch: int, channels: tuple[int, ...]) -> nn.Sequential:
    """5 down-res blocks (64² → 2²) + 2×2 average pool → one vector per frame."""
    blocks, prev = [], in_ch
    for ch in channels:
        blocks.append(DownResBlock(prev, ch))
        prev = ch
    return nn.Sequential(*blocks, nn.AvgPool2d(2))


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """(1, positions, dim): angle p / 10000^(2⌊j/2⌋/dim); sin on even j, cos on odd j (float64 → float32)."""
    p = torch.arange(positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = p / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().unsqueeze(0)


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, positions: int):
        super().__init__()
        self.register_buffer("pos_table", sinusoid_table(positions, dim))


class EncoderLayer(nn.Module):
    """Post-norm: x = LN1(x + SA(x)); x = LN2(x + FFN(x)). Sequence-first (L, B, D)."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nhead, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, need_weights=False)[0]))
        return self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class DecoderLayer(nn.Module):
    """Post-norm: self-attention, cross-attention on the encoder memory, FFN."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d, nhead, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, need_weights=False)[0]))
        x = self.norm2(x + self.dropout(self.multihead_attn(x, memory, memory, need_weights=False)[0]))
        return self.norm3(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class _Stack(nn.Module):
    def __init__(self, layers: list[nn.Module], final_norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        if final_norm is not None:
            self.norm = final_norm


class Transformer(nn.Module):
    """DETR-style encoder/decoder with positions added only at the inputs."""

    def __init__(self, cfg: AVCTConfig):
        super().__init__()
        args = (cfg.d_model, cfg.nhead, cfg.dim_feedforward, cfg.dropout)
        self.encoder = _Stack([EncoderLayer(*args) for _ in range(cfg.num_encoder_layers)])
        self.decoder = _Stack([DecoderLayer(*args) for _ in range(cfg.num_decoder_layers)], nn.LayerNorm(cfg.d_model))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: torch.Tensor, query: torch.Tensor, all_layers: bool = False) -> torch.Tensor:
        """src, query (L, B, D) incl. positions -> (L, B, D) last decoder layer, normed
        (or (layers, L, B, D) with ``all_layers``)."""
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory)
        x, stack = query, []
        for layer in self.decoder.layers:
            x = layer(x, memory)
            if all_layers:
                stack.append(self.decoder.norm(x))
        return torch.stack(stack) if all_layers else self.decoder.norm(x)


class AudioVisualCorrelationTransformer(nn.Module):
    def __init__(self, cfg: AVCTConfig = AVCTConfig()):
        super().__init__()
        self.cfg = cfg
        side = int(math.isqrt(cfg.embedding_dim))
        if side * side != cfg.embedding_dim:
            raise ValueError("embedding_dim must be a square (it is reshaped to a side×side map)")
        self.embedding = nn.Embedding(cfg.num_phonemes, cfg.embedding_dim)
        self.pos_enc = PositionalEncoding(cfg.d_model, cfg.max_positions)
        self.down_pose = AntiAliasInterpolation2d(1, POSE_SCALE)
        if cfg.block_channels[-1] != cfg.d_model:
            raise ValueError("the last feature block must output d_model channels")
        self.feature_extract = _feature_cnn(2, cfg.block_channels)
        c = cfg.feature_channels
        self.audio_embedding = nn.Sequential(
            nn.ConvTranspose2d(1, 8, kernel_size=(29, 14), stride=1, padding=(0, 11)),  # (4,41) -> (32,32)
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, c, kernel_size=13, padding=6),
        )
        self.decodefeature_extract = _feature_cnn(2 * c, cfg.block_channels)
        self.transformer = Transformer(cfg)
        self.kp = nn.Linear(cfg.d_model, cfg.num_kp * 2)
        self.jacobian = nn.Linear(cfg.d_model, cfg.num_kp * 4)
        nn.init.zeros_(self.jacobian.weight)
        with torch.no_grad():
            self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(cfg.num_kp))

    @property
    def window(self) -> int:
        return 2 * self.cfg.num_w + 1

    # ---- per-frame tokens (window independent) -------------------------------------------------
    def encoder_tokens(self, phonemes: torch.Tensor, pose_boxes: torch.Tensor) -> torch.Tensor:
        """phonemes (N,) long, pose_boxes (N, 256, 256) values 0..255 -> (N, d_model)."""
        n = phonemes.shape[0]
        side = int(math.isqrt(self.cfg.embedding_dim))
        pose = self.down_pose(pose_boxes.reshape(n, 1, *pose_boxes.shape[-2:]))          # (N, 1, 64, 64)
        ph = self.embedding(phonemes).reshape(n, 1, side, side)
        ph = F.interpolate(ph, size=pose.shape[-2:])                                        # nearest ×4
        if not self.cfg.use_phonemes:
            ph = torch.zeros_like(ph)
        return self.feature_extract(torch.cat([pose, ph], dim=1)).reshape(n, -1)

    def decoder_tokens(self, audio: torch.Tensor, feature_map: torch.Tensor) -> torch.Tensor:
        """audio (N, 4, 41), reference feature_map (1 or N, C, 64, 64) -> (N, d_model)."""
        n = audio.shape[0]
        a = self.audio_embedding(audio.reshape(n, 1, *audio.shape[-2:]))                   # (N, C, 32, 32)
        if not self.cfg.use_audio:
            a = torch.zeros_like(a)
        if not self.cfg.use_kp_features:
            feature_map = torch.zeros_like(feature_map)
        if inference(self) and feature_map.shape[0] == 1 and feature_map.shape[-2:] == tuple(2 * s for s in a.shape[-2:]):
            # one reference for all N frames: its half of the first block once (down_res_block_on_split_input)
            first, rest = self.decodefeature_extract[0], self.decodefeature_extract[1:]
            return rest(down_res_block_on_split_input(first, a, feature_map)).reshape(n, -1)
        a = F.interpolate(a, size=feature_map.shape[-2:])                                   # nearest ×2
        fm = feature_map.expand(n, *feature_map.shape[1:])
        return self.decodefeature_extract(torch.cat([a, fm], dim=1)).reshape(n, -1)

    # ---- windows -----------------------------------------------------------------------------
    def correlate(self, enc_windows: torch.Tensor, dec_windows: torch.Tensor,
                  all_layers: bool = False) -> torch.Tensor:
        """(B, W, D) token windows -> (B, D) centre output (or the (layers, W, B, D) stack)."""
        w = enc_windows.shape[1]
        pos = self.pos_enc.pos_table[:, :w].to(enc_windows.dtype).transpose(0, 1)          # (W, 1, D)
        src = enc_windows.transpose(0, 1) + pos
        query = dec_windows.transpose(0, 1) + pos
        out = self.transformer(src, query, all_layers=all_layers)
        return out if all_layers else out[self.cfg.num_w]

    def head(self, h: torch.Tensor) -> Keypoints:
        b = h.shape[0]
        return Keypoints(self.kp(h).view(b, self.cfg.num_kp, 2), self.jacobian(h).view(b, self.cfg.num_kp, 2, 2))

    def forward(self, phonemes: torch.Tensor, audio: torch.Tensor, pose_boxes: torch.Tensor,
                feature_map: torch.Tensor) -> Keypoints:
        """Official per-window interface: phonemes (B, W), audio (B, W, 4, 41), pose_boxes (B, W, 256, 256),
        feature_map (B or 1, C, 64, 64) -> keypoints of each window's centre frame."""
        b, w = phonemes.shape
        fm = feature_map.unsqueeze(1).expand(-1, w, -1, -1, -1).reshape(-1, *feature_map.shape[1:]) \
            if feature_map.shape[0] == b else feature_map
        enc = self.encoder_tokens(phonemes.reshape(-1), pose_boxes.reshape(b * w, *pose_boxes.shape[-2:]))
        dec = self.decoder_tokens(audio.reshape(b * w, *audio.shape[-2:]), fm)
        return self.head(self.correlate(enc.view(b, w, -1), dec.view(b, w, -1)))

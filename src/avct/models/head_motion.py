"""Head-motion predictor (official ``audio2poseLSTM``): audio → 6-DoF head pose per frame.

A ResNet-34 embeds the reference pose box (the initial state) and each 4×41 audio chunk; a 2-layer
LSTM then rolls forward autoregressively: its input at step t is [audio_t, previous output state].
Outputs are in [-1, 1]-ish units, de-normalised to [Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HeadMotionConfig


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = (nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
                           if stride != 1 or in_ch != out_ch else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision-layout ResNet (BasicBlock) with a configurable input channel count and fc size."""

    def __init__(self, in_channels: int, layers: tuple[int, ...], widths: tuple[int, ...], out_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        prev = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(prev if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            prev = w
        self.num_stages = len(layers)
        self.fc = nn.Linear(prev, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _Embedder(nn.Module):
    """Wrapper so the state-dict keys read ``em_*.resnet.*`` like the official ones."""

    def __init__(self, cfg: HeadMotionConfig, in_channels: int):
        super().__init__()
        self.resnet = ResNet(in_channels, cfg.layers, cfg.widths, cfg.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet(x)


class HeadMotionPredictor(nn.Module):
    def __init__(self, cfg: HeadMotionConfig = HeadMotionConfig()):
        super().__init__()
        self.cfg = cfg
        if cfg.embedding_dim != cfg.hidden_size:
            raise ValueError("the pose embedding seeds the LSTM output state: embedding_dim must equal hidden_size")
        self.em_pose = _Embedder(cfg, 1)
        self.em_audio = _Embedder(cfg, 1)
        self.lstm = nn.LSTM(2 * cfg.embedding_dim, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        self.output = nn.Linear(cfg.hidden_size, 6)
        self.register_buffer("pose_min", torch.tensor(cfg.pose_min), persistent=False)
        self.register_buffer("pose_max", torch.tensor(cfg.pose_max), persistent=False)

    def initial_state(self, pose_box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """pose_box (B, 1, 256, 256) values 0..255 -> (raw output of frame 0 (B, 6), h, lstm state)."""
        h = self.em_pose(pose_box)                                                 # (B, E)
        zeros = h.new_zeros(self.cfg.num_layers, h.shape[0], self.cfg.hidden_size)
        return self.output(h), h, (zeros, zeros)

    def step(self, audio: torch.Tensor, h: torch.Tensor, state: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """Roll over audio chunks (B, T, 4, 41) from (h, state): -> raw outputs (B, T, 6), new h, state.

        Chunked calls give the same result as one call over the whole sequence (streaming)."""
        b, t = audio.shape[:2]
        em = self.em_audio(audio.reshape(b * t, 1, *audio.shape[2:])).view(b, t, -1)   # (B, T, E)
        outs = []
        for i in range(t):
            y, state = self.lstm(torch.cat([em[:, i:i + 1], h.unsqueeze(1)], dim=2), state)
            h = y[:, 0]
            outs.append(self.output(h))
        return torch.stack(outs, dim=1), h, state

    def forward(self, pose_box: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Official interface: -> raw outputs (B, T+1, 6); row 0 from the pose box alone."""
        first, h, state = self.initial_state(pose_box)
        rest, _, _ = self.step(audio, h, state)
        return torch.cat([first.unsqueeze(1), rest], dim=1)

    def denormalize(self, raw: torch.Tensor) -> torch.Tensor:
        """[-1, 1] outputs -> [Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)]."""
        lo, hi = self.pose_min.to(raw.dtype), self.pose_max.to(raw.dtype)
        return (raw + 1) / 2 * (hi - lo) + lo

"""Shared building blocks (FOMM style). Attribute names follow the official state-dict layout."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel(channels: int, scale: float) -> torch.Tensor:
    """Depthwise Gaussian anti-alias kernel for downsampling by ``scale``: σ = (1/scale − 1)/2,
    size 2·round(4σ)+1 (13×13 for scale 0.25), normalised to sum 1. (channels, 1, k, k)."""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    grid = torch.arange(size, dtype=torch.float32)
    mean = (size - 1) / 2
    g = torch.exp(-((grid - mean) ** 2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    kernel = kernel / kernel.sum()
    return kernel.expand(channels, 1, size, size).contiguous()


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then keep every (1/scale)-th pixel: downsampling without aliasing."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.scale = scale
        self.step = round(1 / scale)
        kernel = gaussian_kernel(channels, scale)
        self.pad = kernel.shape[-1] // 2
        self.groups = channels
        self.register_buffer("weight", kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        x = F.pad(x, (self.pad,) * 4)
        # stride = keep every step-th output (== blur then nearest interpolation by `scale`), without
        # computing the outputs that would be thrown away
        return F.conv2d(x, self.weight.to(x.dtype), groups=self.groups, stride=self.step)


class DownBlock2d(nn.Module):
    """conv3×3 → BN → ReLU → AvgPool2."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock2d(nn.Module):
    """nearest ×2 → conv3×3 → BN → ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))


class SameBlock2d(nn.Module):
    """conv → BN → ReLU at constant resolution."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, ch: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(ch, ch, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(ch, affine=True)
        self.norm2 = nn.BatchNorm2d(ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return x + out


def _hourglass_channels(expansion: int, max_features: int, i: int) -> int:
    return min(max_features, expansion * (2**i))


class Encoder(nn.Module):
    def __init__(self, expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else _hourglass_channels(expansion, max_features, i),
                        _hourglass_channels(expansion, max_features, i + 1))
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    def __init__(self, expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_ch = (1 if i == num_blocks - 1 else 2) * _hourglass_channels(expansion, max_features, i + 1)
            blocks.append(UpBlock2d(in_ch, _hourglass_channels(expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net: output channels = expansion + in_features, same resolution as the input."""

    def __init__(self, expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.encoder = Encoder(expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def make_coordinate_grid(h: int, w: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | None = None) -> torch.Tensor:
    """(h, w, 2) grid of (x, y) in [-1, 1], corners at exactly ±1."""
    x = 2 * (torch.arange(w, dtype=dtype, device=device) / (w - 1)) - 1
    y = 2 * (torch.arange(h, dtype=dtype, device=device) / (h - 1)) - 1
    return torch.stack([x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)], dim=2)


def kp2gaussian(value: torch.Tensor, h: int, w: int, kp_variance: float) -> torch.Tensor:
    """Gaussian blobs at keypoints: value (B, K, 2) -> (B, K, h, w)."""
    grid = make_coordinate_grid(h, w, value.dtype, value.device)     # (h, w, 2)
    diff = grid[None, None] - value[:, :, None, None, :]              # (B, K, h, w, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)

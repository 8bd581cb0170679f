"""Shared building blocks (FOMM style). Attribute names follow the official state-dict layout."""
from __future__ import annotations

import contextlib
from typing import Iterator

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


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """channels_last when ``t`` (4-d) is laid out so (and not also plain-contiguous), else contiguous."""
    cl = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _merge_taps(w: torch.Tensor, dim: int) -> list[torch.Tensor]:
    """The 3 taps of a 3-wide kernel seen from a ×2 nearest-upsampled axis, per output phase: phase 0
    (even outputs) reads inputs (i−1, i) with taps (k0, k1+k2), phase 1 reads (i, i+1) with (k0+k1, k2)."""
    k0, k1, k2 = w.unbind(dim)
    return [torch.stack([k0, k1 + k2], dim), torch.stack([k0 + k1, k2], dim)]


def upsample2x_phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) -> (4O, I, 2, 2): the 2×2 kernels of the output phases 00, 01, 10, 11 (sums in fp32
    at least)."""
    w = weight if weight.dtype == torch.float64 else weight.float()
    return torch.cat([k for rows in _merge_taps(w, 2) for k in _merge_taps(rows, 3)])


def upsample2x_conv3x3(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv3×3(pad 1)(nearest×2(x))`` without the ×2 image: each of the 4 output phases is a 2×2 conv
    of x with merged taps (``kernels`` from :func:`upsample2x_phase_kernels`), 16 instead of 36
    multiply-adds per input pixel and channel pair. The same sums in another order: fp32 agrees to
    ~1e-6 (a test).

    x (N, I, H, W), kernels (4O, I, 2, 2) -> (N, O, 2H, 2W), in x's memory format."""
    n, _, h, w = x.shape
    o = kernels.shape[0] // 4
    fmt = memory_format_of(x)
    y = F.conv2d(x, kernels.to(x.dtype), None if bias is None else bias.repeat(4), padding=1)  # (N, 4O, H+1, W+1)
    y = y.contiguous(memory_format=fmt)
    sn, so, sr, sc = y.stride()
    # out[n, o, 2i+a, 2j+b] = y[n, (2a+b)·O + o, i+a, j+b]: one strided view (any layout), one copy
    phases = y.as_strided((n, o, h, 2, w, 2), (sn, so, sr, 2 * o * so + sr, sc, o * so + sc))
    if fmt is torch.channels_last:
        return phases.permute(0, 2, 3, 4, 5, 1).reshape(n, 2 * h, 2 * w, o).permute(0, 3, 1, 2)
    return phases.reshape(n, o, 2 * h, 2 * w)


_FOLDING = True


@contextlib.contextmanager
def plain_layers() -> Iterator[None]:
    """Run the blocks as the official code does (conv, BN, ReLU, upsample each on its own) inside the
    block: the per-frame reference loop and its benchmark use it."""
    global _FOLDING
    previous, _FOLDING = _FOLDING, False
    try:
        yield
    finally:
        _FOLDING = previous


def inference(module: nn.Module) -> bool:
    """Whether the blocks below take their folded fast forms: eval mode with autograd off. Training and
    backprop through a frozen network run the plain layers, as the official code."""
    return _FOLDING and not module.training and not torch.is_grad_enabled()


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """conv followed by eval-mode BN as one conv (fp32): W·s and (b − μ)·s + β, with s = γ / √(σ² + ε)."""
    s = norm.weight.detach().float() / torch.sqrt(norm.running_var.float() + norm.eps)
    bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros_like(s)
    return conv.weight.detach().float() * s[:, None, None, None], (bias - norm.running_mean.float()) * s + norm.bias.detach().float()


class FoldedConvCache:
    """Inference-time cache of a conv followed by BatchNorm, folded into one conv (:func:`fold_batchnorm`).

    Keyed on the storage and version of every parameter and statistic involved, so loading weights,
    casting or training invalidates it. A plain attribute of its block, never part of the state dict."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d, transform=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) in the conv weight's dtype and memory format; ``transform`` maps the fp32
        (weight, bias) first (e.g. to the upsampling phase kernels)."""
        w = conv.weight
        if torch.compiler.is_compiling():  # traced with frozen weights: inductor folds this into constants
            return self._fold(conv, norm, transform)
        parts = (w, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in parts if t is not None)
        if self._value is None or self._key != key:
            self._key, self._value = key, self._fold(conv, norm, transform)
        return self._value

    @staticmethod
    def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d, transform) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = fold_batchnorm(conv, norm)
        if transform is not None:
            weight, bias = transform(weight, bias)
        w = conv.weight
        return weight.to(w.dtype).contiguous(memory_format=memory_format_of(w)), bias.to(w.dtype)


class ConvNorm(nn.Module):
    """conv → BN, run as one folded conv at inference."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_ch, affine=True)
        self.folded = FoldedConvCache()

    def conv_norm(self, x: torch.Tensor) -> torch.Tensor:
        if inference(self):
            weight, bias = self.folded(self.conv, self.norm)
            return F.conv2d(x, weight, bias, padding=self.conv.padding)
        return self.norm(self.conv(x))


class DownBlock2d(ConvNorm):
    """conv3×3 → BN → ReLU → AvgPool2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.conv_norm(x), inplace=inference(self)), 2)


class UpBlock2d(ConvNorm):
    """nearest ×2 → conv3×3 → BN → ReLU. At inference the upsampling and the BN are folded into the
    convolution (:func:`upsample2x_conv3x3`, ~1.7× faster on CPU); training runs the plain layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if inference(self) and self.conv.kernel_size == (3, 3) and self.conv.padding == (1, 1):
            kernels, bias = self.folded(self.conv, self.norm, lambda w, b: (upsample2x_phase_kernels(w), b))
            return F.relu(upsample2x_conv3x3(x, kernels, bias), inplace=True)
        return F.relu(self.conv_norm(F.interpolate(x, scale_factor=2)))


class SameBlock2d(ConvNorm):
    """conv → BN → ReLU at constant resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_norm(x), inplace=inference(self))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x)))))). At inference norm2 is
    folded into conv1 (norm1 acts on the residual stream itself and stays)."""

    def __init__(self, ch: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(ch, ch, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(ch, affine=True)
        self.norm2 = nn.BatchNorm2d(ch, affine=True)
        self.folded = FoldedConvCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if inference(self):
            weight, bias = self.folded(self.conv1, self.norm2)
            out = F.conv2d(F.relu(self.norm1(x), inplace=True), weight, bias, padding=self.conv1.padding)
            return self.conv2(F.relu(out, inplace=True)).add_(x)  # fresh tensors: in place saves allocations
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

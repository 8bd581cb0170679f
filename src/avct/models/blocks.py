"""Shared building blocks (FOMM style). Attribute names follow the official state-dict layout."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

T = TypeVar("T")


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


def upsample2x_conv3x3_packed(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv3×3(pad 1)(nearest×2(x))`` as its four output phases side by side, without the ×2 image:
    each phase is a 2×2 conv of x with merged taps (``kernels`` from :func:`upsample2x_phase_kernels`),
    16 instead of 36 multiply-adds per input pixel and channel pair.

    x (N, I, H, W) -> (N, 4O, H+1, W+1), in x's memory format: out[n, o, 2i+a, 2j+b] sits at
    [n, (2a+b)·O + o, i+a, j+b]; the remaining row and column of each phase hold sums over padding
    (:func:`zero_unused_phase_borders` clears them where a reader would see them)."""
    y = F.conv2d(x, kernels.to(x.dtype), None if bias is None else bias.repeat(4), padding=1)
    return y.contiguous(memory_format=memory_format_of(x))


def interleave_phases(y: torch.Tensor) -> torch.Tensor:
    """(N, 4O, H+1, W+1) packed phases -> (N, O, 2H, 2W) image: one strided view (any layout), one copy.
    ``interleave_phases(upsample2x_conv3x3_packed(x, ...))`` is ``conv3×3(nearest×2(x))``: the same sums as
    the plain layers in another order (fp32 agrees to ~1e-6, a test)."""
    n, c4, h1, w1 = y.shape
    o, h, w = c4 // 4, h1 - 1, w1 - 1
    sn, so, sr, sc = y.stride()
    phases = y.as_strided((n, o, h, 2, w, 2), (sn, so, sr, 2 * o * so + sr, sc, o * so + sc))
    if memory_format_of(y) is torch.channels_last:
        return phases.permute(0, 2, 3, 4, 5, 1).reshape(n, 2 * h, 2 * w, o).permute(0, 3, 1, 2)
    return phases.reshape(n, o, 2 * h, 2 * w)


def zero_unused_phase_borders(y: torch.Tensor) -> torch.Tensor:
    """Phase a = 0 never uses row H of the packed tensor, phase a = 1 never uses row 0 (columns alike):
    zero them, so that a convolution over the packed phases sees the image's zero padding. In place
    (eager); traced by torch.compile, a mask multiply that inductor fuses into the producer (slice writes
    would become whole-tensor copies there, which was slower: docs/performance.md)."""
    o, (h1, w1) = y.shape[1] // 4, y.shape[-2:]
    if torch.compiler.is_compiling():
        rows, cols = torch.arange(h1, device=y.device), torch.arange(w1, device=y.device)
        keep = torch.stack([(rows != (h1 - 1 if a == 0 else 0))[:, None] & (cols != (w1 - 1 if b == 0 else 0))
                            for a in (0, 1) for b in (0, 1)])                             # (4, H+1, W+1)
        return y * keep.repeat_interleave(o, dim=0).to(y.dtype)
    for a in (0, 1):
        for b in (0, 1):
            group = y[:, (2 * a + b) * o:(2 * a + b + 1) * o]
            group[:, :, -1 if a == 0 else 0].zero_()
            group[:, :, :, -1 if b == 0 else 0].zero_()
    return y


def _phase_taps(k: int) -> Iterator[tuple[int, int, int, int]]:
    """For a k×k 'same' conv (k odd, padding p = k//2) on a ×2 image read from its packed phases:
    (u, d, a, s) = output phase u, kernel tap d reads input phase a at packed kernel offset s.

    Output row 2q+u, tap d reads image row 2q+u+d−p = 2i+a with v = u+d−p, a = v mod 2, i = q+(v−a)/2,
    i.e. packed row i+a = q+⌈v/2⌉. Offsets ⌈v/2⌉ span −⌊p/2⌋ … ⌊p/2⌋+1, so the packed kernel has
    S = 2⌊p/2⌋+2 taps, read with padding ⌊p/2⌋ on every side (H+1 packed rows → H outputs)."""
    p = k // 2
    for u in (0, 1):
        for d in range(k):
            v = u + d - p
            a = v % 2
            yield u, d, a, (v + a) // 2 + p // 2


def packed_phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(C, O, k, k) 'same' conv (k odd) -> (4C, 4O, S, S) conv over packed phases (fp32 at least):
    output channel c·4 + 2u + v is phase (u, v) of c, ready for ``pixel_shuffle(·, 2)``."""
    w = weight if weight.dtype == torch.float64 else weight.float()
    c, o, k, _ = w.shape
    taps = list(_phase_taps(k))
    size = 1 + max(s for *_, s in taps)
    out = w.new_zeros(c, 2, 2, 4, o, size, size)
    for u, dy, a, sr in taps:
        for v, dx, b, sc in taps:
            out[:, u, v, 2 * a + b, :, sr, sc] = w[:, :, dy, dx]
    return out.reshape(4 * c, 4 * o, size, size)


def is_same_odd_conv(conv: nn.Conv2d) -> bool:
    """Square odd kernel, stride 1, padding k//2: the convolutions :func:`packed_phase_kernels` rewrites."""
    k = conv.kernel_size[0]
    return conv.kernel_size == (k, k) and k % 2 == 1 and conv.stride == (1, 1) and conv.padding == (k // 2, k // 2)


def conv_on_packed_phases(y: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv_k×k(pad k//2)(interleave_phases(y))`` without building the interleaved image: a conv over the
    packed phases (borders zeroed, :func:`zero_unused_phase_borders`) with ``kernels`` from
    :func:`packed_phase_kernels`, then a pixel shuffle of its few output channels. For the renderer's last
    7×7 conv to RGB this skips the 64-channel full-resolution image and runs faster, as oneDNN is slow
    with 3 output channels, much less so with 12 (measured in docs/performance.md).

    y (N, 4O, H+1, W+1) -> (N, C, 2H, 2W)."""
    pad = (kernels.shape[-1] - 2) // 2  # S = 2⌊p/2⌋ + 2 (see _phase_taps)
    z = F.conv2d(y, kernels.to(y.dtype), None if bias is None else bias.repeat_interleave(4), padding=pad)
    return F.pixel_shuffle(z, 2)


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


def conv_params_fp32(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) detached in fp32, a zero bias where the conv has none."""
    weight = conv.weight.detach().float()
    bias = conv.bias.detach().float() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    return weight, bias


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """conv followed by eval-mode BN as one conv (fp32): W·s and (b − μ)·s + β, with s = γ / √(σ² + ε)."""
    weight, bias = conv_params_fp32(conv)
    s = norm.weight.detach().float() / torch.sqrt(norm.running_var.float() + norm.eps)
    return weight * s[:, None, None, None], (bias - norm.running_mean.float()) * s + norm.bias.detach().float()


class DerivedWeightCache:
    """Inference-time cache of tensors derived from parameters (folded, merged, re-laid-out weights).

    Keyed on the storage and version of every tensor they derive from, so loading weights, casting or
    training invalidates it. A plain attribute of its module, never part of the state dict."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value = None

    def get(self, sources: tuple[torch.Tensor | None, ...], derive: Callable[[], T]) -> T:
        if torch.compiler.is_compiling():  # traced with frozen weights: inductor folds this into constants
            return derive()
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in sources if t is not None)
        if self._value is None or self._key != key:
            self._key, self._value = key, derive()
        return self._value


class FoldedConvCache(DerivedWeightCache):
    """A conv's weights in their fast inference form: a following BatchNorm folded in
    (:func:`fold_batchnorm`), then an optional transform (phase kernels)."""

    def __call__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d | None,
                 transform=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) in the conv weight's dtype and memory format; ``transform`` maps the fp32
        (weight, bias) first (e.g. to the upsampling phase kernels). ``norm`` None: the conv alone."""
        sources = (conv.weight, conv.bias) + (() if norm is None else
                                              (norm.weight, norm.bias, norm.running_mean, norm.running_var))
        return self.get(sources, lambda: self._fold(conv, norm, transform))

    @staticmethod
    def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d | None, transform) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = conv_params_fp32(conv) if norm is None else fold_batchnorm(conv, norm)
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
    convolution (:func:`upsample2x_conv3x3_packed`: fewer multiply-adds and no ×4 image, faster on CPU,
    docs/performance.md); training runs the plain layers."""

    def folds_upsampling(self, x: torch.Tensor) -> bool:
        """At inference, for inputs of 8×8 and more: on smaller ones the convolution is bound by reading
        its weights, the phase kernels are 16/9 as large, and the plain layers run faster (CPU, measured
        at 2×2 and still so at 4×4: docs/performance.md)."""
        return (inference(self) and self.conv.kernel_size == (3, 3) and self.conv.padding == (1, 1)
                and min(x.shape[-2:]) >= 8)

    def packed(self, x: torch.Tensor) -> torch.Tensor:
        """Where :meth:`folds_upsampling`: the output as packed phases, (N, 4O, H+1, W+1), ReLU
        applied and unused borders zeroed, for :func:`interleave_phases` or :func:`conv_on_packed_phases`."""
        kernels, bias = self.folded(self.conv, self.norm, lambda w, b: (upsample2x_phase_kernels(w), b))
        return zero_unused_phase_borders(F.relu(upsample2x_conv3x3_packed(x, kernels, bias), inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folds_upsampling(x):
            return interleave_phases(self.packed(x))
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

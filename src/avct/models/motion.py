"""Relative motion transfer (paper Eq. 3, FOMM's ``normalize_kp`` with relative movement and jacobians).

The AVCT predicts keypoints in the space of the identity it was trained on; transferring only their
*change* since the first frame onto the reference's own keypoints keeps the reference's geometry:
    value  = kp_drv − kp_init + kp_src
    J      = (J_drv · J_init⁻¹) · J_src
"""
from __future__ import annotations

import torch

from .keypoints import Keypoints


def relative_motion(kp_source: Keypoints, kp_driving: Keypoints, kp_initial: Keypoints) -> Keypoints:
    """All inputs (B or 1, K, ...); kp_initial is the driving keypoints of the first frame."""
    value = kp_driving.value - kp_initial.value + kp_source.value
    jacobian = None
    if kp_driving.jacobian is not None:
        jacobian = torch.matmul(torch.matmul(kp_driving.jacobian, torch.inverse(kp_initial.jacobian)),
                                kp_source.jacobian)
    return Keypoints(value, jacobian)

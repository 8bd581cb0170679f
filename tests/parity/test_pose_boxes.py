"""Pose-box rasterisation and its anti-aliased 64² view (parity pack §2.4)."""
import numpy as np
import torch

from avct.face.pose_box import draw_pose_box, project_box
from avct.models.avct import POSE_SCALE
from avct.models.blocks import AntiAliasInterpolation2d
from support.parity_data import golden


def test_pose_boxes_exact(parity):
    g = golden(parity, "pose_boxes.npz")
    for i, pose in enumerate(g["poses"]):
        np.testing.assert_array_equal(project_box(pose), g["points2d"][i])
        np.testing.assert_array_equal(draw_pose_box(pose), g["box256"][i])
        np.testing.assert_array_equal(draw_pose_box(pose.astype(np.float32)), g["box256_f32canvas"][i])


def test_pose_box_downsampling(parity):
    g = golden(parity, "pose_boxes.npz")
    down = AntiAliasInterpolation2d(1, POSE_SCALE)
    np.testing.assert_allclose(down.weight[0, 0].numpy(), g["aa_kernel"], atol=1e-8)
    out = down(torch.from_numpy(g["box256"]).unsqueeze(1)).numpy()
    np.testing.assert_allclose(out, g["box64"], atol=1e-3)


def test_absurd_pose_draws_blank_box():
    assert draw_pose_box(np.array([1e5, -3e5, 2e5, -4e7, 2e8, -3e7])).max() == 0
    assert draw_pose_box(np.array([np.nan, 0, 0, 0, 0, 250])).max() == 0

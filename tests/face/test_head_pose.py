"""Head pose: Euler conventions, exact/noisy recovery of synthetic poses, and real photos
(mirror -> yaw and roll flip, in-plane rotation -> roll changes by the angle, frontal face is plausible)."""
from __future__ import annotations

import functools
import itertools
import warnings

import cv2
import numpy as np
import pytest

from avct.errors import AvctError
from avct.face.crop import crop_face
from avct.face.head_pose import (MEAN_FACE, MIRROR_INDEX, estimate_head_pose, euler_to_matrix,
                                 matrix_to_euler, project_face, reference_pose)
from avct.face.image import read_image
from avct.face.landmarks import largest_face
from avct.face.pose_box import draw_pose_box, project_box

from support.shared_files import IMAGES, require


@functools.cache
def _crop256(name: str) -> np.ndarray:
    """The official-style 256² crop of a test photo (largest face)."""
    require(IMAGES / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return crop_face(read_image(IMAGES / name), source_name=name).image


# --- Euler angles -----------------------------------------------------------------------------------------

def _openface_rotation_to_euler(r: np.ndarray) -> np.ndarray:
    """OpenFace's RotationMatrix2Euler (quaternion route), transcribed as an independent check."""
    q0 = np.sqrt(1 + r[0, 0] + r[1, 1] + r[2, 2]) / 2
    q1, q2, q3 = (r[2, 1] - r[1, 2]) / (4 * q0), (r[0, 2] - r[2, 0]) / (4 * q0), (r[1, 0] - r[0, 1]) / (4 * q0)
    yaw = np.arcsin(np.clip(2 * (q0 * q2 + q1 * q3), -1, 1))
    pitch = np.arctan2(2 * (q0 * q1 - q2 * q3), q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3)
    roll = np.arctan2(2 * (q0 * q3 - q1 * q2), q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3)
    return np.array([pitch, yaw, roll])


def test_euler_matrix_is_rx_ry_rz_and_round_trips():
    rng = np.random.default_rng(0)
    for _ in range(200):
        euler = rng.uniform([-1.5, -1.4, -1.5], [1.5, 1.4, 1.5])
        r = euler_to_matrix(euler)
        axes = [cv2.Rodrigues(np.eye(3)[i] * euler[i])[0] for i in range(3)]  # elementary rotations
        np.testing.assert_allclose(r, axes[0] @ axes[1] @ axes[2], atol=1e-12)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(matrix_to_euler(r), euler, atol=1e-9)
        np.testing.assert_allclose(_openface_rotation_to_euler(r), euler, atol=1e-9)


def test_gimbal_lock_still_gives_the_same_rotation():
    r = euler_to_matrix([0.3, np.pi / 2, 0.2])
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(r)), r, atol=1e-7)


def test_sign_conventions_in_the_image():
    frontal = project_face([0, 0, 0, 0, 0, 250])
    np.testing.assert_allclose(frontal[MIRROR_INDEX, 0] - 128, -(frontal[:, 0] - 128), atol=1e-9)  # symmetric

    def nose_minus_eyes(pose):
        p = project_face(pose)
        return p[30] - (p[36] + p[45]) / 2  # nose tip relative to the outer eye corners, px

    base = nose_minus_eyes([0, 0, 0, 0, 0, 250])
    assert nose_minus_eyes([0.3, 0, 0, 0, 0, 250])[1] > base[1] + 10  # +Rx: nose drops (head down)
    assert nose_minus_eyes([0, 0.3, 0, 0, 0, 250])[0] < base[0] - 10  # +Ry: nose to the image left
    rolled = project_face([0, 0, 0.3, 0, 0, 250])
    assert rolled[45, 1] > rolled[36, 1] + 10  # +Rz: clockwise, the image-right eye goes down
    shifted = project_face([0, 0, 0, 20, 10, 250])
    assert np.all(shifted[:, 0] > frontal[:, 0]) and np.all(shifted[:, 1] > frontal[:, 1])  # +Tx right, +Ty down


def test_mean_face_is_symmetric_and_centred():
    np.testing.assert_allclose(MEAN_FACE.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(MEAN_FACE[MIRROR_INDEX] * [-1, 1, 1], MEAN_FACE, atol=1e-9)
    assert MEAN_FACE[30, 2] < MEAN_FACE[36, 2] - 25  # nose tip nearer the camera than the eyes (z away)


# --- synthetic recovery -----------------------------------------------------------------------------------

_TRANSLATIONS = [(0, 0, 250), (-30, 20, 200), (25, -15, 320), (10, 30, 180)]  # mm
SYNTHETIC_POSES = [np.array([*rot, *_TRANSLATIONS[i % 4]], dtype=np.float64)
                   for i, rot in enumerate(itertools.product((-0.5, 0.0, 0.5), repeat=3))]  # 27 poses


def test_exact_projections_are_recovered():
    """Noise-free landmarks of the model itself: measured error 5e-16 rad, 6e-14 mm."""
    for pose in SYNTHETIC_POSES:
        np.testing.assert_allclose(estimate_head_pose(project_face(pose)), pose, atol=1e-6)


@pytest.mark.parametrize("sigma, max_rad, max_mm", [(0.5, 0.02, 4.0), (1.0, 0.03, 6.0)])
def test_noisy_projections_are_recovered(sigma, max_rad, max_mm):
    """Gaussian pixel noise on every landmark, 3 draws per pose (seeded).
    Measured worst case over the 81 fits: sigma 0.5 px -> 0.0096 rad, 1.9 mm; sigma 1 px -> 0.019 rad, 3.8 mm."""
    rng = np.random.default_rng(0)
    worst_rad = worst_mm = 0.0
    for pose in SYNTHETIC_POSES:
        for _ in range(3):
            landmarks = project_face(pose) + rng.normal(0.0, sigma, (68, 2))
            err = np.abs(estimate_head_pose(landmarks) - pose)
            worst_rad, worst_mm = max(worst_rad, err[:3].max()), max(worst_mm, err[3:].max())
    assert worst_rad < max_rad and worst_mm < max_mm, (worst_rad, worst_mm)


def test_bad_landmarks_are_rejected():
    with pytest.raises(ValueError):
        estimate_head_pose(np.zeros((5, 2)))
    with pytest.raises(ValueError):
        estimate_head_pose(np.full((68, 2), np.nan))


# --- real photos ------------------------------------------------------------------------------------------

def test_frontal_face_pose_is_plausible_and_its_box_is_drawn():
    crop = _crop256("obama_frontal_facerec.jpg")
    pose = reference_pose(crop)
    rx, ry, rz, tx, ty, tz = pose
    # measured: [-0.057, -0.025, -0.007, -0.03, 24.9, 247] (OpenFace example row: Tz 246.8, Ty 26.8)
    assert max(abs(rx), abs(ry), abs(rz)) < 0.12
    assert abs(tx) < 15 and 0 < ty < 45 and 200 < tz < 300
    box = draw_pose_box(pose)
    assert set(np.unique(box)) == {0.0, 255.0} and (box > 0).sum() > 1000
    corners = project_box(pose)
    assert corners is not None and corners.min() >= 0 and corners.max() <= 255  # whole box on the canvas
    # the rear square is centred on the head position, which projects onto the face's centroid
    face = largest_face(crop, source_name="crop")
    assert np.linalg.norm(corners[:4].mean(axis=0) - face.landmarks.mean(axis=0)) < 12


MIRROR_CASES = ["biden_halfbody_facerec.jpg", "obama_podium_32bit_rgba_facerec.png",
                "painting_monalisa_liveportrait.jpg", "man_looking_up_nonfrontal_liveportrait.jpg",
                "group_6faces_insightface_t1.jpg"]


@pytest.mark.parametrize("name", MIRROR_CASES)
def test_mirrored_photo_flips_yaw_and_roll(name):
    """Measured |Ry + Ry'| <= 0.023, |Rz + Rz'| <= 0.009, |Rx - Rx'| <= 0.010 rad on these photos
    (yaws 0.13-0.30 rad, rolls up to 0.22 rad); tolerance 0.04 rad."""
    crop = _crop256(name)
    pose = reference_pose(crop)
    mirrored = reference_pose(np.ascontiguousarray(crop[:, ::-1]))
    assert abs(pose[1]) > 0.1  # a turned head, so the sign test means something
    assert np.sign(mirrored[1]) == -np.sign(pose[1])
    assert abs(pose[1] + mirrored[1]) < 0.04
    assert abs(pose[2] + mirrored[2]) < 0.04
    assert abs(pose[0] - mirrored[0]) < 0.04
    assert abs(pose[3] + mirrored[3]) < 3.0  # Tx mirrors about the image centre too (mm)


def test_mirrored_photo_flips_a_clear_roll():
    pose = reference_pose(_crop256("biden_halfbody_facerec.jpg"))
    mirrored = reference_pose(np.ascontiguousarray(_crop256("biden_halfbody_facerec.jpg")[:, ::-1]))
    assert pose[2] > 0.1 and mirrored[2] < -0.1  # measured +0.147 / -0.145


ROTATION_CASES = ["obama_frontal_facerec.jpg", "man_crop256_dreamtalk.png", "woman_crop256_dreamtalk.png",
                  "leijun_512_edtalk.png"]


@pytest.mark.parametrize("name", ROTATION_CASES)
def test_in_plane_rotation_changes_roll_by_the_angle(name):
    """cv2.getRotationMatrix2D(+θ) turns the picture counter-clockwise, so roll must drop by θ.
    Measured |ΔRz + θ| <= 0.020 rad for θ = ±10°, ±20° on these photos; tolerance 0.035 rad (2°).
    Pitch and yaw moved by <= 0.034 and <= 0.059 rad (landmark jitter); tolerance 0.08 rad."""
    crop = _crop256(name)
    base = reference_pose(crop)
    centre = tuple(float(v) for v in largest_face(crop, source_name=name).landmarks.mean(axis=0))
    for degrees in (-20, -10, 10, 20):
        matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
        rotated = cv2.warpAffine(crop, matrix, (256, 256), borderMode=cv2.BORDER_REPLICATE)
        pose = reference_pose(rotated)
        theta = np.deg2rad(degrees)
        assert abs((pose[2] - base[2]) + theta) < 0.035, (degrees, pose[2] - base[2])
        assert abs(pose[0] - base[0]) < 0.08 and abs(pose[1] - base[1]) < 0.08  # pitch/yaw barely move


def test_reference_pose_needs_a_face_and_a_256_image():
    dog = _crop256_plain("dog_256_liveportrait.jpg")
    with pytest.raises(AvctError, match="no face found in the reference image"):
        reference_pose(dog)
    with pytest.raises(ValueError):
        reference_pose(np.zeros((128, 128, 3), np.uint8))


def _crop256_plain(name: str) -> np.ndarray:
    require(IMAGES / name)
    return cv2.resize(read_image(IMAGES / name), (256, 256))

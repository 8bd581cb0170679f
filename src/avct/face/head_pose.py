"""Reference head pose in OpenFace's convention, from 68 landmarks of the 256² crop.

The official code runs OpenFace ``FeatureExtraction -pose`` on the 256² reference image (OFFICIAL.md A.5)
and only uses the result to draw the pose box that seeds the head-motion predictor. OpenFace is a
large C++ binary; here the same six numbers come from fitting a generic rigid 3-D face to dlib's 68
landmarks with ``cv2.solvePnP``, using OpenFace's default camera for 256² (camera.py).

Pose vector: ``[Rx, Ry, Rz, Tx, Ty, Tz]`` (radians, radians, radians, mm, mm, mm).

* Coordinates (camera and face model alike): x to the image's right, y down, z away from the camera.
  A model point X (mm) lands at ``X_cam = R @ X + T`` and projects to ``(fx X/Z + cx, fy Y/Z + cy)``.
* ``R = Rx(Rx) @ Ry(Ry) @ Rz(Rz)`` with the standard right-handed elementary rotations (OpenFace's
  ``Euler2RotationMatrix``, "XYZ convention"). ``R = I`` is a face looking straight into the camera.
* Signs, as seen in the image:
  ``Rx > 0``  pitch: head tilted down (nose tip moves down, towards the chin);
  ``Ry > 0``  yaw: head turned to the image's left (the subject's right; nose tip moves left);
  ``Rz > 0``  roll: face rotated clockwise in the image (top of the head moves right). Rotating a
  photo counter-clockwise by θ (``cv2.getRotationMatrix2D(c, +θ°, 1)``) lowers Rz by ≈ θ; mirroring it
  negates Ry and Rz.
* ``T`` is the position of the model's origin (centroid of its 68 points, as OpenFace's mean shape)
  in mm: Tx > 0 right of the optical axis, Ty > 0 below it, Tz the distance (≈ 200-300 mm for the face
  size of a 256² crop).

Limitations: one generic rigid face (no identity or expression fit) gives a few degrees of bias
against OpenFace on real faces (e.g. a constant pitch offset from the model's frontal definition);
only the box image drawn from this pose reaches the networks, and the pose box is coarse.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import AvctError
from ..media import IMAGE_SIZE
from .camera import FOCAL, camera_matrix
from .landmark_groups import MOUTH, MOUTH_CORNERS

# Generic mean face, 68 iBUG-300W points (x right, y down, z away from the camera; mm; centroid at 0).
# The widely used "in-the-wild" 68-point mean shape distributed with dlib/OpenCV head-pose tutorials
# (e.g. as open_face_wild_face_3D_model_68_landmarks); outer eye corners 91 mm apart, nose tip to chin
# 93 mm, nose tip 37 mm in front of the eye corners. Symmetrised below.
_RAW_MEAN_FACE = np.array([
    [-73.393523, -29.801432, 47.667532], [-72.775014, -10.949766, 45.909403],
    [-70.533638, 7.929818, 44.842580], [-66.850058, 26.074280, 43.141114],
    [-59.790187, 42.564390, 38.635298], [-48.368973, 56.481080, 30.750622],
    [-34.121101, 67.246992, 18.456453], [-17.875411, 75.056892, 3.609035],
    [0.098749, 77.061286, -0.881698], [17.477031, 74.758448, 5.181201],
    [32.648966, 66.929021, 19.176563], [46.372358, 56.311389, 30.770570],
    [57.343480, 42.419126, 37.628629], [64.388482, 25.455880, 40.886309],
    [68.212038, 6.990805, 42.281449], [70.486405, -11.666193, 44.142567],
    [71.375822, -30.365191, 47.140426],  # 0-16 jaw line (subject's right ear -> chin -> left ear)
    [-61.119406, -49.361602, 14.254422], [-51.287588, -58.769795, 7.268147],
    [-37.804800, -61.996155, 0.442051], [-24.022754, -61.033399, -6.606501],
    [-11.635713, -56.686759, -11.967398],  # 17-21 right brow (image left)
    [12.056636, -57.391033, -12.051204], [25.106256, -61.902186, -7.315098],
    [38.338588, -62.777713, -1.022953], [51.191007, -59.302347, 5.349435],
    [60.053851, -50.190255, 11.615746],  # 22-26 left brow
    [0.653940, -42.193790, -13.380835], [0.804809, -30.993721, -21.150853],
    [0.992204, -19.944596, -29.284036], [1.226783, -8.414541, -36.948060],  # 27-30 nose bridge; 30 tip
    [-14.772472, 2.598255, -20.132003], [-7.180239, 4.751589, -23.536684],
    [0.555920, 6.562900, -25.944448], [8.272499, 4.661005, -23.695741],
    [15.214351, 2.643046, -20.858157],  # 31-35 nostrils
    [-46.047290, -37.471411, 7.037989], [-37.674688, -42.730510, 3.021217],
    [-27.883856, -42.711517, 1.353629], [-19.648268, -36.754742, -0.111088],
    [-28.272965, -35.134493, -0.147273], [-38.082418, -34.919043, 1.476612],  # 36-41 right eye
    [19.265868, -37.032306, -0.665746], [27.894191, -43.342445, 0.247660],
    [37.437529, -43.110822, 1.696435], [45.170805, -38.086515, 4.894163],
    [38.196454, -35.532024, 0.282961], [28.764989, -35.484289, -1.172675],  # 42-47 left eye
    [-28.916267, 28.612716, -2.240310], [-17.533194, 22.172187, -15.934335],
    [-6.684590, 19.029051, -22.611355], [0.381001, 20.721118, -23.748437],
    [8.375443, 19.035460, -22.721995], [18.876618, 22.394109, -15.610679],
    [28.794412, 28.079924, -3.217393], [19.057574, 36.298248, -14.987997],
    [8.956375, 39.634575, -22.554245], [0.381549, 40.395647, -23.591626],
    [-7.428895, 39.836405, -22.406106], [-18.160634, 36.677899, -15.121907],  # 48-59 outer lips
    [-24.377490, 28.677771, -4.785684], [-6.897633, 25.475976, -20.893742],
    [0.340663, 26.014269, -22.220479], [8.444722, 25.326198, -21.025520],
    [24.474473, 28.323008, -5.712776], [8.449166, 30.596216, -20.671489],
    [0.205322, 31.408738, -21.903670], [-7.198266, 30.844876, -20.328022],  # 60-67 inner lips
], dtype=np.float64)  # (68, 3) mm

# A head looking straight into the camera, placed where the official crop puts a face (Ty ~ 25 mm below
# the optical axis, 250 mm away: the typical values of real crops, e.g. 0.04, 24.8, 248.0 for Obama's
# frontal portrait). Used when a picture has no face to measure.
FRONTAL_POSE = np.array([0.0, 0.0, 0.0, 0.0, 25.0, 250.0])

# Index of each point's left/right counterpart (iBUG-300W numbering), for mirroring.
MIRROR_INDEX = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


def _symmetrise(points: np.ndarray) -> np.ndarray:
    """Average a (68, 3) shape with its mirror image so that a mirrored photo gives exactly the
    mirrored pose (the raw mean face is asymmetric by up to 2.5 mm); recentred at its centroid."""
    mirrored = points[MIRROR_INDEX] * np.array([-1.0, 1.0, 1.0])
    sym = (points + mirrored) / 2
    return sym - sym.mean(axis=0)


MEAN_FACE = _symmetrise(_RAW_MEAN_FACE)  # (68, 3) mm

# Points used for the fit: jaw line, brows, nose, eyes and the two mouth corners; the other 18 lip
# points move with speech and smiles. The jaw and chin are kept although dlib puts the jaw on the
# visible silhouette (which slides as the head turns, so large yaws come out a little small): without
# them pitch rests on the nose-to-eye spacing alone, which varies between people. On 13 real
# near-frontal crops the mean Rx was +0.03 rad with this set, -0.02 with all 68 points and +0.11
# without the jaw (Obama's frontal portrait: -0.06, -0.12 and 0.00).
POSE_POINTS = np.array(list(range(0, MOUTH.start)) + list(MOUTH_CORNERS))


def euler_to_matrix(euler: np.ndarray) -> np.ndarray:
    """(3,) [Rx, Ry, Rz] radians -> (3, 3) R = Rx @ Ry @ Rz (OpenFace's Euler2RotationMatrix)."""
    rx, ry, rz = (float(v) for v in np.asarray(euler, dtype=np.float64).reshape(3))
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_x @ r_y @ r_z


def matrix_to_euler(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) [Rx, Ry, Rz] with R = Rx @ Ry @ Rz, Ry in [-pi/2, pi/2].

    From the matrix entries R[0,2] = sin Ry, R[1,2] = -sin Rx cos Ry, R[2,2] = cos Rx cos Ry,
    R[0,1] = -cos Ry sin Rz, R[0,0] = cos Ry cos Rz (same angles as OpenFace's quaternion route).
    """
    r = np.asarray(rotation, dtype=np.float64)
    ry = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    if np.hypot(r[0, 0], r[0, 1]) > 1e-9:
        rx = np.arctan2(-r[1, 2], r[2, 2])
        rz = np.arctan2(-r[0, 1], r[0, 0])
    else:  # gimbal lock (|Ry| = 90°): only Rx ± Rz is defined; put it all in Rx
        rx, rz = np.arctan2(r[2, 1], r[1, 1]), 0.0
    return np.array([rx, ry, rz])


def project_face(pose: np.ndarray, points: np.ndarray = MEAN_FACE) -> np.ndarray:
    """Image positions (N, 2) px in the 256² crop of the model ``points`` (N, 3) mm at ``pose`` (6,)."""
    pose = np.asarray(pose, dtype=np.float64).reshape(6)
    rvec, _ = cv2.Rodrigues(euler_to_matrix(pose[:3]))
    projected, _ = cv2.projectPoints(np.asarray(points, np.float64), rvec, pose[3:].reshape(3, 1),
                                     camera_matrix(), None)
    return projected.reshape(-1, 2)


def _initial_guess(object_points: np.ndarray, image_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frontal (R = I) weak-perspective start: the depth that matches the spread of the points and the
    translation that puts the model's centroid on the landmarks' centroid."""
    obj_c, img_c = object_points.mean(axis=0), image_points.mean(axis=0)  # (3,) mm, (2,) px
    spread_mm = np.sqrt(np.mean(np.sum((object_points[:, :2] - obj_c[:2]) ** 2, axis=1)))
    spread_px = np.sqrt(np.mean(np.sum((image_points - img_c) ** 2, axis=1)))
    depth = FOCAL * spread_mm / max(spread_px, 1e-6)  # mm, of the subset's centroid
    centre = IMAGE_SIZE / 2
    t = np.array([(img_c[0] - centre) * depth / FOCAL, (img_c[1] - centre) * depth / FOCAL, depth]) - obj_c
    return np.zeros((3, 1)), t.reshape(3, 1)


def _reprojection_rms(rvec: np.ndarray, tvec: np.ndarray, obj: np.ndarray, img: np.ndarray) -> float:
    projected, _ = cv2.projectPoints(obj, rvec, tvec, camera_matrix(), None)
    return float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - img) ** 2, axis=1))))


def estimate_head_pose(landmarks_256: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks in 256² crop pixels -> (6,) pose [Rx, Ry, Rz, Tx, Ty, Tz] (rad, mm).

    Two Levenberg-Marquardt fits (``SOLVEPNP_ITERATIVE``), one from the frontal weak-perspective guess,
    one from EPnP; the one with the smaller reprojection error in front of the camera wins.
    """
    landmarks = np.asarray(landmarks_256, dtype=np.float64)
    if landmarks.shape != (68, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(f"expected finite (68, 2) landmarks, got shape {landmarks.shape}")
    obj = np.ascontiguousarray(MEAN_FACE[POSE_POINTS])  # (N, 3) mm
    img = np.ascontiguousarray(landmarks[POSE_POINTS])  # (N, 2) px
    k = camera_matrix()

    starts = [_initial_guess(obj, img)]
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_EPNP)
    if ok and np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec)):
        starts.append((rvec, tvec))
    best = None
    for rvec0, tvec0 in starts:
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec0.copy(), tvec0.copy(), useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or not (np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec))) or tvec[2, 0] <= 0:
            continue
        err = _reprojection_rms(rvec, tvec, obj, img)
        if best is None or err < best[0]:
            best = (err, rvec, tvec)
    if best is None:
        raise AvctError("head pose estimation failed: the face landmarks fit no plausible head position")
    _, rvec, tvec = best
    rotation, _ = cv2.Rodrigues(rvec)
    return np.concatenate([matrix_to_euler(rotation), tvec.reshape(3)])


def format_pose(pose: np.ndarray) -> str:
    """'Rx,Ry,Rz,Tx,Ty,Tz' as ``--pose`` takes it (and ``avct pose`` prints it)."""
    return ",".join(f"{v:.6g}" for v in np.asarray(pose, dtype=np.float64).reshape(6))


def parse_pose(text: str) -> np.ndarray:
    """'Rx,Ry,Rz,Tx,Ty,Tz' -> (6,) float64."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 6 or not np.all(np.isfinite(values)):
        raise AvctError(f"--pose needs six numbers Rx,Ry,Rz,Tx,Ty,Tz (radians, mm), got {text!r}")
    return np.array(values, dtype=np.float64)


def reference_face(rgb_256: np.ndarray, *, source_name: str = "the reference image"):
    """The largest face (:class:`avct.face.landmarks.Face`) of an already-cropped (256, 256, 3) uint8
    image (the image the official code hands to OpenFace). AvctError if no face is found."""
    from .landmarks import largest_face

    if rgb_256.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"reference_pose needs a {IMAGE_SIZE}x{IMAGE_SIZE} image, got {rgb_256.shape}")
    return largest_face(rgb_256, source_name=source_name,
                        no_face_hint="the head pose needs a visible face; pass --pose Rx,Ry,Rz,Tx,Ty,Tz "
                                     f"(a frontal head: {format_pose(FRONTAL_POSE)})")


def reference_pose(rgb_256: np.ndarray, *, source_name: str = "the reference image") -> np.ndarray:
    """Pose (6,) of the largest face of an already-cropped (256, 256, 3) uint8 image."""
    return estimate_head_pose(reference_face(rgb_256, source_name=source_name).landmarks)

"""Face boxes (dlib HOG frontal detector) and 68-point landmarks (dlib's bundled iBUG-300W predictor).

The official crop uses exactly this detector (``dlib.get_frontal_face_detector()``, upsample 0), so the
crop box matches the official one for ordinary photos. Two robustness additions, both invisible for a
typical 200-2048 px photo:

* very large images are downscaled for *detection* only (the HOG pyramid on a 6000 px photo takes
  seconds, and a reference face is far larger than the 80 px the detector needs) and tiny ones are
  upscaled (the HOG window is 80x80 px, so a 64 px image could never match); boxes and landmarks are
  mapped back to the input's pixels;
* if nothing is found, detection is retried once with dlib's ``upsample_num_times=1`` (faces down to
  ~40 px), before giving up.

Coordinates are pixels of the input image with dlib's convention: integer = pixel centre; boxes are
dlib's ``(left, top, right, bottom)`` (right/bottom inclusive, as the official crop uses them).
"""
from __future__ import annotations

import functools
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import AvctError, AvctNotice, notice

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
MAX_DETECT_SIDE = 2048  # longer side of the image the detector sees (downscaled above this)
MIN_DETECT_SIDE = 200  # shorter side of the image the detector sees (upscaled below this)
# dlib's detector and predictor are shared by the process and are not thread-safe: two threads using them at
# once (the server checks an upload while a worker generates) got garbage boxes or a segmentation fault.
DLIB_LOCK = threading.Lock()


class NoFaceError(AvctError):
    """The picture holds no face the detector can find."""


class MultipleFacesWarning(AvctNotice):
    """Several faces were found and none was chosen explicitly; the largest one is used."""


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in pixels of the image it was detected in."""

    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) = dlib (left, top, right, bottom)
    landmarks: np.ndarray  # (68, 2) float64 (x, y), iBUG-300W order (0-16 jaw, 36-47 eyes, 48-67 mouth)

    @property
    def area(self) -> float:
        """Box area in px² (what "largest face" means)."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


def predictor_path() -> Path:
    """The bundled 68-point model of ``face_recognition_models``, found without importing the package
    (its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "models" / PREDICTOR_FILE
        if path.is_file():
            return path
    raise AvctError(f"face landmark model {PREDICTOR_FILE} not found: install the package "
                    "'face-recognition-models' (pip install face-recognition-models)")


@functools.lru_cache(maxsize=1)
def _models():
    """(detector, predictor), loaded once per process (the predictor file is ~100 MB)."""
    try:
        import dlib
    except ImportError:
        raise AvctError("face detection needs dlib: install the package 'dlib-bin' (pip install dlib-bin)") from None
    path = predictor_path()
    try:
        predictor = dlib.shape_predictor(str(path))
    except RuntimeError as e:
        raise AvctError(f"cannot load the face landmark model {path} ({e})") from None
    return dlib.get_frontal_face_detector(), predictor


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Grayscale (H,W) / (H,W,1), RGB and RGBA uint8 arrays -> contiguous (H,W,3) uint8 RGB."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W[, 1|3|4]) image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _detection_scale(height: int, width: int) -> float:
    """Resize factor for the detector's copy: shrink huge images, enlarge tiny ones (huge wins)."""
    scale = max(1.0, MIN_DETECT_SIDE / min(height, width))
    if max(height, width) * scale > MAX_DETECT_SIDE:
        scale = MAX_DETECT_SIDE / max(height, width)
    return scale


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """All frontal faces with their 68 landmarks, largest first ([] if none).

    ``rgb``: (H, W, 3) uint8 (grayscale / RGBA arrays are accepted too).
    """
    rgb = _as_rgb_uint8(rgb)
    detector, predictor = _models()
    height, width = rgb.shape[:2]
    scale = _detection_scale(height, width)
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    else:
        small = rgb
    with DLIB_LOCK:
        return _detect(rgb, small, scale, detector, predictor)


def _detect(rgb: np.ndarray, small: np.ndarray, scale: float, detector, predictor) -> list[Face]:
    import dlib

    rects = detector(small, 0)
    if len(rects) == 0:
        rects = detector(small, 1)  # second chance for small faces (2x internal upsampling)

    # Landmarks on the sharper of the two images: the original when the detector saw a shrunk copy.
    # Pixel-centre mapping between the two: x_orig = (x_small + 0.5) / scale - 0.5.
    land_image, land_scale = (rgb, 1.0) if scale < 1.0 else (small, scale)
    faces = []
    for r in rects:
        box = tuple(float((v + 0.5) / scale - 0.5) for v in (r.left(), r.top(), r.right(), r.bottom()))
        if land_scale == scale:
            rect = r
        else:  # the detector's box expressed in land_image pixels
            rect = dlib.rectangle(*(int(round((v + 0.5) * land_scale - 0.5)) for v in box))
        shape = predictor(land_image, rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # (68, 2) land_image px
        faces.append(Face(box=box, landmarks=(pts + 0.5) / land_scale - 0.5))
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def largest_face(rgb: np.ndarray, *, source_name: str,
                 no_face_hint: str = "pass --no-crop to use the image as it is") -> Face:
    """The largest face of ``rgb``; notes (MultipleFacesWarning) when there are several.

    Raises NoFaceError (an AvctError) naming ``source_name`` when there is none.
    """
    return select_face(rgb, "largest", source_name=source_name, no_face_hint=no_face_hint)


def select_face(rgb: np.ndarray, face: int | str = "largest", *, source_name: str,
                no_face_hint: str = "pass --no-crop to use the image as it is") -> Face:
    """The face ``face`` of ``rgb``: ``"largest"`` (a MultipleFacesWarning notice when there are
    several, since the choice may be wrong), ``"center"`` (nearest to the image centre) or an index
    counted from left to right (0 = leftmost).

    Raises AvctError naming ``source_name`` when there is no face (NoFaceError) or no face with that
    index.
    """
    faces = detect_faces(rgb)
    if not faces:
        raise NoFaceError(f"no face found in {source_name}; {no_face_hint}")
    if face == "largest":
        if len(faces) > 1:
            notice(f"{len(faces)} faces found in {source_name}; using the largest "
                   "(--face N or --face center to choose)", MultipleFacesWarning)
        return faces[0]
    if face == "center":
        height, width = np.asarray(rgb).shape[:2]
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        return min(faces, key=lambda f: float(np.linalg.norm(_box_centre(f) - centre)))
    if isinstance(face, int) and not isinstance(face, bool) and face >= 0:
        left_to_right = sorted(faces, key=lambda f: float(_box_centre(f)[0]))
        if face >= len(left_to_right):
            raise AvctError(f"--face {face} asked for, but {source_name} has {len(faces)} face(s), "
                            f"numbered 0 to {len(faces) - 1} from left to right")
        return left_to_right[face]
    raise ValueError(f"face must be 'largest', 'center' or an index >= 0, got {face!r}")


def _box_centre(face: Face) -> np.ndarray:
    x0, y0, x1, y1 = face.box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2])

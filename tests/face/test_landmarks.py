"""Face detection + landmarks on the real test images: multi-face, no-face, odd formats, odd sizes."""
from __future__ import annotations

import importlib.util
import warnings

import cv2
import numpy as np
import pytest

from avct.errors import AvctError
from avct.face import landmarks as lm
from avct.face.crop import crop_face
from avct.face.landmarks import MultipleFacesWarning, detect_faces, largest_face

from support.shared_files import IMAGES, shared_image as _image


def _box_close(a, b, frac: float) -> bool:
    """Boxes agree to within ``frac`` of the first box's width on every coordinate."""
    return bool(np.all(np.abs(np.subtract(a, b)) <= frac * (a[2] - a[0])))


def test_predictor_is_found_without_importing_face_recognition_models():
    path = lm.predictor_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.stat().st_size > 50_000_000


def test_missing_predictor_is_a_user_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AvctError, match="face-recognition-models"):
        lm.predictor_path()


def test_landmarks_lie_on_the_face():
    rgb = _image("obama_frontal_facerec.jpg")
    faces = detect_faces(rgb)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert face.landmarks.shape == (68, 2)
    # iBUG layout: eyes above the nose tip above the mouth, jaw points 0/16 left/right of the eyes
    eyes_y = face.landmarks[36:48, 1].mean()
    assert eyes_y < face.landmarks[30, 1] < face.landmarks[48:68, 1].mean() < face.landmarks[8, 1]
    assert face.landmarks[0, 0] < face.landmarks[36, 0] < face.landmarks[45, 0] < face.landmarks[16, 0]
    # inner points (brows .. mouth) inside the detector box
    inner = face.landmarks[17:]
    assert np.all((inner[:, 0] > x0) & (inner[:, 0] < x1) & (inner[:, 1] > y0 - 0.1 * (y1 - y0)) & (inner[:, 1] < y1))


@pytest.mark.parametrize("name, count", [("two_people_facerec.jpg", 2), ("group_6faces_insightface_t1.jpg", 6)])
def test_several_faces_pick_the_largest_with_a_warning(name, count):
    rgb = _image(name)
    faces = detect_faces(rgb)
    assert len(faces) == count
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    with pytest.warns(MultipleFacesWarning, match=rf"^{count} faces found in {name}; using the largest"):
        face = largest_face(rgb, source_name=name)
    assert face.area == max(areas)
    if name.startswith("group"):  # one face is clearly the largest there (126 px vs <= 105 px)
        assert face.area > 1.3 * areas[1]


@pytest.mark.parametrize("name", ["coffee_noface_skimage.png", "rocket_noface_skimage.jpg",
                                  "dog_256_liveportrait.jpg", "cameraman_gray_skimage.png"])
def test_no_face_is_a_user_error_that_suggests_no_crop(name):
    rgb = _image(name)
    assert detect_faces(rgb) == []  # really nothing for dlib, even after the upsampled retry
    with pytest.raises(AvctError) as info:
        largest_face(rgb, source_name=name)
    message = str(info.value)
    assert message == f"no face found in {name}; pass --no-crop to use the image as it is"
    assert "\n" not in message


def test_grayscale_images_do_not_crash_and_find_the_same_face():
    gray_file = _image("cameraman_gray_skimage.png")  # a grayscale file: read as 3 equal channels
    assert gray_file.shape[2] == 3 and np.array_equal(gray_file[..., 0], gray_file[..., 2])
    rgb = _image("obama_frontal_facerec.jpg")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # (H, W)
    colour_face = detect_faces(rgb)[0]
    for variant in (gray, gray[..., None], np.repeat(gray[..., None], 3, axis=2)):
        faces = detect_faces(variant)
        assert len(faces) == 1 and _box_close(colour_face.box, faces[0].box, 0.05)
        assert np.abs(faces[0].landmarks - colour_face.landmarks).mean() < 3.0


def test_rgba_photo_is_cropped():
    from PIL import Image

    name = "obama_podium_32bit_rgba_facerec.png"
    rgb = _image(name)
    assert rgb.shape[2] == 3
    cropped = crop_face(rgb, source_name=name)
    assert cropped.image.shape == (256, 256, 3)
    with Image.open(IMAGES / name) as im:
        rgba = np.asarray(im.convert("RGBA"))
    faces = detect_faces(rgba)  # a raw 4-channel array works too (alpha ignored)
    assert len(faces) == 1 and _box_close(faces[0].box, detect_faces(rgb)[0].box, 0.01)


def test_palette_image_is_cropped():
    name = "robot_palette_art6_sadtalker.png"
    rgb = _image(name)
    cropped = crop_face(rgb, source_name=name)  # the robot's face is a face for dlib
    assert cropped.image.shape == (256, 256, 3) and cropped.image.dtype == np.uint8
    assert cropped.image.std() > 10  # real content, not a blank canvas


def test_small_photo_and_tiny_thumbnail_are_detected():
    assert len(detect_faces(_image("obama_240p_small_facerec.jpg"))) == 1  # 73 px face in 427x240
    rgb = _image("obama_frontal_facerec.jpg")
    reference = detect_faces(rgb)[0]
    # 0.1x: a 91x114 thumbnail with a ~26 px face, below the detector's 80 px window without help
    scale = 0.1
    tiny = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    faces = detect_faces(tiny)
    assert len(faces) == 1
    back = (np.array(faces[0].box) + 0.5) / scale - 0.5
    assert _box_close(reference.box, back, 0.3)  # the detector box is coarse at this size (measured 0.21)
    eye_distance = np.linalg.norm(reference.landmarks[45] - reference.landmarks[36])
    back_lm = (faces[0].landmarks + 0.5) / scale - 0.5
    assert np.abs(back_lm - reference.landmarks).mean() < 0.15 * eye_distance


def test_large_photo_is_detected_at_a_reduced_size_and_mapped_back():
    rgb = _image("obama_frontal_facerec.jpg")
    reference = detect_faces(rgb)[0]
    big = cv2.resize(rgb, None, fx=3.0, fy=3.0, interpolation=cv2.INTER_LINEAR)  # 2730x3411
    assert max(big.shape) > lm.MAX_DETECT_SIDE
    faces = detect_faces(big)
    assert len(faces) == 1
    back = (np.array(faces[0].box) + 0.5) / 3.0 - 0.5
    assert _box_close(reference.box, back, 0.1)
    back_lm = (faces[0].landmarks + 0.5) / 3.0 - 0.5
    assert np.abs(back_lm - reference.landmarks).mean() < 2.0


def test_non_uint8_input_is_a_programming_error():
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((64, 64, 3), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detect_faces(np.zeros((64, 64, 3), np.uint8)) == []

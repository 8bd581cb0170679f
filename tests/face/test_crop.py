"""The official reference crop: bbox maths on hand-computed cases, landmark mapping, real photos."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from avct.face.crop import (aspect_preserved_bbox, crop_box, crop_face, crop_reference,
                            official_aspect_preserved_bbox, shifted_face_box)
from avct.face.landmarks import Face, detect_faces

from support.shared_files import shared_image as _image


@functools.cache
def _crop(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return crop_face(_image(name), source_name=name)


# --- step 2: shift up by 10 % of the height, clamp ------------------------------------------------------

def test_shift_moves_top_and_bottom_up_by_a_tenth_of_the_height():
    assert shifted_face_box((100, 100, 200, 200), 1000, 1000) == (100, 90, 200, 190)
    # height 100 -> shift 10: top 5 -> -5 -> clamped to 0; bottom 105 -> 95; x clamped to [0, 40]
    assert shifted_face_box((-5, 5, 50, 105), 1000, 40) == (0, 0, 40, 95)
    # the released code clamps y only
    assert shifted_face_box((-5, 5, 50, 105), 1000, 40, clamp_x=False) == (-5, 0, 50, 95)
    # bottom clamped to the image height after the shift: 300 - 20 = 280 > 250
    assert shifted_face_box((0, 100, 200, 300), 250, 500) == (0, 80, 200, 250)


# --- step 3: aspect-preserved growth ----------------------------------------------------------------------

def test_square_box_grows_by_half_on_every_side():
    # w = h = 100, a = 0.5: each side moves out by 50 -> a 200 px square
    assert aspect_preserved_bbox((100, 100, 200, 200), 1000, 1000) == (50, 50, 250, 250)
    assert official_aspect_preserved_bbox((100, 100, 200, 200), 1000, 1000) == (50, 50, 250, 250)


def test_wide_box_becomes_a_square_and_is_shrunk_by_its_top_overflow():
    # w = 200, h = 100: w_inc = max(.5, (2*100-200)/400 = 0) = .5 -> x: 100-100=0 .. 300+100=400
    #                   h_inc = max(.5, (2*200-100)/200 = 1.5) -> y: 100-150=-50 .. 200+150=350
    # 400x400 square, 50 px above the image -> every side moves in by 50.
    assert aspect_preserved_bbox((100, 100, 300, 200), 1000, 1000) == (50, 0, 350, 300)
    assert official_aspect_preserved_bbox((100, 100, 300, 200), 1000, 1000) == (50, 0, 350, 300)


def test_tall_box_out_of_bounds_on_three_sides_uses_the_largest_overflow():
    # w = 30, h = 60: w_inc = (120-30)/60 = 1.5 -> x: 10-45=-35 .. 40+45=85
    #                 h_inc = max(.5, 0)  = .5  -> y: 20-30=-10 .. 80+30=110  (image 100 high, 200 wide)
    # overflows: left 35, top 10, bottom 10 -> shrink by 35: (0, 25, 50, 75)
    assert aspect_preserved_bbox((10, 20, 40, 80), 100, 200) == (0, 25, 50, 75)
    assert official_aspect_preserved_bbox((10, 20, 40, 80), 100, 200) == (0, 25, 50, 75)


def test_right_overflow_is_fixed_by_default_and_ignored_by_the_released_code():
    # 40 px square at x 150..190 in a 200x200 image: grown (130, 20, 210, 100), 10 px past the right edge.
    assert aspect_preserved_bbox((150, 40, 190, 80), 200, 200) == (140, 30, 200, 90)
    # released code: right overflow measured from the detector box (190 - 200 < 0) -> not shrunk ...
    assert official_aspect_preserved_bbox((150, 40, 190, 80), 200, 200) == (130, 20, 210, 100)
    # ... and slicing clips it to a 70x80 (non-square) crop.
    shifted = (150, 44, 190, 84)  # what step 2 gives for the detector box (150, 48, 190, 88)
    assert shifted_face_box((150, 48, 190, 88), 200, 200) == shifted
    assert crop_box((150, 48, 190, 88), 200, 200, official_oob=True) == (130, 24, 200, 104)
    assert crop_box((150, 48, 190, 88), 200, 200) == (140, 34, 200, 94)


def test_fractional_boxes_truncate_toward_zero_like_int():
    # w = 10, h = 20: w_inc = (40-10)/20 = 1.5 -> x: 10.5-15 = -4.5 -> int -4 (not -5); 20.5+15 = 35.5 -> 35
    #                 h_inc = .5              -> y: 10.5-10 = 0.5 -> 0;          30.5+10 = 40.5 -> 40
    # overflow 4 (left) -> (0, 4, 31, 36)
    assert aspect_preserved_bbox((10.5, 10.5, 20.5, 30.5), 100, 100) == (0, 4, 31, 36)


def test_face_centre_outside_the_image_falls_back_to_clipping():
    # grown (-80, -20, 40, 100): shrinking by 80 would leave nothing -> the grown box clipped.
    assert aspect_preserved_bbox((-50, 10, 10, 70), 100, 100) == (0, 0, 40, 100)


def test_empty_box_is_rejected():
    with pytest.raises(ValueError):
        aspect_preserved_bbox((10, 10, 10, 50), 100, 100)


# --- crop + landmark mapping ------------------------------------------------------------------------------

def test_landmarks_are_mapped_with_the_resize_pixel_centre_convention():
    """On a float image whose channels hold the pixel's own (x, y), the crop sampled (bilinearly) at a
    mapped landmark must give back the landmark's original coordinates."""
    import cv2

    h, w = 300, 400
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.dstack([xs, ys, np.zeros_like(xs)])  # (300, 400, 3) float32
    rng = np.random.default_rng(1)
    landmarks = np.column_stack([rng.uniform(170, 230, 68), rng.uniform(130, 190, 68)])
    face = Face(box=(170.0, 130.0, 230.0, 190.0), landmarks=landmarks)
    cropped = crop_reference(ramp, face)
    assert cropped.box == (140, 94, 260, 214)  # shift up 6, grow 30 per side: 120 px square, scale 2.133
    mapped = cropped.landmarks.astype(np.float32)
    sampled = cv2.remap(cropped.image, mapped[:, 0].reshape(1, -1), mapped[:, 1].reshape(1, -1),
                        cv2.INTER_LINEAR)[0]  # (68, 3)
    # remap quantises positions to 1/32 px (<= 0.008 px here); a half-pixel slip would cost 0.27 px.
    np.testing.assert_allclose(sampled[:, :2], landmarks, atol=0.02)


REAL_FACES = ["obama_frontal_facerec.jpg", "man_crop256_dreamtalk.png",
              "astronaut_eileencollins_skimage.png", "biden_halfbody_facerec.jpg"]


@pytest.mark.parametrize("name", REAL_FACES)
def test_real_photo_crop_contains_the_whole_face(name):
    rgb = _image(name)
    cropped = _crop(name)
    assert cropped.image.shape == (256, 256, 3) and cropped.image.dtype == np.uint8
    left, top, right, bottom = cropped.box
    assert 0 <= left < right <= rgb.shape[1] and 0 <= top < bottom <= rgb.shape[0]
    assert abs((right - left) - (bottom - top)) <= 1  # square: no aspect distortion
    # every landmark inside the 256² crop with a 16 px margin (measured minimum margin: 24 px)
    assert cropped.landmarks.min() >= 16 and cropped.landmarks.max() <= 256 - 16
    # the crop really shows that face: landmarks found again on the crop agree with the mapped ones
    again = detect_faces(cropped.image)
    assert len(again) >= 1
    assert np.abs(again[0].landmarks - cropped.landmarks).mean() < 3.0


def test_crop_of_a_256_portrait_is_close_to_the_identity_scale():
    """man_crop256 is already a FOMM-style crop: the official recipe should keep the face size."""
    cropped = _crop("man_crop256_dreamtalk.png")
    left, top, right, bottom = cropped.box
    assert 220 <= right - left <= 256


def test_official_mode_matches_default_when_the_square_fits():
    rgb = _image("obama_frontal_facerec.jpg")
    face = detect_faces(rgb)[0]
    a, b = crop_reference(rgb, face), crop_reference(rgb, face, official_oob=True)
    assert a.box == b.box
    np.testing.assert_array_equal(a.image, b.image)

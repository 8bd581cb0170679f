"""The sharp full-resolution path (avct.inference.sharp): analytic motions on real photos, paste-back, sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avct.models.blocks import make_coordinate_grid
from avct.inference.options import GenerateOptions
from avct.inference.sharp import FIELD_SMOOTHING, SharpCompositor, make_canvas, upsampled_displacement
from support.shared_files import shared_image

GRID = 64


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return shared_image("obama_frontal_facerec.jpg")  # 910 x 1137, one face


def fomm_identity(b: int = 1) -> torch.Tensor:
    """The renderer's 'no motion' field: FOMM's coordinate grid (corners at ±1)."""
    return make_coordinate_grid(GRID, GRID)[None].repeat(b, 1, 1, 1)


def compose(canvas, deformation, occlusion=None, rendered=None) -> np.ndarray:
    b = len(deformation)
    rendered = torch.rand(b, 3, 256, 256) if rendered is None else rendered
    return SharpCompositor(canvas).compose(rendered, deformation, occlusion)


def outside(frame: np.ndarray, box) -> np.ndarray:
    l, t, r, b = box
    mask = np.ones(frame.shape[:2], bool)
    mask[t:b, l:r] = False
    return frame[mask]


def test_no_motion_gives_the_photo_exactly(photo):
    canvas = make_canvas(photo, (200, 150, 700, 650), GenerateOptions())
    frames = compose(canvas, fomm_identity(2), torch.ones(2, 1, GRID, GRID))
    assert frames.shape == (2, *photo.shape)
    assert np.array_equal(frames[0], photo) and np.array_equal(frames[1], photo)


def test_a_known_translation_moves_the_photo_by_that_much(photo):
    box = (200, 150, 700, 650)                      # 500 x 500 crop
    canvas = make_canvas(photo, box, GenerateOptions())
    shift_px = 12                                   # every output pixel samples the photo 12 px to its right
    field = fomm_identity()
    field[..., 0] += 2 * shift_px / 500
    frame = compose(canvas, field, torch.ones(1, 1, GRID, GRID))[0]
    l, t, r, b = box
    inner = slice(t + 60, b - 60), slice(l + 60, r - 60)  # away from the paste-back feather
    shifted = photo[t + 60:b - 60, l + 60 + shift_px:r - 60 + shift_px]
    assert np.abs(frame[inner].astype(int) - shifted).max() <= 1
    assert np.abs(frame[inner].astype(int) - photo[inner]).mean() > 5  # it did move


def test_sub_pixel_motion_reads_the_photo_as_a_bicubic_warp_would(photo):
    """A smooth field of sub-pixel shifts: the frames are within 40 dB of OpenCV's bicubic remap of the
    same photo with the same maps, and as sharp (the upsampled-once, nearest-read source of
    :class:`SharpCompositor` is a speed trick, not a filter)."""
    import cv2

    box = (200, 150, 700, 650)
    canvas = make_canvas(photo, box, GenerateOptions(crop_only=True, size="native"))
    rng = np.random.default_rng(0)
    shift = cv2.resize((rng.random((6, 6, 2)).astype(np.float32) - 0.5) * 0.02, (GRID, GRID), interpolation=cv2.INTER_CUBIC)
    frame = compose(canvas, fomm_identity() + torch.from_numpy(shift)[None], None)[0]
    compositor = SharpCompositor(canvas)
    h, w = canvas.crop_size
    displacement = upsampled_displacement(shift, (w, h))
    map_x = compositor.base_x + displacement[..., 0] * compositor.half[0]
    map_y = compositor.base_y + displacement[..., 1] * compositor.half[1]
    bicubic = cv2.remap(canvas.source, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(displacement).max() * w / 2 > 1.5                     # shifts of pixels, not nothing
    mse = np.mean((frame.astype(np.float64) - bicubic) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) >= 40

    def sharpness(image):
        return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    assert sharpness(frame) >= 0.95 * sharpness(bicubic)


def test_a_step_in_the_field_becomes_a_ramp_not_a_tear():
    """Head moving, background still, switching within one grid cell: upsampled as it is, the photo
    tears along the switch. Smoothed, the step becomes a Gaussian ramp, whose steepest slope is
    step/(σ√(2π)) per grid cell; far from it the two motions are kept."""
    step = 0.1
    shift = np.zeros((GRID, GRID, 2), np.float32)
    shift[:, GRID // 2:, 0] = step
    size = 512                                                      # 8 output pixels per grid cell
    displacement = upsampled_displacement(shift, (size, size))
    cell = size // GRID
    row = displacement[size // 2, :, 0]
    per_cell = np.abs(row[cell:] - row[:-cell]).max()                # change over one cell's width
    expected = step / (FIELD_SMOOTHING * np.sqrt(2 * np.pi))
    assert 0.85 * expected <= per_cell <= 1.1 * expected            # unsmoothed: the whole step
    far = int(4 * FIELD_SMOOTHING * size / GRID)
    assert np.abs(displacement[:, :size // 2 - far, 0]).max() < 1e-3 * step
    assert np.abs(displacement[:, size // 2 + far:, 0] - step).max() < 1e-3 * step
    assert np.abs(displacement[..., 1]).max() == 0
    assert not upsampled_displacement(np.zeros((GRID, GRID, 2), np.float32), (size, size)).any()


def test_pixels_outside_the_crop_are_untouched_and_the_seam_is_smooth(photo):
    box = (200, 150, 700, 650)
    canvas = make_canvas(photo, box, GenerateOptions())
    torch.manual_seed(0)
    field = fomm_identity(3) + 0.05 * torch.randn(3, 1, 1, 2)   # a head that moves
    frames = compose(canvas, field, torch.rand(3, 1, GRID, GRID))
    for frame in frames:
        assert np.array_equal(outside(frame, box), outside(photo, box))
        # feathered: the crop's first row/column equals the photo (weight ~0 at the edge)
        l, t, r, b = box
        assert np.abs(frame[t, l:r].astype(int) - photo[t, l:r]).max() <= 2
        assert np.abs(frame[t:b, l].astype(int) - photo[t:b, l]).max() <= 2


def test_where_the_photo_cannot_be_seen_the_renderer_draws(photo):
    box = (200, 150, 700, 650)
    canvas = make_canvas(photo, box, GenerateOptions(crop_only=True, size="native"))
    occlusion = torch.ones(1, 1, GRID, GRID)
    occlusion[..., 24:40, 24:40] = 0.0                         # a hole in the middle
    rendered = torch.zeros(1, 3, 256, 256)                     # the renderer paints it black
    frame = compose(canvas, fomm_identity(), occlusion, rendered)[0]
    assert frame.shape == (500, 500, 3)
    assert frame[230:270, 230:270].max() <= 2                  # hole: the renderer's black
    crop = photo[150:650, 200:700]
    assert np.array_equal(frame[:150], crop[:150])             # elsewhere: the photo, exactly


def test_a_face_at_the_photo_edge_pastes_back_without_a_feather_there(photo):
    h, w = photo.shape[:2]
    box = (w - 400, 0, w, 380)                                 # crop clipped by the top and right borders
    canvas = make_canvas(photo, box, GenerateOptions())
    assert canvas.feather[0, 200] == 1 and canvas.feather[200, -1] == 1   # hard edges on the border
    assert canvas.feather[200, 0] < 0.01 and canvas.feather[-1, 200] < 0.01  # soft edges inside the photo
    field = fomm_identity() + torch.tensor([0.03, -0.02])
    frame = compose(canvas, field, torch.ones(1, 1, GRID, GRID))[0]
    assert frame.shape == photo.shape
    assert np.array_equal(outside(frame, box), outside(photo, box))


def test_output_size_rules(photo):
    h, w = photo.shape[:2]
    box = (200, 150, 700, 650)
    capped = make_canvas(photo, box, GenerateOptions(max_size=600))
    assert max(capped.picture.shape[:2]) == 600 and capped.picture.shape[1] == round(w * 600 / h)
    assert capped.crop_size == (264, 264)                     # the crop scaled with the photo
    assert make_canvas(photo, box, GenerateOptions(crop_only=True)).picture.shape == (256, 256, 3)
    assert make_canvas(photo, box, GenerateOptions(crop_only=True, size=384)).picture.shape == (384, 384, 3)
    assert make_canvas(photo, box, GenerateOptions(crop_only=True, size="native")).picture.shape == (500, 500, 3)
    whole = make_canvas(photo, None, GenerateOptions())       # --no-crop: the whole photo is the crop
    assert whole.box == (0, 0, w, h) and float(whole.feather.min()) == 1.0


def test_a_6000px_photo_is_capped_before_any_full_size_work():
    big = np.zeros((4000, 6000, 3), np.uint8)
    big[1000:3000, 2000:4000] = 200
    canvas = make_canvas(big, (2000, 1000, 4000, 3000), GenerateOptions())
    assert canvas.picture.shape == (1280, 1920, 3) and canvas.crop_size == (640, 640)
    frames = compose(canvas, fomm_identity(2), torch.ones(2, 1, GRID, GRID))
    assert frames.shape == (2, 1280, 1920, 3)


# ---- with the bundled weights: real photos and clips ----------------------------------------------------
@pytest.fixture(scope="module")
def pipeline():
    from avct.weights import load_models
    from avct.weights import default_weights_dir
    from avct.inference.pipeline import Pipeline

    return Pipeline(load_models(default_weights_dir()), device="cpu")


@pytest.fixture(scope="module")
def speech_2s(tmp_path_factory):
    """Two seconds of the README's example speech."""
    from pathlib import Path

    import scipy.io.wavfile

    from avct.audio.decode import load_audio
    from avct.inference.inputs import load_speech

    decoded = load_audio(Path(__file__).resolve().parents[2] / "examples" / "speech_librivox_austen_7s.wav")
    wav = tmp_path_factory.mktemp("speech") / "speech_2s.wav"
    scipy.io.wavfile.write(wav, decoded.sample_rate, (decoded.samples[: 2 * decoded.sample_rate] * 32767).astype(np.int16))
    return wav, load_speech(wav)


def face_sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian on the largest face's box, resized to 128² (grayscale)."""
    import cv2

    from avct.face.landmarks import detect_faces

    l, t, r, b = (int(round(v)) for v in max(detect_faces(frame), key=lambda f: f.area).box)
    grey = cv2.cvtColor(frame[max(t, 0):b, max(l, 0):r], cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(cv2.resize(grey, (128, 128)), cv2.CV_64F).var())


def test_sharp_frames_are_as_sharp_as_the_photo(pipeline, data):
    """A 512² clip of a person no network saw: first frame + its own audio. The sharp path's faces keep the
    photo's sharpness (Laplacian variance ratio ≥ 0.85; a warp cannot add detail the photo lacks, and this
    clip's first frame is softer than its median frame); the classic 256² renderer's lose most of it."""
    import itertools

    from avct.inference.inputs import load_reference, load_speech
    from avct.video.reader import read_video

    clip = data / "video" / "hdtf_edmarkey_sadtalker_8s.mp4"
    photo = next(read_video(clip))
    reference, speech = load_reference(photo), load_speech(clip)
    sharp = list(itertools.islice(pipeline.frames(reference, speech), 30))
    classic = list(itertools.islice(pipeline.frames(reference, speech, options=GenerateOptions(render="classic")), 30))
    assert sharp[0].shape == photo.shape
    ratio_sharp = np.median([face_sharpness(f) for f in sharp]) / face_sharpness(photo)
    ratio_classic = np.median([face_sharpness(f) for f in classic]) / face_sharpness(photo)
    assert ratio_sharp >= 0.85, ratio_sharp
    assert ratio_classic < 0.3, ratio_classic
    # the face does move: frames differ from the photo
    assert np.mean([np.abs(f.astype(int) - photo).mean() for f in sharp[5:]]) > 0.5


def test_generate_pastes_into_the_whole_photo(pipeline, speech_2s, tmp_path, data):
    """CLI, bundled weights: full-size mp4 + PNG frames; outside the face crop every PNG is the photo."""
    from PIL import Image

    from avct.cli import main
    from avct.face.image import read_image
    from avct.inference.inputs import load_reference
    from avct.video.reader import probe_video

    image = data / "image" / "obama_frontal_facerec.jpg"          # 910 x 1137: odd height
    wav, _ = speech_2s
    out, pngs = tmp_path / "out.mp4", tmp_path / "frames"
    assert main(["generate", "--image", str(image), "--audio", str(wav), "-o", str(out), "--frames", str(pngs), "-q"]) == 0
    photo = read_image(image)
    info = probe_video(out)
    assert (info.width, info.height) == (910, 1138) and info.frame_count == speech_2s[1].num_frames
    box = load_reference(image).crop_box
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(pngs.glob("*.png"))[::10]]
    assert all(f.shape == photo.shape for f in frames)
    for frame in frames:
        assert np.array_equal(outside(frame, box), outside(photo, box))
    crop_out = tmp_path / "crop.mp4"
    assert main(["generate", "--image", str(image), "--audio", str(wav), "-o", str(crop_out), "--crop-only",
                 "--size", "native", "-q"]) == 0
    l, t, r, b = box
    assert (probe_video(crop_out).width, probe_video(crop_out).height) == (r - l - (r - l) % 2, b - t - (b - t) % 2)


@pytest.mark.parametrize("name", ["obama_podium_32bit_rgba_facerec.png", "GREY", "obama_partial_face_facerec.jpg"])
def test_odd_photos_animate_at_their_own_size(pipeline, speech_2s, name, tmp_path):
    """RGBA, greyscale (mode L) and a face cut by the photo's edge: full-size frames, photo kept outside."""
    import itertools

    from PIL import Image

    from avct.face.image import read_image
    from avct.inference.inputs import load_reference

    if name == "GREY":
        Image.fromarray(shared_image("obama_240p_small_facerec.jpg")).convert("L").save(tmp_path / "grey.png")
        photo = read_image(tmp_path / "grey.png")
    else:
        photo = shared_image(name)
    reference = load_reference(photo)
    frames = list(itertools.islice(pipeline.frames(reference, speech_2s[1]), 3))
    assert all(f.shape == photo.shape and f.dtype == np.uint8 for f in frames)
    assert np.array_equal(outside(frames[2], reference.crop_box), outside(photo, reference.crop_box))


def test_exif_rotated_photo_comes_out_the_right_way_up(tmp_path):
    from PIL import Image

    from avct.face.image import read_image

    upright = shared_image("obama_240p_small_facerec.jpg")
    sideways = np.ascontiguousarray(np.rot90(upright, k=1))      # stored rotated 90° counter-clockwise ...
    exif = Image.Exif()
    exif[0x0112] = 6                                             # ... and tagged "rotate 90° CW to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(sideways).save(path, quality=98, exif=exif)
    got = read_image(path)
    assert got.shape == upright.shape
    assert np.abs(got.astype(int) - upright).mean() < 3


def test_a_small_face_in_a_large_photo(pipeline, speech_2s):
    import itertools

    import cv2

    from avct.inference.inputs import load_reference

    face = shared_image("obama_240p_small_facerec.jpg")           # 427 x 240
    big = np.full((3000, 4500, 3), 90, np.uint8)
    big[1400:1640, 2000:2427] = face
    reference = load_reference(big)
    frames = list(itertools.islice(pipeline.frames(reference, speech_2s[1]), 2))
    assert frames[0].shape == (1280, 1920, 3)
    expected = cv2.resize(big, (1920, 1280), interpolation=cv2.INTER_AREA)
    l, t, r, b = (round(v * 1920 / 4500) for v in reference.crop_box)
    assert np.array_equal(frames[1][:t - 1], expected[:t - 1]) and np.array_equal(frames[1][:, r + 1:], expected[:, r + 1:])


@pytest.mark.parametrize("soft", [(True, True, True, True), (False, True, True, False), (False, False, False, False)])
def test_feather_strips_cover_exactly_the_soft_pixels(soft):
    from avct.inference.sharp import _strips, feather_mask

    feather = feather_mask(90, 120, soft, 10.0)
    covered = np.zeros(feather.shape, int)
    for strip in _strips(feather):
        covered[strip] += 1
    assert covered.max() <= 1 and np.array_equal(covered == 1, feather < 1)


def test_the_dense_motion_alone_is_the_renderers_own(pipeline):
    """``generator.motion`` (what the sharp output runs when it does not show the renderer's picture)
    computes the very field and occlusion map ``generator.render`` computes, for a batch of moved keypoints."""
    from avct.models.keypoints import Keypoints

    generator, detector = pipeline.models.generator, pipeline.models.keypoint_detector
    torch.manual_seed(0)
    source = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        kp_src = detector(source)
        moved = Keypoints(kp_src.value.expand(3, -1, -1) + 0.03 * torch.randn(3, 10, 2), kp_src.jacobian.expand(3, -1, -1, -1))
        encoding = generator.encode_source(source)
        full, alone = generator.render(encoding, kp_src, moved), generator.motion(encoding, kp_src, moved)
    assert set(alone) >= {"deformation", "occlusion_map"} and "prediction" not in alone
    for key in ("deformation", "occlusion_map"):
        assert alone[key].shape[0] == 3 and torch.equal(alone[key], full[key]), key
    assert (full["deformation"][1] - full["deformation"][0]).abs().max() > 1e-3  # the keypoints did move it


@pytest.mark.parametrize("fill,mouth,shown", [("auto", True, False), ("auto", False, True), ("renderer", True, True),
                                              ("photo", False, False)])
def test_the_renderers_picture_is_shown_unless_the_mouth_warp_opens_the_lips(photo, fill, mouth, shown):
    from avct.inference.sharp import shows_picture
    from avct.face.landmarks import detect_faces

    options = GenerateOptions(fill=fill)
    landmarks = max(detect_faces(photo), key=lambda f: f.area).landmarks if mouth else None
    canvas = make_canvas(photo, (200, 150, 700, 650), options, landmarks)
    assert (canvas.mouth is not None) == mouth
    assert shows_picture(options, canvas) == shown


def test_with_the_mouth_warp_the_renderers_picture_is_not_computed(pipeline, data, monkeypatch):
    """Bundled weights (lips by the mouth warp): a job runs the dense motion alone, and its frames are
    those of the full renderer's outputs composed without its picture; ``fill=renderer`` blends the
    picture in where the occlusion map asks, a small change on a real face (mean < 3 grey levels)."""
    import itertools

    from avct.inference.inputs import load_reference, load_speech

    clip = data / "video" / "retalking_face5_woman_glasses_red_5s.mp4"
    reference = load_reference(data / "image" / "obama_frontal_facerec.jpg")
    speech = load_speech(clip)
    with_picture = list(itertools.islice(pipeline.frames(reference, speech, options=GenerateOptions(fill="renderer")), 12))
    render = pipeline.models.generator.render

    def no_picture(*args, **kwargs):
        raise AssertionError("the renderer's picture was computed")

    monkeypatch.setattr(pipeline.models.generator, "render", no_picture)
    pipeline._renderers.clear()
    alone = list(itertools.islice(pipeline.frames(reference, speech), 12))
    monkeypatch.setattr(pipeline.models.generator, "render", render)
    pipeline._renderers.clear()
    assert len(alone) == 12 and alone[0].shape == with_picture[0].shape
    differences = [np.abs(a.astype(int) - b).mean() for a, b in zip(alone, with_picture)]
    assert 0 < max(differences) < 3, differences  # the picture did count where occluded, but little


def test_fill_is_checked_and_read_from_any_job_source():
    from avct.errors import AvctError

    assert GenerateOptions(fill=" Photo ").fill == "photo"
    assert GenerateOptions.from_mapping({"fill": "renderer"}).fill == "renderer"  # a form field, a CSV cell
    with pytest.raises(AvctError, match="fill must be one of auto, renderer, photo, got 'blur'"):
        GenerateOptions(fill="blur")


def test_chunks_rendered_side_by_side_give_the_sequential_outputs(pipeline, speech_2s, data, monkeypatch):
    """A job's frames render in worker threads, a chunk each (on a CPU with 2+ threads: two workers with
    half the intra-op threads each): the same dense motion as the plain sequence of batches, in order."""
    import threading

    from avct.inference.devices import render_threads
    from avct.inference.inputs import load_reference
    from avct.inference.schedule import chunk_bounds, parallel_render_outputs

    reference = load_reference(data / "image" / "obama_frontal_facerec.jpg")
    _, speech = speech_2s
    sequential = list(pipeline.render_outputs(reference, speech, picture=False))
    seen = []
    render_batch = pipeline.render_batch

    def recording(*args, **kwargs):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return render_batch(*args, **kwargs)

    monkeypatch.setattr(pipeline, "render_batch", recording)
    parallel = list(parallel_render_outputs(pipeline, reference, speech, picture=False))
    assert [len(o["deformation"]) for o in parallel] == [len(o["deformation"]) for o in sequential]
    for a, b in zip(parallel, sequential):
        assert torch.allclose(a["deformation"], b["deformation"], atol=1e-5, rtol=0)
    workers, intra_op = render_threads(torch.device("cpu"))
    assert {name for name, _ in seen} == {"avct-worker"}
    assert {threads for _, threads in seen} == {intra_op}
    assert workers == (2 if torch.get_num_threads() >= 2 else 1)
    # 50 frames: the first alone, one batch, then doubling, the tail halved for two workers
    assert chunk_bounds(50, 8, 64) == [(0, 1), (1, 9), (9, 25), (25, 41), (41, 49), (49, 50)]
    assert chunk_bounds(750, 8, 64)[4] == (57, 121) and chunk_bounds(750, 8, 64)[-1][1] == 750


def test_motion_every_other_frame_is_the_per_frame_motion_on_keys_and_the_mean_between(pipeline, speech_2s, data):
    """motion_step 2 (the default without the renderer's picture): the networks run on even frames (and
    the last, tested in test_key_frames); the frames between get the mean of their neighbours' fields. With the renderer's picture
    every frame is computed."""
    from avct.inference.inputs import load_reference

    reference = load_reference(data / "image" / "obama_frontal_facerec.jpg")
    _, speech = speech_2s
    n = speech.num_frames

    def fields(step: int, picture: bool = False) -> torch.Tensor:
        outs = pipeline.render_outputs(reference, speech, options=GenerateOptions(motion_step=step), picture=picture)
        return torch.cat([o["deformation"] for o in outs])

    every, halved = fields(1), fields(2)
    assert len(every) == len(halved) == n == 49  # frames 0, 2, ..., 48 are keys
    assert torch.allclose(halved[::2], every[::2], atol=1e-5, rtol=0)
    between = (every[0:n - 2:2] + every[2:n:2]) / 2
    assert torch.allclose(halved[1:n - 1:2], between, atol=1e-5, rtol=0)
    assert (halved[1:n - 1:2] - every[1:n - 1:2]).abs().max() > 1e-4  # the mean is not the per-frame field
    assert torch.allclose(fields(2, picture=True), fields(1, picture=True), atol=1e-5, rtol=0)


def test_motion_step_is_checked():
    from avct.errors import AvctError

    assert GenerateOptions.from_mapping({"motion-step": "1"}).motion_step == 1
    with pytest.raises(AvctError, match="motion_step must be between 1 and 4, got 0"):
        GenerateOptions(motion_step=0)

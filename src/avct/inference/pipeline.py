"""The inference pipeline: one place that wires the stages (paper Fig. 2).

    reference image ─► keypoint detector ─► kp_src, feature map ──────────────┐
                     └► renderer source encoding ─────────────────────────────┤
    audio ─► features, phonemes ─► head motion ─► poses ─► pose boxes          │
                              └─► AVCT tokens per frame ─► 11-frame windows ─► kp per frame
                                                    relative transfer ─► renderer ─► frames

Everything that depends only on the reference (keypoints, feature map, source encoding) is computed
once; per-frame AVCT tokens are computed once and the window slides over them; windows and frames run
in batches. ``frames()`` is a generator, so the video writer consumes frames as they are produced.
"""
from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..audio.phonemes import frame_phoneme_ids
from ..errors import AvctError
from ..face.image import read_image, resize_256, to_tensor
from ..face.pose_box import draw_pose_box
from ..media import FPS, ROWS_PER_FRAME
from ..models.keypoints import Keypoints
from ..models.motion import relative_motion
from ..weights.store import AvctModels, load_models
from .backends import renderer_for, resolve_backend
from .devices import keep_large_allocations_in_heap, resolve_device, resolve_precision
from .key_frames import interpolate, key_frames
from .prefetch import parallel_map
from .options import DEFAULT_BACKEND, DEFAULT_BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_PRECISION, GenerateOptions
from .sharp import SharpCompositor, compose_frames, make_canvas, shows_picture
from .tokens import DecoderAhead, FrameTokens, decoder_tokens_ahead, window_tokens

if TYPE_CHECKING:
    from ..audio.frontend_process import FrontendProcess



@dataclass
class Reference:
    """The reference face: (1, 3, 256, 256) float image in [0, 1] and its head pose
    ``[Rx, Ry, Rz (rad), Tx, Ty, Tz (mm)]`` (OpenFace convention); the photo it was cut from, at its own
    resolution, and where (``crop_box``, None when the whole photo is the crop), for the sharp output."""

    image: torch.Tensor
    pose: np.ndarray
    crop_box: tuple[int, int, int, int] | None = None
    photo: np.ndarray | None = None  # (H, W, 3) uint8 RGB
    landmarks: np.ndarray | None = None  # (68, 2) the face's landmarks in ``photo`` pixels (None: not detected)

    def full_photo(self) -> np.ndarray:
        """The photo, or the 256² crop itself for a Reference built without one."""
        if self.photo is not None:
            return self.photo
        return (self.image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@dataclass
class Speech:
    """Acoustic features (T, 41) at 100 Hz and phoneme ids at 25 fps."""

    features: np.ndarray
    phonemes: np.ndarray
    ahead: DecoderAhead | None = None  # AVCT decoder tokens computed while the phonemes were recognised

    @property
    def num_frames(self) -> int:
        return min(len(self.features) // ROWS_PER_FRAME, len(self.phonemes))

    def frame_rows(self) -> np.ndarray:
        """The features of each frame, (num_frames, 4, 41)."""
        n = self.num_frames
        return self.features[: n * ROWS_PER_FRAME].reshape(n, ROWS_PER_FRAME, -1)


def parse_pose(text: str) -> np.ndarray:
    """'Rx,Ry,Rz,Tx,Ty,Tz' -> (6,) float64."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 6 or not np.all(np.isfinite(values)):
        raise AvctError(f"--pose needs six numbers Rx,Ry,Rz,Tx,Ty,Tz (radians, mm), got {text!r}")
    return np.array(values, dtype=np.float64)


def load_reference(image: str | os.PathLike | np.ndarray, *, crop: bool = True,
                   pose: np.ndarray | None = None, face: int | str = "largest") -> Reference:
    """Read (and by default crop around face ``face``, see ``select_face``) the reference photo;
    estimate its head pose unless given.

    A picture without a face the detector can find (a dog, a drawing) is animated whole, resized to
    256² as with ``crop=False``, from a frontal head pose, with a notice: the renderer warps any picture,
    and refusing would only send the user through ``--no-crop`` and ``--pose`` by hand."""
    from ..face.landmarks import NoFaceError

    rgb = read_image(image) if not isinstance(image, np.ndarray) else image
    name = str(image) if not isinstance(image, np.ndarray) else "the image"
    crop_box, landmarks, photo_landmarks, faceless = None, None, None, False
    if crop:
        from ..face.crop import crop_reference
        from ..face.landmarks import select_face

        try:
            chosen = select_face(rgb, face, source_name=name)
            cropped = crop_reference(rgb, chosen)
            rgb_256, crop_box, landmarks = cropped.image, cropped.box, cropped.landmarks
            photo_landmarks = chosen.landmarks
        except NoFaceError:
            rgb_256, faceless = resize_256(rgb), True
    else:
        rgb_256 = resize_256(rgb)
    if pose is None and not faceless:
        from ..face.head_pose import estimate_head_pose, reference_face

        try:
            if landmarks is None:  # --no-crop: the face of the whole picture at 256², back in photo pixels
                landmarks = reference_face(rgb_256, source_name=name).landmarks
                scale = np.array([rgb.shape[1], rgb.shape[0]]) / np.array(rgb_256.shape[1::-1])
                photo_landmarks = (landmarks + 0.5) * scale - 0.5
            pose = estimate_head_pose(landmarks)
        except NoFaceError:
            faceless = True
    if faceless:
        pose = _faceless_pose(name, pose)
    return Reference(to_tensor(rgb_256), np.asarray(pose, dtype=np.float64), crop_box, rgb, photo_landmarks)


def load_job_reference(image: str | os.PathLike | np.ndarray, options: GenerateOptions) -> Reference:
    """:func:`load_reference` with a job's options (crop, pose, face)."""
    pose = None if options.pose is None else np.asarray(options.pose, dtype=np.float64)
    return load_reference(image, crop=options.crop, pose=pose, face=options.face)


def _faceless_pose(name: str, pose: np.ndarray | None) -> np.ndarray:
    """The notice for a picture without a face, and its pose: the given one, else a frontal head."""
    from ..errors import notice
    from ..face.head_pose import FRONTAL_POSE, format_pose

    if pose is not None:
        notice(f"no face found in {name}; animating the whole picture")
        return pose
    notice(f"no face found in {name}; animating the whole picture from a frontal head pose "
           f"{format_pose(FRONTAL_POSE)} (--pose Rx,Ry,Rz,Tx,Ty,Tz to set another)")
    return FRONTAL_POSE.copy()


def load_speech(audio: str | os.PathLike, *, phonemes: str | os.PathLike | None = None,
                transcript: str | None = None, f0: str = GenerateOptions.f0,
                on_progress: Callable[[float], None] | None = None,
                on_decoded: Callable[[float], None] | None = None,
                running: "FrontendProcess | None" = None,
                while_waiting: Callable[[np.ndarray, threading.Event], None] | None = None) -> Speech:
    """Decode any audio to 16 kHz, compute the 41-d features and the per-frame phonemes
    (from the official JSON if given, else recognised offline, beside the features).

    ``f0``: "fast" or "official" F0 (:mod:`avct.audio.features`). ``on_progress(fraction)``: the share
    of the front-end done, increasing, ending at 1.0 (may be called from a worker thread).
    ``on_decoded(seconds)``: called once the audio is decoded, with its duration. ``running``: the
    same front-end already started in a process of its own (:mod:`avct.audio.frontend_process`), whose
    result is taken instead (the other arguments but ``audio`` then describe it and are not used);
    ``while_waiting(features, stop)``: work to do in a thread of this process while ``running`` still
    recognises phonemes after the features are known (see FrontendProcess.result)."""
    if running is not None:
        features, words = running.result(on_progress=on_progress, on_decoded=on_decoded,
                                         while_waiting=while_waiting)
    else:
        from ..audio.frontend import speech_front_end

        features, words = speech_front_end(audio, phonemes=phonemes, transcript=transcript, f0=f0,
                                           on_progress=on_progress, on_decoded=on_decoded)
    speech = Speech(features.astype(np.float32), np.asarray(frame_phoneme_ids(words), dtype=np.int64))
    if speech.num_frames == 0:
        raise AvctError(f"audio {audio} is shorter than one video frame (40 ms)")
    return speech


class Pipeline:
    """Talking-head generation with loaded networks. ``Pipeline.from_checkpoint(path).generate(img, wav, out)``."""

    def __init__(self, models: AvctModels, device: str | torch.device | None = DEFAULT_DEVICE,
                 precision: str = DEFAULT_PRECISION, batch_size: int = DEFAULT_BATCH_SIZE, channels_last: bool = True,
                 compile: bool = False, tune_allocator: bool = True, backend: str = DEFAULT_BACKEND):
        """``tune_allocator``: on the CPU, let glibc keep large tensors in its heap
        (:func:`~avct.inference.devices.keep_large_allocations_in_heap`, process-wide, ~20% faster); off, the
        process keeps the default allocator (the benchmark's per-frame baseline, as the official code runs).
        ``backend``: the renderer's runtime, :mod:`avct.inference.backends` (auto, torch, openvino,
        openvino-int8); ``self.backend`` is the one in use (``auto`` resolved)."""
        models.require("keypoint_detector", "generator", "avct", "head_motion")
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.dtype = resolve_precision(precision, self.device)
        self.batch_size = max(1, int(batch_size))
        if self.device.type == "cpu" and tune_allocator:
            keep_large_allocations_in_heap()
        self.models = models.eval()
        # Precision policy: the renderer (nearly all the work per frame) runs in `precision` and keeps its
        # geometry fp32 itself; the AVCT stays fp32 (in bf16 its keypoints drift enough to cost ~20 dB
        # of PSNR, measured), as do the keypoint detector (once per video) and the head-motion LSTM.
        self.avct_dtype = torch.float32
        models.keypoint_detector.to(self.device, torch.float32)
        models.head_motion.to(self.device, torch.float32)
        models.avct.to(self.device, self.avct_dtype)
        models.generator.to(self.device, self.dtype)
        if channels_last and self.device.type != "mps":
            models.generator.to(memory_format=torch.channels_last)  # ~1.7x on CPU (oneDNN), also good on GPU
            models.avct.to(memory_format=torch.channels_last)       # its per-frame token CNNs: ~1.3x on CPU
        if compile and backend == "auto":
            backend = "torch"
        # auto is resolved at first need (it hashes the weights, 0.4 s, which a job that runs the dense
        # motion alone never needs); a named backend is checked now
        self._backend = resolve_backend(backend, models.generator, models.keypoint_detector, self.device,
                                        self.dtype) if backend != "auto" else None
        self.compiled = compile
        if compile and self._backend != "torch":
            raise AvctError("--compile is for the torch backend; the openvino backends compile their own graph")
        if compile:  # inductor with frozen weights (GPU: ~1.3x; CPU: on par with the eager folds, benchmarks/speed.py)
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        self._renderers: dict[bool, Callable] = {}  # picture -> render callable, built at first use

    @property
    def backend(self) -> str:
        """The renderer's runtime in use (:mod:`avct.inference.backends`; ``auto`` resolved)."""
        if self._backend is None:
            self._backend = resolve_backend("auto", self.models.generator, self.models.keypoint_detector,
                                            self.device, self.dtype)
        return self._backend

    def _renderer(self, picture: bool) -> Callable:
        """The backend's render callable, with the renderer's picture or the dense motion alone; built
        (an OpenVINO graph compiled, a torch graph traced) the first time a job needs it."""
        if picture not in self._renderers:
            render = renderer_for(self.models.generator, self.models.keypoint_detector, self.backend, self.device,
                                  self.dtype, picture)
            self._renderers[picture] = torch.compile(render, dynamic=False) if self.compiled else render
        return self._renderers[picture]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> "Pipeline":
        return cls(load_models(path), **kwargs)

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | os.PathLike | None] | None = None, **kwargs) -> "Pipeline":
        """Networks from several sources, later ones adding or overriding (official checkpoints, avct
        weights, training runs); no paths, or ``default``: the weights bundled with avct."""
        from ..weights.store import merge_models
        from ..weights.bundled import resolve_checkpoint

        return cls(merge_models([load_models(resolve_checkpoint(p)) for p in paths or [None]]), **kwargs)

    # ---- stages ------------------------------------------------------------------------------
    def head_poses(self, reference: Reference, speech: Speech) -> np.ndarray:
        """(N, 6) de-normalised poses, row i for frame i (row 0 from the reference pose box alone)."""
        hm, n = self.models.head_motion, speech.num_frames
        box = torch.from_numpy(draw_pose_box(reference.pose.astype(np.float32)))[None, None].to(self.device)
        audio = torch.from_numpy(speech.frame_rows())
        with torch.inference_mode():
            first, h, state = hm.initial_state(box)
            raw = [first[:, None]]
            for s in range(0, n - 1, 256):  # the LSTM is causal: only chunks before the last frame matter
                out, h, state = hm.step(audio[None, s:min(s + 256, n - 1)].to(self.device), h, state)
                raw.append(out)
            poses = hm.denormalize(torch.cat(raw, dim=1))[0]
        return poses.float().cpu().numpy()

    def driving_keypoints(self, speech: Speech, poses: np.ndarray, feature_map: torch.Tensor,
                          start: int, stop: int, *, silent: bool = False,
                          frames: np.ndarray | None = None, tokens: FrameTokens | None = None) -> Keypoints:
        """AVCT keypoints of frames [start, stop) from windows over per-frame tokens (``silent``: with
        every frame's speech replaced by silence, see :func:`~avct.inference.tokens.window_tokens`; ``frames``: only these frames of
        [start, stop), in order; ``tokens``: the job's token cache, else computed here)."""
        avct = self.models.avct
        w = avct.cfg.num_w
        positions = np.arange(start - w, stop + w)
        if tokens is not None and not silent:
            enc, dec = tokens.get(positions)                                    # (stop-start+2w, D)
        else:
            enc, dec = window_tokens(avct, positions, speech.phonemes, speech.frame_rows(), poses, feature_map,
                                     self.device, self.avct_dtype, silent=silent)
        win = 2 * w + 1
        enc_w = enc.unfold(0, win, 1).permute(0, 2, 1)                         # (stop-start, 11, D)
        dec_w = dec.unfold(0, win, 1).permute(0, 2, 1)
        if frames is not None:
            picked = torch.from_numpy(np.asarray(frames) - start)
            enc_w, dec_w = enc_w[picked], dec_w[picked]                         # (len(frames), 11, D)
        outs = [avct.head(avct.correlate(enc_w[i:i + self.batch_size * 4], dec_w[i:i + self.batch_size * 4]))
                for i in range(0, len(enc_w), self.batch_size * 4)]
        return Keypoints.cat(outs)

    def controlled_head_poses(self, reference: Reference, speech: Speech,
                              options: GenerateOptions | None = None) -> np.ndarray:
        """(N, 6) head poses of a job: :meth:`head_poses` with the motion controls of ``options``
        (still, pose_scale, pose_from; :mod:`avct.inference.motion_controls`)."""
        from .motion_controls import driving_poses

        return driving_poses(options or GenerateOptions(), reference.pose, speech.num_frames,
                             lambda: self.head_poses(reference, speech))

    def _mouth_scaled_keypoints(self, speech: Speech, poses: np.ndarray, feature_map: torch.Tensor,
                                frames: np.ndarray, mouth_scale: float, tokens: FrameTokens | None = None) -> Keypoints:
        """Driving keypoints of ``frames`` (increasing) with the speech-caused motion scaled (the silent
        pass runs only when ``mouth_scale != 1``, so 1 is exactly the plain prediction)."""
        start, stop = int(frames[0]), int(frames[-1]) + 1
        picked = None if len(frames) == stop - start else frames
        kp = self.driving_keypoints(speech, poses, feature_map, start, stop, frames=picked, tokens=tokens)
        if mouth_scale == 1.0:
            return kp
        from .motion_controls import scale_mouth

        silent = self.driving_keypoints(speech, poses, feature_map, start, stop, silent=True, frames=picked)
        return scale_mouth(kp, silent, mouth_scale)

    def predictions(self, reference: Reference, speech: Speech, chunk: int = 64, *,
                    options: GenerateOptions | None = None) -> Iterator[torch.Tensor]:
        """Yield batches of rendered frames (B, 3, 256, 256), float in [0, 1], in order, with the
        motion controls of ``options`` (default: none)."""
        for out in self.render_outputs(reference, speech, chunk, options=options):
            yield out["prediction"]

    def render_outputs(self, reference: Reference, speech: Speech, chunk: int = 64, *,
                       options: GenerateOptions | None = None, picture: bool = True) -> Iterator[dict]:
        """Yield the renderer's outputs batch by batch, in order: ``prediction`` (B, 3, 256, 256) in
        [0, 1] (not with ``picture=False``: the dense motion alone), ``deformation`` (B, 64, 64, 2) and
        ``occlusion_map`` (B, 1, 64, 64) when the weights have one; motion controls from ``options``."""
        for job in self._render_jobs(reference, speech, chunk, options, picture):
            yield from job()

    def _parallel_render_outputs(self, reference: Reference, speech: Speech, chunk: int = 64, *,
                                 options: GenerateOptions | None = None, picture: bool = True) -> Iterator[dict]:
        """:meth:`render_outputs` computed ahead of the consumer in worker threads, a chunk of frames
        each (the same outputs): on a CPU two, each with half the intra-op threads
        (:func:`~avct.inference.devices.render_threads`), where the renderer may be called from two
        threads at once (eager torch; one OpenVINO request or a compiled graph runs alone)."""
        from .devices import render_threads

        concurrent = not self.compiled and (not picture or self.backend == "torch")  # eager torch renders
        workers, intra_op = render_threads(self.device, concurrent)
        self._renderer(picture)  # built here, not by two workers at once
        stop = threading.Event()  # set when the consumer leaves: the workers drop their chunks' other batches
        chunks = parallel_map(lambda job: job(stop), self._render_jobs(reference, speech, chunk, options, picture),
                              workers=workers, initializer=lambda: torch.set_num_threads(intra_op))
        try:
            for outputs in chunks:
                yield from outputs
        finally:
            stop.set()
            chunks.close()

    def _render_jobs(self, reference: Reference, speech: Speech, chunk: int, options: GenerateOptions | None,
                     picture: bool) -> list[Callable[[threading.Event | None], list[dict]]]:
        """The rendering of a job as independent jobs, in order, each rendering a chunk of frames (its
        keypoints, then its batches; no more batches once the event it is given is set) when called, in
        any thread. What depends on the whole job (poses, the reference's encoding, the first frame's
        keypoints, which all motion is relative to, the token cache the chunks share) is computed here,
        in the caller's thread. Chunks as :func:`chunk_bounds`; without the picture, the motion of every
        ``options.motion_step``-th frame only (:mod:`avct.inference.key_frames`)."""
        from .motion_controls import head_scale, scale_common_translation

        n = speech.num_frames
        if n <= 0:
            raise AvctError("audio is shorter than one video frame (40 ms)")
        options = options or GenerateOptions()
        poses = self.controlled_head_poses(reference, speech, options)
        keep_head = head_scale(options)
        step = 1 if picture else options.motion_step  # the picture, when shown, comes from every frame

        def keypoints(frames: np.ndarray) -> Keypoints:
            return self._mouth_scaled_keypoints(speech, poses, feature_map, frames, options.mouth_scale,
                                                tokens).to(torch.float32)

        with torch.inference_mode():
            ahead = speech.ahead
            usable = ahead is not None and ahead.pipeline is self and ahead.reference is reference
            kp_src, feature_map, source = self._encode_reference(reference, ahead.detected if usable else None)
            tokens = FrameTokens(self.models.avct, speech.phonemes, speech.frame_rows(), poses, feature_map,
                                 self.device, self.avct_dtype, ahead.tokens if usable else None)
            kp_initial = keypoints(np.arange(1))

        def job(start: int, stop: int) -> Callable[[threading.Event | None], list[dict]]:
            def render(cancelled: threading.Event | None = None) -> list[dict]:
                keys = key_frames(start, stop, n, step)  # [start, stop) itself when step is 1
                with torch.inference_mode():  # a thread's state: entered in the thread that renders
                    kp_drv = kp_initial if len(keys) == 1 and keys[0] == 0 else keypoints(keys)
                    if keep_head != 1.0:
                        kp_drv = scale_common_translation(kp_drv, kp_initial, keep_head)
                    kp_norm = relative_motion(kp_src, kp_drv, kp_initial)
                outputs = []
                for b in range(0, len(keys), self.batch_size):
                    if cancelled is not None and cancelled.is_set():
                        return outputs if step == 1 else []
                    outputs.append(self._render_batch(source, kp_src, kp_norm[b:b + self.batch_size], picture))
                if step == 1:
                    return outputs
                at_keys = {name: torch.cat([out[name] for out in outputs]) for name in outputs[0]}
                frames = interpolate(at_keys, keys, start, stop)
                return [{name: value[b:b + self.batch_size] for name, value in frames.items()}
                        for b in range(0, stop - start, self.batch_size)]
            return render

        return [job(start, stop) for start, stop in chunk_bounds(n, self.batch_size, chunk)]

    def _encode_reference(self, reference: Reference, detected=None):
        """What depends on the reference only, once per video: its keypoints, the AVCT's keypoint
        feature map and the renderer's source encoding (call under inference mode; ``detected``: the
        keypoint detector's output on it, if already computed)."""
        image = reference.image.to(self.device, torch.float32)
        detected = detected if detected is not None else self.models.keypoint_detector.detect(image)
        source = self.models.generator.encode_source(image)
        return detected.keypoints, detected.feature_map.to(self.avct_dtype), source

    def decoder_tokens_ahead(self, reference: Reference, features: np.ndarray, stop: threading.Event) -> DecoderAhead:
        """The AVCT decoder's tokens of the first frames of speech ``features`` (T, 41) with ``reference``,
        computed until ``stop`` is set: they need no phonemes, so a job computes them while the recogniser
        still runs (``load_speech(while_waiting=)``) and its frames need fewer."""
        with torch.inference_mode():
            detected = self.models.keypoint_detector.detect(reference.image.to(self.device, torch.float32))
        n = len(features) // ROWS_PER_FRAME
        rows = features[: n * ROWS_PER_FRAME].reshape(n, ROWS_PER_FRAME, -1)
        tokens = decoder_tokens_ahead(self.models.avct, rows, detected.feature_map.to(self.avct_dtype), self.device,
                                      self.avct_dtype, stop)
        return DecoderAhead(self, reference, detected, tokens)

    def _render_batch(self, source, kp_src: Keypoints, kp_driving: Keypoints, picture: bool = True) -> dict:
        n = len(kp_driving.value)
        if self.compiled and n < self.batch_size:  # one static shape: pad rather than recompile
            pad = self.batch_size - n
            kp_driving = Keypoints(torch.cat([kp_driving.value, kp_driving.value[-1:].expand(pad, -1, -1)]),
                                   torch.cat([kp_driving.jacobian, kp_driving.jacobian[-1:].expand(pad, -1, -1, -1)]))
        with torch.inference_mode():
            out = self._renderer(picture)(source, kp_src, kp_driving)
            return {key: out[key][:n].float() for key in ("prediction", "deformation", "occlusion_map") if key in out}

    @staticmethod
    def _to_uint8(pred: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8 RGB (truncation as the official code)."""
        return (pred.permute(0, 2, 3, 1) * 255).to(torch.uint8).cpu().numpy()

    def still_frame(self, reference: Reference) -> np.ndarray:
        """The renderer's picture of the reference driven by its own keypoints, (256, 256, 3) uint8: what
        these weights draw when nothing moves, the baseline that separates image quality from motion."""
        with torch.inference_mode():
            kp_src, _, source = self._encode_reference(reference)
            return self._to_uint8(self._render_batch(source, kp_src, kp_src)["prediction"])[0]

    def frames(self, reference: Reference, speech: Speech, chunk: int = 64, *,
               options: GenerateOptions | None = None) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 RGB frames, one per 40 ms of speech: by default the whole photo with
        the face animated at the photo's resolution (:mod:`avct.inference.sharp`); ``render="classic"``: the
        renderer's own 256² crops, the official output."""
        options = options or GenerateOptions()
        if options.render == "classic":
            for pred in self.predictions(reference, speech, chunk, options=options):
                yield from self._to_uint8(pred)
            return
        lips = self.models.lip_aperture is not None and reference.landmarks is not None
        canvas = make_canvas(reference.full_photo(), reference.crop_box, options,
                             reference.landmarks if lips else None)
        openings = self.mouth_openings(speech, canvas.mouth, options) if canvas.mouth is not None else None
        outputs = self._parallel_render_outputs(reference, speech, chunk, options=options,
                                                picture=shows_picture(options, canvas))
        yield from compose_frames(SharpCompositor(canvas), outputs, openings)

    def lip_apertures(self, speech: Speech) -> np.ndarray:
        """(num_frames,) the lip-aperture network's prediction for every frame (inter-ocular units)."""
        self.models.require("lip_aperture")
        n = speech.num_frames
        rows = torch.from_numpy(speech.features[: n * ROWS_PER_FRAME])
        return self.models.lip_aperture.predict(rows, torch.from_numpy(speech.phonemes[:n])).numpy().astype(np.float64)

    def mouth_openings(self, speech: Speech, mouth, options: GenerateOptions) -> np.ndarray:
        """(num_frames,) how far to open the photo's mouth in each frame, in the canvas' source pixels:
        the predicted aperture, at rest in the speech's pauses, as a change from the photo's own
        (:func:`avct.inference.mouth_opening.aperture_plan`), times ``mouth_scale``."""
        from .mouth_opening import aperture_plan

        change = aperture_plan(self.lip_apertures(speech), speech.features, mouth.aperture) * options.mouth_scale
        return change * mouth.pixels_per_aperture()

    def reenact(self, reference: Reference, driving: Iterable[np.ndarray], *, apertures: np.ndarray | None = None,
                options: GenerateOptions | None = None) -> Iterator[np.ndarray]:
        """The reference moved as a video moves, one uint8 frame per driving frame (256² RGB uint8): the
        keypoint detector on each driving frame, transferred relative to the first (Eq. 3).
        With a video's own first frame as the reference this is the renderer's reconstruction of the video,
        the best any motion model can get out of this renderer (``scripts/lip_reconstruction.py``).

        Default: the renderer's own 256² pictures. With ``options`` (``render="sharp"``) the frames go
        through the sharp output like :meth:`frames`, and ``apertures`` (the driving frames' own lip
        apertures, :func:`avct.face.landmark_groups.aperture_curve`) open the photo's mouth in place of the
        lip-aperture network's prediction."""
        def outputs(picture: bool = True) -> Iterator[dict]:
            with torch.inference_mode():
                kp_src, _, source = self._encode_reference(reference)
                kp_initial = None
                for chunk in _chunks(driving, self.batch_size):
                    images = torch.cat([to_tensor(np.ascontiguousarray(f)) for f in chunk]).to(self.device, torch.float32)
                    kp_drv = self.models.keypoint_detector(images).to(torch.float32)
                    if kp_initial is None:
                        kp_initial = kp_drv[0:1]
                    yield self._render_batch(source, kp_src, relative_motion(kp_src, kp_drv, kp_initial), picture)

        if options is None or options.render == "classic":
            for out in outputs():
                yield from self._to_uint8(out["prediction"])
            return
        canvas = make_canvas(reference.full_photo(), reference.crop_box, options,
                             reference.landmarks if apertures is not None else None)
        openings = None
        if canvas.mouth is not None:
            change = np.nan_to_num(np.asarray(apertures, np.float64) - canvas.mouth.aperture) * options.mouth_scale
            openings = change * canvas.mouth.pixels_per_aperture()
        yield from compose_frames(SharpCompositor(canvas), outputs(shows_picture(options, canvas)), openings)

    # ---- one call --------------------------------------------------------------------------------
    def write_video(self, reference: Reference, speech: Speech, output: str | os.PathLike,
                    audio_path: str | os.PathLike | None, *, options: GenerateOptions | None = None,
                    frames_dir: str | os.PathLike | None = None,
                    progress: bool | Callable[[int, int], None] = False) -> Path:
        """Render all frames into an H.264/AAC mp4 at 25 fps with the original audio, atomically."""
        from ..video.writer import VideoWriter

        frames = self.frames(reference, speech, options=options)
        total = speech.num_frames
        if progress is True:
            from tqdm import tqdm

            frames = tqdm(frames, total=total, unit="frame", desc="generating")
        report = progress if callable(progress) else None
        with VideoWriter(output, fps=FPS, audio_path=audio_path, frames_dir=frames_dir) as writer:
            for done, frame in enumerate(frames, 1):
                writer.write(frame)
                if report is not None:
                    report(done, total)
        return Path(output)

    def generate(self, image: str | os.PathLike, audio: str | os.PathLike, output: str | os.PathLike,
                 options: GenerateOptions | None = None, *, frames_dir: str | os.PathLike | None = None,
                 progress: bool | Callable[[int, int], None] = False, **option_values) -> Path:
        """Image + speech file -> talking-head mp4 (see ``write_video``).

        ``options`` (or the same names as keywords, e.g. ``crop=False``): see :class:`GenerateOptions`.
        ``progress``: True for a progress bar, or a callable ``(frames_done, frames_total)``."""
        options = (options or GenerateOptions()).replace(**option_values) if option_values else (options or GenerateOptions())
        return generate_video(image, audio, output, options, self, frames_dir=frames_dir, progress=progress)


def generate_video(image: str | os.PathLike, audio: str | os.PathLike, output: str | os.PathLike,
                   options: GenerateOptions, pipeline: "Pipeline | Callable[[], Pipeline]", *,
                   frames_dir: str | os.PathLike | None = None,
                   progress: bool | Callable[[int, int], None] = False,
                   frontend: "FrontendProcess | None" = None) -> Path:
    """One job, in the order that lets a bad input fail in seconds: the reference photo (face, pose),
    then the networks (``pipeline`` may be a factory, called only then: ``avct generate`` loads the weights
    after the photo was checked), then the speech front end, then the video (``Pipeline.write_video``).
    ``frontend``: the speech front end of ``audio`` with ``options``, already running in a process of its
    own (:mod:`avct.audio.frontend_process`; ``avct generate`` starts it first, so that it works while
    the photo and the networks load)."""
    reference = load_job_reference(image, options)
    if not isinstance(pipeline, Pipeline):
        pipeline = pipeline()
    ahead: list[DecoderAhead] = []

    def while_recognising(features: np.ndarray, stop: threading.Event) -> None:  # in a thread of its own
        torch.set_num_threads(1)  # this thread's share: the recogniser holds the other core
        ahead.append(pipeline.decoder_tokens_ahead(reference, features, stop))

    speech_source = {"phonemes": options.phonemes, "transcript": options.transcript, "f0": options.f0,
                     "running": frontend, "while_waiting": while_recognising}
    if progress is not True:
        speech = load_speech(audio, **speech_source)
        speech.ahead = ahead[0] if ahead else None
        return pipeline.write_video(reference, speech, output, audio, options=options, frames_dir=frames_dir,
                                    progress=progress)
    from .progress import JobProgress

    bar = JobProgress()  # one bar over the front-end and the frames
    try:
        speech = load_speech(audio, **speech_source, on_progress=bar.speech, on_decoded=bar.start)
        speech.ahead = ahead[0] if ahead else None
        return pipeline.write_video(reference, speech, output, audio, options=options, frames_dir=frames_dir,
                                    progress=bar.frames)
    finally:
        bar.close()


def chunk_bounds(n: int, batch: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) of the chunks of frames whose keypoints are predicted and rendered together: the
    first frame alone (it comes without waiting for a batch), then one batch, then chunks doubling up to
    ``chunk`` frames, and never more than half of what remains (in whole batches). Why: predicting a
    chunk's keypoints reads the AVCT window's 2·5 frames beyond it, so long chunks waste less; short
    ones at the start let the first frames come sooner, and at the end let two workers finish together
    (:meth:`Pipeline.frames` renders chunks side by side)."""
    bounds, start, size = [], 0, 1
    while start < n:
        stop = min(n, start + size)
        bounds.append((start, stop))
        start = stop
        half = -(-(n - start) // (2 * batch)) * batch
        size = max(batch, min(max(chunk, batch), 2 * size, half))
    return bounds


def _chunks(items: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive lists of ``size`` items (the last one shorter), consuming the iterable lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk

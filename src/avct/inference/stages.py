"""The paper's stages (Fig. 2) on loaded networks, one method each, on the device and precision of the
runtime options.

    reference image ─► keypoint detector ─► kp_src, feature map ──────────────┐
                     └► renderer source encoding ─────────────────────────────┤
    audio ─► features, phonemes ─► head motion ─► poses ─► pose boxes          │
                              └─► AVCT tokens per frame ─► 11-frame windows ─► kp per frame
                                                    relative transfer ─► renderer ─► frames

What a stage computes lives here; in which order, in which chunks and threads they run is
:mod:`avct.inference.schedule`, and the job around them (inputs, compositing, files) is
:mod:`avct.inference.pipeline` and :mod:`avct.inference.job`.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch

from ..face.pose_box import draw_pose_box
from ..media import ROWS_PER_FRAME
from ..models.keypoints import Keypoints
from ..weights import AvctModels
from .backends import renderer_for, resolve_backend
from .devices import keep_large_allocations_in_heap, resolve_device, resolve_precision
from .inputs import Reference, Speech
from .options import GenerateOptions, RuntimeOptions
from .tokens import DecoderAhead, FrameTokens, decoder_tokens_ahead, window_tokens


class Stages:
    """The networks of one loaded pipeline, placed by ``runtime``, and what each stage computes with them."""

    def __init__(self, models: AvctModels, runtime: RuntimeOptions):
        """Places the networks. Precision policy: the renderer (nearly all the work per frame) runs in
        ``runtime.precision`` and keeps its geometry fp32 itself; the AVCT stays fp32 (in bf16 its
        keypoints drift enough to show in the frames: docs/performance.md, "Precision"), as do the
        keypoint detector (once per video) and the head-motion LSTM."""
        models.require("keypoint_detector", "generator", "avct", "head_motion")
        self.runtime = runtime
        self.device = resolve_device(runtime.device)
        self.dtype = resolve_precision(runtime.precision, self.device)
        self.batch_size = runtime.batch_size
        if runtime.threads is not None:
            torch.set_num_threads(runtime.threads)
        if self.device.type == "cpu" and runtime.tune_allocator:
            keep_large_allocations_in_heap()
        self.models = models.eval()
        self.avct_dtype = torch.float32
        models.keypoint_detector.to(self.device, torch.float32)
        models.head_motion.to(self.device, torch.float32)
        models.avct.to(self.device, self.avct_dtype)
        models.generator.to(self.device, self.dtype)
        if runtime.channels_last and self.device.type != "mps":
            models.generator.to(memory_format=torch.channels_last)  # oneDNN's and GPUs' fast layout
            models.avct.to(memory_format=torch.channels_last)       # its per-frame token CNNs
        backend = "torch" if runtime.compile and runtime.backend == "auto" else runtime.backend
        # auto is resolved at first need (it hashes the weights, which a job that runs the dense motion
        # alone never needs); a named backend is checked now
        self._backend = resolve_backend(backend, models.generator, models.keypoint_detector, self.device,
                                        self.dtype) if backend != "auto" else None
        self.compiled = runtime.compile
        if self.compiled:  # inductor with frozen weights
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

    def renderer(self, picture: bool) -> Callable:
        """The backend's render callable, with the renderer's picture or the dense motion alone; built
        (an OpenVINO graph compiled, a torch graph traced) the first time a job needs it."""
        if picture not in self._renderers:
            render = renderer_for(self.models.generator, self.models.keypoint_detector, self.backend, self.device,
                                  self.dtype, picture)
            self._renderers[picture] = torch.compile(render, dynamic=False) if self.compiled else render
        return self._renderers[picture]

    # ---- head motion -----------------------------------------------------------------------------
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

    def controlled_head_poses(self, reference: Reference, speech: Speech,
                              options: GenerateOptions | None = None) -> np.ndarray:
        """(N, 6) head poses of a job: :meth:`head_poses` with the motion controls of ``options``
        (still, pose_scale, pose_from; :mod:`avct.inference.motion_controls`)."""
        from .motion_controls import driving_poses

        return driving_poses(options or GenerateOptions(), reference.pose, speech.num_frames,
                             lambda: self.head_poses(reference, speech))

    # ---- keypoints -------------------------------------------------------------------------------
    def encode_reference(self, reference: Reference, detected=None):
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

    def driving_keypoints(self, speech: Speech, poses: np.ndarray, feature_map: torch.Tensor,
                          start: int, stop: int, *, silent: bool = False,
                          frames: np.ndarray | None = None, tokens: FrameTokens | None = None) -> Keypoints:
        """AVCT keypoints of frames [start, stop) from windows over per-frame tokens (``silent``: with
        every frame's speech replaced by silence, see :func:`~avct.inference.tokens.window_tokens`;
        ``frames``: only these frames of [start, stop), in order; ``tokens``: the job's token cache, else
        computed here)."""
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
        step = self.batch_size * 4
        outs = [avct.head(avct.correlate(enc_w[i:i + step], dec_w[i:i + step])) for i in range(0, len(enc_w), step)]
        return Keypoints.cat(outs)

    def mouth_scaled_keypoints(self, speech: Speech, poses: np.ndarray, feature_map: torch.Tensor,
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

    # ---- rendering -------------------------------------------------------------------------------
    def render_batch(self, source, kp_src: Keypoints, kp_driving: Keypoints, picture: bool = True) -> dict:
        """The renderer on one batch of driving keypoints: ``prediction`` (unless ``picture`` is False),
        ``deformation`` and ``occlusion_map`` where the weights have one, float."""
        n = len(kp_driving.value)
        if self.compiled and n < self.batch_size:  # one static shape: pad rather than recompile
            pad = self.batch_size - n
            kp_driving = Keypoints(torch.cat([kp_driving.value, kp_driving.value[-1:].expand(pad, -1, -1)]),
                                   torch.cat([kp_driving.jacobian, kp_driving.jacobian[-1:].expand(pad, -1, -1, -1)]))
        with torch.inference_mode():
            out = self.renderer(picture)(source, kp_src, kp_driving)
            return {key: out[key][:n].float() for key in ("prediction", "deformation", "occlusion_map") if key in out}

    @staticmethod
    def to_uint8(pred: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8 RGB (truncation as the official code)."""
        return (pred.permute(0, 2, 3, 1) * 255).to(torch.uint8).cpu().numpy()

    def still_frame(self, reference: Reference) -> np.ndarray:
        """The renderer's picture of the reference driven by its own keypoints, (256, 256, 3) uint8: what
        these weights draw when nothing moves, the baseline that separates image quality from motion."""
        with torch.inference_mode():
            kp_src, _, source = self.encode_reference(reference)
            return self.to_uint8(self.render_batch(source, kp_src, kp_src)["prediction"])[0]

    # ---- lips (not in the paper) -----------------------------------------------------------------
    def lip_apertures(self, speech: Speech) -> np.ndarray:
        """(num_frames,) the lip-aperture network's prediction for every frame (inter-ocular units)."""
        self.models.require("lip_aperture")
        n = speech.num_frames
        rows = torch.from_numpy(speech.features[: n * ROWS_PER_FRAME])
        return self.models.lip_aperture.predict(rows, torch.from_numpy(speech.phonemes[:n])).numpy().astype(np.float64)

    def eye_closures(self, speech: Speech, reference: Reference, options: GenerateOptions) -> np.ndarray | None:
        """(num_frames,) how far the eyes are closed in each frame, 0..1 (:mod:`avct.inference.blinks`),
        or None with ``blink_rate`` 0: blinks at ``options.blink_rate`` a minute, drawn to the speech's
        pauses, seeded from the speech and the photo's landmarks."""
        from .blinks import blink_plan, blink_seed
        from .mouth_opening import pause_frames

        if options.blink_rate <= 0:
            return None
        n = speech.num_frames
        seed = blink_seed(speech.features[: n * ROWS_PER_FRAME], reference.landmarks)
        return blink_plan(n, options.blink_rate, pause_frames(speech.features, n), seed)

    def mouth_openings(self, speech: Speech, mouth, options: GenerateOptions) -> np.ndarray:
        """(num_frames,) how far to open the photo's mouth in each frame, in the canvas' source pixels:
        the predicted aperture, at rest in the speech's pauses, as a change from the photo's own
        (:func:`avct.inference.mouth_opening.aperture_plan`), times ``mouth_scale``."""
        from .mouth_opening import aperture_plan

        change = aperture_plan(self.lip_apertures(speech), speech.features, mouth.aperture) * options.mouth_scale
        return change * mouth.pixels_per_aperture()

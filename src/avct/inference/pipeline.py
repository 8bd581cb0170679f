"""The inference pipeline: loaded networks (:class:`Pipeline`, the paper's stages on a device) and the
frames of a job, ``Pipeline.load().generate(image, audio, "out.mp4")``.

Where things live: the stages' maths in :mod:`avct.inference.stages`, the order, chunks and threads
of the frames in :mod:`avct.inference.schedule`, a job's inputs in :mod:`avct.inference.inputs`, the
compositing of the sharp output in :mod:`avct.inference.sharp`, writing the video in
:mod:`avct.inference.job`. ``frames()`` is a generator, so the video writer consumes frames as they
are produced.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..face.image import to_tensor
from ..models.motion import relative_motion
from ..weights import AvctModels, load_models
from .inputs import Reference, Speech
from .options import GenerateOptions, RuntimeOptions
from .schedule import batches, parallel_render_outputs, render_outputs
from .sharp import SharpCompositor, compose_frames, make_canvas, shows_picture
from .stages import Stages


class Pipeline(Stages):
    """Talking-head generation with loaded networks: the stages (:class:`~avct.inference.stages.Stages`)
    and the frames and videos of jobs made with them. One Pipeline serves any number of jobs."""

    def __init__(self, models: AvctModels, runtime: RuntimeOptions | None = None, **runtime_values: Any):
        """``runtime`` (or the same names as keywords, e.g. ``device="cpu"``): see :class:`RuntimeOptions`."""
        super().__init__(models, (runtime or RuntimeOptions()).replace(**runtime_values))

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | Sequence[str | os.PathLike | None] | None = None,
             runtime: RuntimeOptions | None = None, **runtime_values: Any) -> "Pipeline":
        """The one way in: the networks of ``checkpoint`` (any source :func:`avct.weights.load_models`
        takes; None: the weights bundled with avct), placed as ``runtime`` says. The runtime options are
        checked before any weights are read."""
        runtime = (runtime or RuntimeOptions()).replace(**runtime_values)
        return cls(load_models(checkpoint), runtime)

    # ---- frames ----------------------------------------------------------------------------------
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
        return render_outputs(self, reference, speech, chunk, options=options, picture=picture)

    def frames(self, reference: Reference, speech: Speech, chunk: int = 64, *,
               options: GenerateOptions | None = None) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 RGB frames, one per 40 ms of speech: by default the whole photo with
        the face animated at the photo's resolution (:mod:`avct.inference.sharp`); ``render="classic"``: the
        renderer's own 256² crops, the official output."""
        options = options or GenerateOptions()
        if options.render == "classic":
            for pred in self.predictions(reference, speech, chunk, options=options):
                yield from self.to_uint8(pred)
            return
        canvas = make_canvas(reference.full_photo(), reference.crop_box, options, reference.landmarks,
                             mouth=self.models.lip_aperture is not None)
        openings = self.mouth_openings(speech, canvas.mouth, options) if canvas.mouth is not None else None
        closures = self.eye_closures(speech, reference, options) if canvas.eyes is not None else None
        outputs = parallel_render_outputs(self, reference, speech, chunk, options=options,
                                          picture=shows_picture(options, canvas))
        yield from compose_frames(SharpCompositor(canvas), outputs, openings, closures)

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
                kp_src, _, source = self.encode_reference(reference)
                kp_initial = None
                for chunk in batches(driving, self.batch_size):
                    images = torch.cat([to_tensor(np.ascontiguousarray(f)) for f in chunk]).to(self.device, torch.float32)
                    kp_drv = self.models.keypoint_detector(images).to(torch.float32)
                    if kp_initial is None:
                        kp_initial = kp_drv[0:1]
                    yield self.render_batch(source, kp_src, relative_motion(kp_src, kp_drv, kp_initial), picture)

        if options is None or options.render == "classic":
            for out in outputs():
                yield from self.to_uint8(out["prediction"])
            return
        canvas = make_canvas(reference.full_photo(), reference.crop_box, options,
                             reference.landmarks if apertures is not None else None)  # no blinks: the video drives
        openings = None
        if canvas.mouth is not None:
            change = np.nan_to_num(np.asarray(apertures, np.float64) - canvas.mouth.aperture) * options.mouth_scale
            openings = change * canvas.mouth.pixels_per_aperture()
        yield from compose_frames(SharpCompositor(canvas), outputs(shows_picture(options, canvas)), openings)

    # ---- one call --------------------------------------------------------------------------------
    def generate(self, image: str | os.PathLike, audio: str | os.PathLike, output: str | os.PathLike,
                 options: GenerateOptions | None = None, *, frames_dir: str | os.PathLike | None = None,
                 progress: bool | Callable[[int, int], None] = False, **option_values: Any) -> Path:
        """Image + speech file -> talking-head mp4 (:func:`avct.inference.job.generate_video`).

        ``options`` (or the same names as keywords, e.g. ``crop=False``): see :class:`GenerateOptions`.
        ``progress``: True for a progress bar, or a callable ``(frames_done, frames_total)``."""
        from .job import generate_video

        options = options or GenerateOptions()
        options = options.replace(**option_values) if option_values else options
        return generate_video(image, audio, output, options, self, frames_dir=frames_dir, progress=progress)

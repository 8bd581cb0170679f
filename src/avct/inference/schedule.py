"""In which order, chunks and threads a job's frames are computed (the stages themselves:
:mod:`avct.inference.stages`).

Everything that depends only on the reference (keypoints, feature map, source encoding) is computed
once; per-frame AVCT tokens are computed once and the window slides over them; frames are rendered in
batches, a chunk of them per job, and on a CPU two chunks side by side.
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import AvctError
from ..models.keypoints import Keypoints
from ..models.motion import relative_motion
from .inputs import Reference, Speech
from .key_frames import interpolate, key_frames
from .options import GenerateOptions
from .prefetch import parallel_map
from .stages import Stages
from .tokens import FrameTokens

RenderJob = Callable[[threading.Event | None], list[dict]]


def chunk_bounds(n: int, batch: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) of the chunks of frames whose keypoints are predicted and rendered together: the
    first frame alone (it comes without waiting for a batch), then one batch, then chunks doubling up to
    ``chunk`` frames, and never more than half of what remains (in whole batches). Why: predicting a
    chunk's keypoints reads the AVCT window's 2·5 frames beyond it, so long chunks waste less; short
    ones at the start let the first frames come sooner, and at the end let two workers finish together
    (:func:`parallel_render_outputs` renders chunks side by side)."""
    bounds, start, size = [], 0, 1
    while start < n:
        stop = min(n, start + size)
        bounds.append((start, stop))
        start = stop
        half = -(-(n - start) // (2 * batch)) * batch
        size = max(batch, min(max(chunk, batch), 2 * size, half))
    return bounds


def render_jobs(stages: Stages, reference: Reference, speech: Speech, chunk: int, options: GenerateOptions | None,
                picture: bool) -> list[RenderJob]:
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
    poses = stages.controlled_head_poses(reference, speech, options)
    keep_head = head_scale(options)
    step = 1 if picture else options.motion_step  # the picture, when shown, comes from every frame
    batch = stages.batch_size

    def keypoints(frames: np.ndarray) -> Keypoints:
        return stages.mouth_scaled_keypoints(speech, poses, feature_map, frames, options.mouth_scale,
                                             tokens).to(torch.float32)

    with torch.inference_mode():
        ahead = speech.ahead
        usable = ahead is not None and ahead.pipeline is stages and ahead.reference is reference
        kp_src, feature_map, source = stages.encode_reference(reference, ahead.detected if usable else None)
        tokens = FrameTokens(stages.models.avct, speech.phonemes, speech.frame_rows(), poses, feature_map,
                             stages.device, stages.avct_dtype, ahead.tokens if usable else None)
        kp_initial = keypoints(np.arange(1))

    def job(start: int, stop: int) -> RenderJob:
        def render(cancelled: threading.Event | None = None) -> list[dict]:
            keys = key_frames(start, stop, n, step)  # [start, stop) itself when step is 1
            with torch.inference_mode():  # a thread's state: entered in the thread that renders
                kp_drv = kp_initial if len(keys) == 1 and keys[0] == 0 else keypoints(keys)
                if keep_head != 1.0:
                    kp_drv = scale_common_translation(kp_drv, kp_initial, keep_head)
                kp_norm = relative_motion(kp_src, kp_drv, kp_initial)
            outputs = []
            for b in range(0, len(keys), batch):
                if cancelled is not None and cancelled.is_set():
                    return outputs if step == 1 else []
                outputs.append(stages.render_batch(source, kp_src, kp_norm[b:b + batch], picture))
            if step == 1:
                return outputs
            at_keys = {name: torch.cat([out[name] for out in outputs]) for name in outputs[0]}
            frames = interpolate(at_keys, keys, start, stop)
            return [{name: value[b:b + batch] for name, value in frames.items()}
                    for b in range(0, stop - start, batch)]
        return render

    return [job(start, stop) for start, stop in chunk_bounds(n, batch, chunk)]


def render_outputs(stages: Stages, reference: Reference, speech: Speech, chunk: int = 64, *,
                   options: GenerateOptions | None = None, picture: bool = True) -> Iterator[dict]:
    """The renderer's outputs batch by batch, in order, computed in the caller's thread."""
    for job in render_jobs(stages, reference, speech, chunk, options, picture):
        yield from job(None)


def parallel_render_outputs(stages: Stages, reference: Reference, speech: Speech, chunk: int = 64, *,
                            options: GenerateOptions | None = None, picture: bool = True) -> Iterator[dict]:
    """:func:`render_outputs` computed ahead of the consumer in worker threads, a chunk of frames each
    (the same outputs): on a CPU two, each with half the intra-op threads
    (:func:`~avct.inference.devices.render_threads`), where the renderer may be called from two threads
    at once (eager torch; one OpenVINO request or a compiled graph runs alone)."""
    from .devices import render_threads

    concurrent = not stages.compiled and (not picture or stages.backend == "torch")  # eager torch renders
    workers, intra_op = render_threads(stages.device, concurrent)
    stages.renderer(picture)  # built here, not by two workers at once
    stop = threading.Event()  # set when the consumer leaves: the workers drop their chunks' other batches
    chunks = parallel_map(lambda job: job(stop), render_jobs(stages, reference, speech, chunk, options, picture),
                          workers=workers, initializer=lambda: torch.set_num_threads(intra_op))
    try:
        for outputs in chunks:
            yield from outputs
    finally:
        stop.set()
        chunks.close()


def batches(items: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    """Consecutive lists of ``size`` items (the last one shorter), consuming the iterable lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk

"""One job, image + speech file → mp4: the order that lets a bad input fail in seconds, and the writing
of the video (atomically: a file that exists is complete)."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import numpy as np
import torch

from ..media import FPS
from .inputs import Reference, Speech, load_job_reference, load_speech
from .options import GenerateOptions
from .stages import Stages
from .tokens import DecoderAhead

if TYPE_CHECKING:
    from ..audio.frontend_process import FrontendProcess

Progress = Callable[[int, int], None]


class FrameMaker(Protocol):
    """What a job needs of a loaded :class:`~avct.inference.pipeline.Pipeline`."""

    def frames(self, reference: Reference, speech: Speech, *,
               options: GenerateOptions | None = None) -> Iterator[np.ndarray]: ...

    def decoder_tokens_ahead(self, reference: Reference, features: np.ndarray,
                             stop: threading.Event) -> DecoderAhead: ...


def render_video(pipeline: FrameMaker, reference: Reference, speech: Speech, output: str | os.PathLike,
                audio_path: str | os.PathLike | None, *, options: GenerateOptions | None = None,
                frames_dir: str | os.PathLike | None = None, progress: bool | Progress = False) -> Path:
    """Render all frames into an H.264/AAC mp4 at 25 fps with the original audio, atomically.
    ``progress``: True for a progress bar, or a callable ``(frames_done, frames_total)``."""
    from ..video.writer import VideoWriter

    frames = pipeline.frames(reference, speech, options=options)
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


def generate_video(image: str | os.PathLike, audio: str | os.PathLike, output: str | os.PathLike,
                   options: GenerateOptions, pipeline: FrameMaker | Callable[[], FrameMaker], *,
                   frames_dir: str | os.PathLike | None = None, progress: bool | Progress = False,
                   frontend: "FrontendProcess | None" = None) -> Path:
    """One job, in the order that lets a bad input fail in seconds: the reference photo (face, pose),
    then the networks (``pipeline`` may be a factory, called only then: ``avct generate`` loads the weights
    after the photo was checked), then the speech front end, then the video (:func:`render_video`).
    ``frontend``: the speech front end of ``audio`` with ``options``, already running in a process of its
    own (:mod:`avct.audio.frontend_process`; ``avct generate`` starts it first, so that it works while
    the photo and the networks load)."""
    reference = load_job_reference(image, options)
    if not isinstance(pipeline, Stages):
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
        return render_video(pipeline, reference, speech, output, audio, options=options, frames_dir=frames_dir,
                           progress=progress)
    from .progress import JobProgress

    bar = JobProgress()  # one bar over the front-end and the frames
    try:
        speech = load_speech(audio, **speech_source, on_progress=bar.speech, on_decoded=bar.start)
        speech.ahead = ahead[0] if ahead else None
        return render_video(pipeline, reference, speech, output, audio, options=options, frames_dir=frames_dir,
                           progress=bar.frames)
    finally:
        bar.close()

"""A job's two inputs, read and checked: the reference face (:class:`Reference`, from a photo) and the
speech (:class:`Speech`, from any audio). Nothing here needs the networks, so a bad input fails in
seconds, before the weights load (:func:`avct.inference.job.generate_video`)."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..audio.phonemes import frame_phoneme_ids
from ..errors import AvctError
from ..face.image import read_image, resize_256, to_tensor
from ..media import ROWS_PER_FRAME
from .options import GenerateOptions
from .tokens import DecoderAhead

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

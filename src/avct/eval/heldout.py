"""Held-out reconstruction: the protocol behind the bundled weights' figures (MODEL_CARD.md).

For every clip of a preprocessed dataset (``avct preprocess``) the model sees only the clip's first
frame and its audio, and must produce the rest; three videos per clip, same name, same audio:

    reference/<clip>.mp4   the real 256² frames                       (ground truth)
    generated/<clip>.mp4   avct from frame 0 + the clip's audio         (the model)
    static/<clip>.mp4      frame 0 repeated for the whole clip          (baseline: no motion at all)
    rendered_static/<clip>.mp4  the renderer's own picture of frame 0, repeated  (baseline: same renderer,
                           no motion; separates what the motion models add from what the renderer costs)

``avct evaluate`` of ``generated`` and of both baselines against ``reference`` then shows what the model
adds over doing nothing (LMD: mouth/face shape error; AVOff/AVConf: lip sync; FID/CPBD: image quality).
"""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.dataset import SAMPLE_RATE, SAMPLES_PER_FRAME, TalkingHeadDataset
from ..errors import AvctError

VARIANTS = ("reference", "generated", "static", "rendered_static")


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """16-bit mono wav of samples on the int16 scale (as ``audio.npy`` stores them)."""
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return path


def _repeat(frame: np.ndarray, count: int) -> Iterator[np.ndarray]:
    for _ in range(count):
        yield frame


def reconstruct_clips(dataset: str | Path, out: str | Path, pipeline, *, progress: bool = True) -> dict[str, Path]:
    """Write the three variants of every clip of ``dataset`` under ``out``; returns {variant: folder}.
    ``pipeline`` is an :class:`avct.pipeline.Pipeline` (its weights are what gets evaluated)."""
    from ..pipeline import load_reference, load_speech
    from ..video import write_video

    root, out = Path(dataset), Path(out)
    clips = TalkingHeadDataset(root).clips
    if not clips:
        raise AvctError(f"{root} has no clips")
    folders = {v: out / v for v in VARIANTS}
    for folder in (*folders.values(), out / "audio"):
        folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        name = clip.name
        folder = root / "clips" / name
        frames = np.load(folder / "frames.npy", mmap_mode="r")
        samples = np.load(folder / "audio.npy")
        wav = write_wav(out / "audio" / f"{name}.wav", samples)
        speech = load_speech(wav, f0="official")  # the features the weights were trained and scored on
        count = min(len(frames), speech.num_frames)
        # the videos carry exactly their frames' audio (the dataset keeps a few ms more for the features)
        wav = write_wav(wav, samples[: count * SAMPLES_PER_FRAME])
        write_video(folders["reference"] / f"{name}.mp4", (np.asarray(f) for f in frames[:count]), audio_path=wav)
        first = np.ascontiguousarray(frames[0])
        write_video(folders["static"] / f"{name}.mp4", _repeat(first, count), audio_path=wav)
        reference = load_reference(first, crop=False)
        write_video(folders["rendered_static"] / f"{name}.mp4", _repeat(pipeline.still_frame(reference), count),
                    audio_path=wav)
        generated = pipeline.frames(reference, speech)
        write_video(folders["generated"] / f"{name}.mp4", (f for _, f in zip(range(count), generated)),
                    audio_path=wav)
        if progress:
            print(f"{name}: {count} frames")
    return folders

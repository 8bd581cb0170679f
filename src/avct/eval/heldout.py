"""Held-out reconstruction: the protocol behind the bundled weights' figures (MODEL_CARD.md).

For every clip of a preprocessed dataset (``avct preprocess``) the model sees only the clip's first
frame and its audio, and must produce the rest; three videos per clip, same name, same audio:

    reference/<clip>.mp4   the real 256² frames                       (ground truth)
    generated/<clip>.mp4   avct from frame 0 + the clip's audio         (the model, default sharp path:
                           frame 0 warped at its resolution, :mod:`avct.inference.sharp`)
    classic/<clip>.mp4     the same motion through the paper's 256² renderer (``render="classic"``)
    static/<clip>.mp4      frame 0 repeated for the whole clip          (baseline: no motion at all)
    rendered_static/<clip>.mp4  the renderer's own picture of frame 0, repeated  (baseline: same renderer,
                           no motion; separates what the motion models add from what the renderer costs)

``avct evaluate`` of ``generated`` and of both baselines against ``reference`` then shows what the model
adds over doing nothing (LMD: mouth/face shape error; lip r / amplitude / silence gap: does the mouth
follow the speech; FID/CPBD/sharpness: image quality; AVOff/AVConf: lip sync as the given SyncNet sees
it). :func:`evaluate_variants` runs the three evaluations and :func:`comparison_markdown` puts them side
by side with the real clips, per clip and averaged.
"""
from __future__ import annotations

import csv
import os
import wave
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..data.dataset import TalkingHeadDataset
from ..errors import AvctError
from ..media import SAMPLES_PER_FRAME, SAMPLE_RATE

VARIANTS = ("reference", "generated", "classic", "static", "rendered_static")
# evaluation name -> (video folder scored against reference/, row label); "real" is the reference itself
EVALUATIONS = {"model": ("generated", "avct, sharp path (default)"),
               "classic": ("classic", "avct, classic 256² renderer"),
               "rendered_static": ("rendered_static", "static render (same renderer, no motion)"),
               "static": ("static", "static photo (first frame repeated)")}
REAL_LABEL = "the real clips (ground truth)"
BUNDLED_DSYNC_LABEL = "bundled D_sync (trained on one speaker), not SyncNet"


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
    ``pipeline`` is an :class:`avct.inference.pipeline.Pipeline` (its weights are what gets evaluated)."""
    from ..inference.options import GenerateOptions
    from ..inference.inputs import load_reference, load_speech
    from ..video.writer import write_video

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
        for variant, options in (("generated", GenerateOptions()), ("classic", GenerateOptions(render="classic"))):
            generated = pipeline.frames(reference, speech, options=options)
            write_video(folders[variant] / f"{name}.mp4", (f for _, f in zip(range(count), generated)),
                        audio_path=wav)
        if progress:
            print(f"{name}: {count} frames")
    return folders


def evaluate_variants(folders: dict[str, Path], out: str | Path, *, syncnet: str | os.PathLike | None,
                      progress: bool = False) -> dict[str, dict[str, Any]]:
    """``avct evaluate`` of the model and both baselines against the real clips (reports in
    ``out/<name>``); returns {name: summary} for :data:`EVALUATIONS`."""
    from .evaluate import evaluate

    out = Path(out)
    return {name: evaluate(folders[variant], folders["reference"], out / name, syncnet=syncnet, progress=progress)
            for name, (variant, _) in EVALUATIONS.items()}


def _per_video(report_dir: Path) -> list[dict[str, Any]]:
    """per_video.csv of an evaluation, numbers as floats (empty cells: None)."""
    with open(report_dir / "per_video.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed: dict[str, Any] = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value) if value != "" else None
            except ValueError:
                parsed[key] = value
        out.append(parsed)
    return out


def _real_row(scores: dict[str, Any]) -> dict[str, Any]:
    """The real clip scored against itself: FID/LMD 0, lip r/amp/sharpness/head motion 1, gap 0 by
    definition; CPBD, blinks and SyncNet from the reference side of an evaluation."""
    return {"fid": 0.0, "cpbd": scores.get("cpbd"), "lmd": 0.0, "lip_r": 1.0, "lip_amp": 1.0,
            "silence_gap": 0.0, "sharpness": 1.0, "blinks_per_min": scores.get("blinks_per_min"),
            "eye_closure": scores.get("eye_closure"), "head_motion": 1.0, "avoff": scores.get("avoff"),
            "avconf": scores.get("avconf")}


def comparison_markdown(summaries: dict[str, dict[str, Any]], report_dir: str | Path,
                        sync_label: str = BUNDLED_DSYNC_LABEL) -> str:
    """Averaged and per-clip tables of the model, the static render, the static photo and the real
    clips (from :func:`evaluate_variants`' summaries and the per_video.csv files under ``report_dir``)."""
    from .report import METRIC_NOTES, TABLE_COLUMNS, format_number

    report_dir = Path(report_dir)
    head = "| {} | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(TABLE_COLUMNS)

    def line(label: str, scores: dict[str, Any]) -> str:
        return f"| {label} | " + " | ".join(format_number(scores.get(k), d) for k, _, d in TABLE_COLUMNS) + " |"

    model = summaries["model"]
    lines = ["# Held-out evaluation", "", f"AVOff / AVConf: {sync_label}.", "", "## Averaged", "",
             head.format("Video (vs the real clip)"), sep]
    lines += [line(label, summaries[name]) for name, (_, label) in EVALUATIONS.items()]
    lines += [line(REAL_LABEL, _real_row(model.get("reference") or {})), ""]
    per_video = {name: {r["name"]: r for r in _per_video(report_dir / name)} for name in EVALUATIONS}
    lines += ["## Per clip", "", head.format("Clip / video"), sep]
    for clip in sorted(per_video["model"]):
        for name, (_, label) in EVALUATIONS.items():
            row = per_video[name].get(clip)
            if row is not None:
                lines.append(line(f"{clip}: {label.split(' (')[0]}", {**row, "fid": row.get("fid_video")}))
        ref = per_video["model"][clip]
        lines.append(line(f"{clip}: real clip", _real_row({"cpbd": ref.get("cpbd_reference"),
                                                            "blinks_per_min": ref.get("blinks_per_min_reference"),
                                                            "eye_closure": ref.get("eye_closure_reference"),
                                                            "avoff": ref.get("avoff_reference"),
                                                            "avconf": ref.get("avconf_reference")})))
    lines += ["", "Per-clip FID uses one clip's frames only (biased upward for short clips).", "", *METRIC_NOTES, ""]
    return "\n".join(lines)

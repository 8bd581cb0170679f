"""Lip reconstruction: can a renderer open and close the mouth of people it never saw, and does the model?

    .venv/bin/python scripts/lip_reconstruction.py VIDEO... --out DIR [--checkpoint W] [--audio]
    .venv/bin/python scripts/lip_reconstruction.py --data HELDOUT_DATASET --out DIR [--checkpoint W] [--audio]

Videos are first prepared by `avct preprocess --no-phonemes` into DIR/data (the fixed 256² face crop at
25 fps that training and the held-out protocol use). For every clip, against its real frames:

  reconstruction  the renderer draws the clip's first frame moved by the keypoints its own detector finds
                  on every real frame, relative to the first (`Pipeline.reenact`): the best any motion model
                  can get out of this keypoint detector + renderer. How every new renderer is judged.
  sharp+lips      the same keypoints through the sharp output (the default), with the photo's mouth opened
                  to each real frame's own lip aperture (`avct.inference.mouth_opening`): the best the
                  lip-aperture network can get, i.e. how well the mouth warp shows a given aperture.
  audio           (--audio) the whole model from frame 0 + the clip's audio (the default sharp output,
                  the mouth opened by the lip-aperture network when the weights have one).
  photo           (--audio) what a user gets: `avct generate`'s default job on the clip's first whole
                  frame (the photo) and the clip's own audio, scored against the whole real clip at its
                  own frame rate. The 256² crops above can cut off a tight clip's chin (vox2's 224²
                  frames), which leaves dlib guessing at the mouth; the whole frames do not.
  photo+lips      (--audio) the photo mode with the mouth opened to the real clip's own aperture at each
                  frame's time (read on the whole real frames) instead of the lip network's: how truthfully
                  the output a user gets shows a given aperture (sharp+lips on whole frames).

Scores (avct.eval.lips): lip r (correlation of the inner-lip aperture with the real one), lip amp (std
ratio), silence gap (aperture difference in pauses), sharpness (face-box Laplacian variance ratio); for the
photo modes also the lag within ±3 frames at which r peaks and r there (`timing_peak`, a diagnostic:
lag +k = the real mouth moves k frames later, e.g. a clip whose sound runs ahead of its picture).
Writes DIR/lip_reconstruction.md and .json, and the videos DIR/videos/<mode>/<clip>.mp4 (with the audio).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _row(clip: str, mode: str, comparison) -> dict:
    lips = comparison.lips
    return {"clip": clip, "mode": mode, "frames": comparison.frames, "lip_r": lips.r, "lip_amp": lips.amplitude,
            "silence_gap": lips.silence_gap, "silent_frames": lips.silent_pairs, "sharpness": comparison.sharpness,
            "best_lag": None, "lip_r_best": None}


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(values)) if values else None


def _table(rows: list[dict], checkpoint: str) -> str:
    from avct.eval.report import format_number

    lines = ["# Lip reconstruction", "", f"Weights: {checkpoint}.", "",
             "| clip | mode | frames | lip r↑ | lip amp(→1) | silence gap(→0) | silent frames "
             "| sharpness(→1) | r at best lag (lag) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def fmt(r: dict) -> str:
        best = "—" if r["lip_r_best"] is None else (
            format_number(r["lip_r_best"], 2) + ("" if r["best_lag"] is None else f" ({r['best_lag']:+d})"))
        return (f"| {r['clip']} | {r['mode']} | {r['frames']} | {format_number(r['lip_r'], 2)} | "
                f"{format_number(r['lip_amp'], 2)} | {format_number(r['silence_gap'], 3)} | "
                f"{r['silent_frames']} | {format_number(r['sharpness'], 2)} | {best} |")

    lines += [fmt(r) for r in rows]
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        lines.append(fmt({"clip": "**mean**", "mode": mode, "frames": sum(r["frames"] for r in mine),
                          "silent_frames": sum(r["silent_frames"] for r in mine),
                          "best_lag": None,
                          **{k: _mean(mine, k)
                             for k in ("lip_r", "lip_amp", "silence_gap", "sharpness", "lip_r_best")}}))
    return "\n".join(lines + [""])


def _real_openings(real, mouth, n: int) -> np.ndarray:
    """The mouth opening (source pixels, as ``Pipeline.mouth_openings``) that gives each of ``n`` 25 fps
    frames the real clip's aperture at that time (frames where dlib missed the real mouth interpolated)."""
    from avct.media import FPS

    known = np.isfinite(real.aperture)
    times = np.arange(len(real)) / real.fps
    aperture = np.interp(np.arange(n) / FPS, times[known], real.aperture[known])
    return (aperture - mouth.aperture) * mouth.pixels_per_aperture()


def _photo_row(pipeline, name: str, source: Path, out: Path, real_lips: bool = False) -> dict:
    """The "photo" mode: the default job on the clip's first whole frame and its audio, against the clip;
    ``real_lips`` ("photo+lips"): the same job with the mouth opened to the real clip's own apertures."""
    import cv2

    from avct.audio.decode import load_audio
    from avct.eval.lips import compare_measures, measure_video, timing_peak
    from avct.video.reader import read_video

    started = time.perf_counter()
    mode = "photo+lips" if real_lips else "photo"
    photo = out / "photos" / f"{name}.png"
    photo.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(photo), next(iter(read_video(source)))[..., ::-1])  # RGB -> cv2's BGR
    real = measure_video(source)
    if real_lips:
        pipeline.mouth_openings = lambda speech, mouth, options: _real_openings(real, mouth, speech.num_frames)
    try:
        video = pipeline.generate(photo, source, out / "videos" / mode / f"{name}.mp4")
    finally:
        pipeline.__dict__.pop("mouth_openings", None)
    audio = load_audio(source)
    generated = measure_video(video)
    row = _row(name, mode, compare_measures(generated, real, (audio.samples, audio.sample_rate)))
    row["best_lag"], row["lip_r_best"] = timing_peak(generated, real)
    print(f"{name} {mode}: r {row['lip_r']}, amp {row['lip_amp']}, silence gap {row['silence_gap']}, "
          f"sharpness {row['sharpness']}, best lag {row['best_lag']} (r {row['lip_r_best']}) "
          f"({len(generated)} frames, {time.perf_counter() - started:.0f} s)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="*", help="real talking-head videos (prepared into OUT/data first)")
    p.add_argument("--data", help="an already preprocessed dataset instead of videos")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--checkpoint", action="append", help="weights (default: the bundled ones); repeatable")
    p.add_argument("--audio", action="store_true",
                   help="also the audio-driven model (frame 0 + the clip's audio), on the crop and on the whole photo")
    p.add_argument("--modes", default="reconstruction,sharp+lips,audio,photo,photo+lips",
                   help="which of the modes to run (comma-separated; audio and the photo modes need --audio)")
    p.add_argument("--max-seconds", type=float, help="only the first S seconds of every clip")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if bool(args.videos) == bool(args.data):
        p.error("give either videos or --data")

    from avct.data.dataset import TalkingHeadDataset
    from avct.media import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
    from avct.weights.bundled import resolve_checkpoint
    from avct.eval.heldout import write_wav
    from avct.eval.lips import compare_measures, measure_frames
    from avct.io_utils import atomic_write_text
    from avct.face.landmarks import detect_faces
    from avct.inference.options import GenerateOptions
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import load_reference, load_speech
    from avct.video.writer import write_video

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if args.videos:
        from avct.data.preprocess.run import preprocess

        preprocess(args.videos, data, phonemes="none", max_seconds=args.max_seconds, progress=False)
    checkpoints = [str(resolve_checkpoint(c)) for c in args.checkpoint or [None]]
    # the weights' own figures (PyTorch), the same whether or not set-up prepared the int8 renderer
    pipeline = Pipeline.load(checkpoints, device=args.device, backend="torch")
    dataset = TalkingHeadDataset(data)
    rows: list[dict] = []
    for i in range(len(dataset)):
        clip = dataset.clip(i)
        count = clip.usable_frames if args.max_seconds is None else min(clip.usable_frames, int(args.max_seconds * FPS))
        real_frames = np.asarray(clip.frames[:count])
        audio = np.asarray(clip.audio, dtype=np.float64)
        samples = audio[: count * SAMPLES_PER_FRAME]          # the videos' audio: exactly their frames'
        (out / "audio").mkdir(parents=True, exist_ok=True)
        wav = write_wav(out / "audio" / f"{clip.name}.wav", samples)
        # the last frame's features need 15 ms more (as the dataset keeps them)
        speech_wav = write_wav(out / "audio" / f"{clip.name}.speech.wav", audio[: count * SAMPLES_PER_FRAME + 240])
        real = measure_frames(real_frames, FPS)
        reference = load_reference(np.ascontiguousarray(real_frames[0]), crop=False)
        faces = detect_faces(real_frames[0])
        reference.landmarks = faces[0].landmarks if faces else None  # the whole 256² frame is the crop
        modes = {"reconstruction": lambda: pipeline.reenact(reference, real_frames),
                 "sharp+lips": lambda: pipeline.reenact(reference, real_frames, apertures=real.aperture,
                                                        options=GenerateOptions())}
        if args.audio:
            modes["audio"] = lambda: pipeline.frames(reference, load_speech(speech_wav))
        wanted = set(args.modes.split(","))
        for mode, make in [(m, f) for m, f in modes.items() if m in wanted]:
            started = time.perf_counter()
            frames = [f for _, f in zip(range(count), make())]
            write_video(out / "videos" / mode / f"{clip.name}.mp4", frames, fps=FPS, audio_path=wav)
            row = _row(clip.name, mode, compare_measures(measure_frames(frames, FPS), real, (samples, SAMPLE_RATE)))
            rows.append(row)
            print(f"{clip.name} {mode}: r {row['lip_r']}, amp {row['lip_amp']}, silence gap {row['silence_gap']}, "
                  f"sharpness {row['sharpness']} ({len(frames)} frames, {time.perf_counter() - started:.0f} s)",
                  flush=True)
        source = Path(dataset.clips[i].source)
        for mode in ("photo", "photo+lips"):
            if args.audio and mode in wanted and args.max_seconds is None and source.is_file():
                rows.append(_photo_row(pipeline, clip.name, source, out, real_lips=mode == "photo+lips"))
    table = _table(rows, " + ".join(checkpoints))
    atomic_write_text(out / "lip_reconstruction.md", table)
    atomic_write_text(out / "lip_reconstruction.json", json.dumps({"checkpoints": checkpoints, "rows": rows}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the face look alive? `avct generate`'s default job on real clips of people no network saw, scored
against the real clips by `avct evaluate` (every frame): blinks a minute (generated and real), the deepest
eye closure, the head-motion ratio, lip r and amplitude, FID and CPBD.

    .venv/bin/python scripts/alive_report.py CLIP... --out DIR [--checkpoint W] [--compare blink_rate=0]

For every clip the photo is its first whole frame and the speech its own audio. ``--compare NAME=VALUE``
also makes every video with that option changed (e.g. ``blink_rate=0``: the output before blinks) and
scores both. Writes DIR/<variant>/report/ (avct evaluate's files) and DIR/alive_report.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="+", help="real talking-head videos with their sound")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--checkpoint", action="append", help="weights (default: the bundled ones); repeatable")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=VALUE",
                   help="a GenerateOptions change to score beside the default (repeatable)")
    args = p.parse_args(argv)

    import cv2

    from avct.eval.evaluate import evaluate
    from avct.eval.report import format_number
    from avct.inference import GenerateOptions, Pipeline
    from avct.io_utils import atomic_write_text
    from avct.video.reader import read_video

    out = Path(args.out)
    pipeline = Pipeline.load(args.checkpoint, backend="torch")  # the weights' own figures, int8 or not
    variants = {"default": GenerateOptions()}
    for change in args.compare:
        name, _, value = change.partition("=")
        variants[change] = GenerateOptions.from_mapping({name: value})
    reference = out / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    photos = out / "photos"
    photos.mkdir(exist_ok=True)
    for clip in map(Path, args.clips):
        link = reference / f"{clip.stem}.mp4"
        if not link.exists():
            link.symlink_to(clip.resolve())
        photo = photos / f"{clip.stem}.png"
        if not photo.exists():
            cv2.imwrite(str(photo), next(iter(read_video(clip)))[..., ::-1])  # RGB -> cv2's BGR
    summaries, rows = {}, {}
    for label, options in variants.items():
        videos = out / label.replace("=", "_") / "videos"
        for clip in map(Path, args.clips):
            target = videos / f"{clip.stem}.mp4"
            if not target.exists():
                started = time.perf_counter()
                pipeline.generate(photos / f"{clip.stem}.png", clip, target, options)
                print(f"{label} {clip.stem}: {time.perf_counter() - started:.0f} s", flush=True)
        report = videos.parent / "report"
        summaries[label] = evaluate(videos, reference, report, progress=False)
        import csv

        with open(report / "per_video.csv", newline="") as f:
            rows[label] = {r["name"]: r for r in csv.DictReader(f)}
    columns = (("blinks_per_min", 1), ("blinks_per_min_reference", 1), ("eye_closure", 2),
               ("eye_closure_reference", 2), ("head_motion", 2), ("lip_r", 2), ("lip_amp", 2))
    lines = ["# Alive report", "", f"Clips: {len(args.clips)}; weights: {args.checkpoint or 'bundled'}.", "",
             "| clip | variant | blinks/min | real | closure | real | head motion | lip r | lip amp |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for clip in map(Path, args.clips):
        for label in variants:
            r = rows[label].get(clip.stem, {})
            cells = [format_number(float(r[k]) if r.get(k) else None, d) for k, d in columns]
            lines.append(f"| {clip.stem} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "| variant | FID | CPBD | blinks/min (real) | closure (real) | head motion | lip r | lip amp |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, s in summaries.items():
        ref = s["reference"]
        lines.append(f"| {label} | {format_number(s['fid'], 1)} | {format_number(s['cpbd'], 3)} | "
                     f"{format_number(s['blinks_per_min'], 1)} ({format_number(ref['blinks_per_min'], 1)}) | "
                     f"{format_number(s['eye_closure'], 2)} ({format_number(ref['eye_closure'], 2)}) | "
                     f"{format_number(s['head_motion'], 2)} | {format_number(s['lip_r'], 2)} | "
                     f"{format_number(s['lip_amp'], 2)} |")
    atomic_write_text(out / "alive_report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to the first frame and to the finished mp4 of `avct generate` (bundled weights, default output),
process start included, against the same job with the speech front-end run in the job's own process
after the photo and the weights (the order before the front-end got its own process).

    .venv/bin/python benchmarks/first_frame.py            # a 5 s and a 30 s clip (~8 min)
    .venv/bin/python benchmarks/first_frame.py --quick    # the 5 s clip (~1.5 min)

"First frame" is when frame 000000.png appears in the frames folder the writer fills (``--frames``, a
hidden temporary folder until the video is finished). Both orders run in one go, alternating, so the
machine's load moves both alike; compare the ratio, not the seconds, between machines.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVCT_SHARED", ROOT.parent / "shared"))
CLIP_5S = SHARED / "data" / "video" / "retalking_face5_woman_glasses_red_5s.mp4"
CLIP_30S = SHARED / "data" / "audio" / "adamschiff_30s.wav"
AVCT = Path(sys.executable).with_name("avct")
# The job as before: photo, weights, then the front-end in this process (generate_video without `frontend`).
IN_PROCESS = ("import sys; from avct.inference.options import GenerateOptions; "
              "from avct.inference.pipeline import Pipeline, generate_video; "
              "generate_video(sys.argv[1], sys.argv[2], sys.argv[3], GenerateOptions(), "
              "lambda: Pipeline.load(None), frames_dir=sys.argv[4])")


def first_photo_frame(video: Path, out: Path) -> Path:
    """The video's first frame as a PNG (the photo of the job)."""
    import cv2

    ok, frame = cv2.VideoCapture(str(video)).read()
    if not ok:
        raise SystemExit(f"cannot read {video}")
    cv2.imwrite(str(out), frame)
    return out


def timed_job(command: list[str], frames: Path) -> tuple[float, float]:
    """(seconds to the first frame on disk, seconds to the end) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and any(frames.parent.glob(f".{frames.name}.*/000000.png")):
            first = time.perf_counter() - start
        time.sleep(0.02)
    total = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{command[0]} failed:\n{proc.stderr.read()}")
    return (first if first is not None else total), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 5 s clip only")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    clips = [CLIP_5S] if args.quick else [CLIP_5S, CLIP_30S]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = first_photo_frame(CLIP_5S, tmp / "photo.png")
        for clip in clips:
            results: dict[str, list[tuple[float, float]]] = {"cli": [], "in_process": []}
            for r in range(args.repeats):
                for name in results:
                    out, frames = tmp / f"{name}{r}.mp4", tmp / f"{name}{r}_frames"
                    if name == "cli":
                        command = [str(AVCT), "generate", "--image", str(photo), "--audio", str(clip), "-o", str(out),
                                   "--frames", str(frames), "-q"]
                    else:
                        command = [sys.executable, "-c", IN_PROCESS, str(photo), str(clip), str(out), str(frames)]
                    results[name].append(timed_job(command, frames))
            best = {name: min(runs) for name, runs in results.items()}
            for name, (first, total) in best.items():
                print(f"{clip.name}: {name:10s} first frame {first:6.2f} s  finished {total:6.2f} s")
            print(f"{clip.name}: first_frame_cli={best['cli'][0]:.2f} first_frame_in_process={best['in_process'][0]:.2f} "
                  f"speedup_first_frame={best['in_process'][0] / best['cli'][0]:.2f} "
                  f"speedup_total={best['in_process'][1] / best['cli'][1]:.2f}")


if __name__ == "__main__":
    main()

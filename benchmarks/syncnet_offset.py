"""Does a D_sync trained with `avct train syncnet` on real clips find a known audio offset?

    .venv/bin/python benchmarks/syncnet_offset.py [--steps 3000] [--work DIR]

1. `avct preprocess` real single-speaker clips from shared/data/video (no phonemes needed);
2. `avct train syncnet --config small` on them (CPU);
3. for a held-out clip, videos whose audio is shifted by k frames (k = -3, 0, +3, ...) are written from
   the clip's 25 fps frames, and `avct evaluate --syncnet RUN` scores them: AVOff should move by k
   relative to the unshifted clip (whose own offset need not be 0: recorded clips are not perfectly in sync).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVCT_SHARED", ROOT.parent / "shared"))
TRAIN = ["feifeili_styletalk_clip1_10s.mp4", "kristinoem_styletalk_18s.mp4", "obama_styletalk_clip2_30s.mp4",
         "woman_shorthair_address_edtalk_mouth_source_10s.mp4", "hdtf_rdradio2_sadtalker_8s.mp4",
         "hdtf_rdradio34_sadtalker_8s.mp4", "hdtf_edmarkey_sadtalker_8s.mp4"]
HELD_OUT = "hdtf_katiehill_sadtalker_8s.mp4"
SHIFTS = (-3, 0, 3)


def shifted_videos(clip_dir: Path, out_dir: Path) -> list[Path]:
    """The clip's frames with its audio delayed by k frames (k > 0: audio later), same length."""
    import scipy.io.wavfile

    from avct.video.writer import VideoWriter

    frames = np.load(clip_dir / "frames.npy", mmap_mode="r")
    audio = np.load(clip_dir / "audio.npy").astype(np.int16)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in SHIFTS:
        n = 640 * abs(k)
        moved = np.concatenate([np.zeros(n, np.int16), audio[:len(audio) - n]]) if k > 0 else \
            np.concatenate([audio[n:], np.zeros(n, np.int16)])
        wav = out_dir / f"shift_{k:+d}.wav"
        scipy.io.wavfile.write(wav, 16000, moved)
        path = out_dir / f"shift_{k:+d}.mp4"
        with VideoWriter(path, audio_path=wav) as w:
            for f in frames:
                w.write(np.asarray(f))
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="at most the small preset's 2000")
    ap.add_argument("--work", default="/tmp/avct_syncnet_offset")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from avct.data.preprocess.run import preprocess
    from avct.eval.evaluate import evaluate
    from avct.train.engine import train

    work = Path(args.work)
    t0 = time.perf_counter()
    videos = SHARED / "data" / "video"
    preprocess([videos / v for v in TRAIN], work / "train_data", phonemes="none", progress=False)
    preprocess([videos / HELD_OUT], work / "test_data", phonemes="none", progress=False)
    t1 = time.perf_counter()
    result = train("syncnet", "small", work / "train_data", work / "syncnet", max_steps=args.steps, progress=False,
                   resume=(work / "syncnet" / "checkpoints" / "latest").is_file())
    t2 = time.perf_counter()
    clip = next((work / "test_data" / "clips").iterdir())
    gen = shifted_videos(clip, work / "shifted")
    ref_dir = work / "reference"
    ref_dir.mkdir(exist_ok=True)
    for p in gen:  # reference = the unshifted clip under each name (FID/LMD are about the frames only)
        target = ref_dir / p.name
        if not target.exists():
            target.symlink_to(work / "shifted" / "shift_+0.mp4")
    evaluate(gen, sorted(ref_dir.glob("*.mp4")), work / "report", syncnet=work / "syncnet" / "weights",
             progress=False, frame_step=5)
    t3 = time.perf_counter()
    import csv

    rows = {r["name"]: r for r in csv.DictReader(open(work / "report" / "per_video.csv"))}
    print(f"preprocess {t1 - t0:.0f} s, train {result.step} steps {t2 - t1:.0f} s, evaluate {t3 - t2:.0f} s")
    base = None
    for k in SHIFTS:
        r = rows[f"shift_{k:+d}"]
        avoff, avconf = float(r["avoff"]), float(r["avconf"])
        base = avoff if k == 0 else base
        print(f"shift {k:+d} frames: AVOff {avoff:+.0f}  AVConf {avconf:.3f}")
    found = {k: float(rows[f"shift_{k:+d}"]["avoff"]) - base for k in SHIFTS}
    print("offset found relative to the unshifted clip:", json.dumps(found))


if __name__ == "__main__":
    main()

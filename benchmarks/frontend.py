"""CPU cost of the speech front-end (decode, features, phonemes, head poses) per second of audio, before
and with the fast settings, and what those cost in quality.

    .venv/bin/python benchmarks/frontend.py            # 60 s clip, agreement on all reference clips (~10 min)
    .venv/bin/python benchmarks/frontend.py --quick    # no "before" phonemes, agreement on two short clips

"Before" is official F0 + pocketsphinx's default search; "default" is fast F0 + ``WORDS_CONFIG``.
CPU time is process time (``time.process_time``, all threads of this process), so other programs on the
machine do not count directly; on shared or hyper-threaded cores it still grows with their load (the
recogniser measured 0.3 and 0.9 CPU s per audio s at different times), so compare figures from one run.

Wall time: ``load_speech`` recognises while a worker thread computes the features (pyworld releases the
GIL); against the parts one after the other this gains only where a core is free, so the load average is
printed beside it.

Quality: phoneme agreement is ``benchmarks/phonemes.py``'s words-mode figure (25 fps frames equal to the
reference files'; the search before WORDS_CONFIG: 71.99 %, ``phonemes.py --set WORDS_CONFIG={}``); the
PSNR compares frames rendered by one Pipeline (bundled weights) from fast-F0 and official-F0 features of
the same clip, same phonemes, over three windows of the clip (the head-motion LSTM starts afresh in each,
identically for both).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = Path(os.environ.get("AVCT_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data" / "video" / "man_grayhair_address_edtalk_pose_source2_60s.mp4"
IMAGE = SHARED / "data" / "image" / "obama_frontal_facerec.jpg"
QUICK_CLIPS = ["id01921", "id02039"]


def cpu(fn, *args, **kwargs):
    """(result, CPU seconds of this process, wall seconds)."""
    c, w = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.process_time() - c, time.perf_counter() - w


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 frame stacks (mean squared error over all frames)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def render_windows(pipeline, reference, features: np.ndarray, phoneme_ids: np.ndarray, frames: int,
                   windows: int = 3) -> np.ndarray:
    """Frames of ``windows`` windows of ``frames`` frames, spread evenly from the start of the clip."""
    from avct.media import ROWS_PER_FRAME
    from avct.inference.inputs import Speech

    n = min(len(features) // ROWS_PER_FRAME, len(phoneme_ids))
    out = []
    for start in (k * n // windows for k in range(windows)):
        stop = min(start + frames, n)
        speech = Speech(features[start * ROWS_PER_FRAME: stop * ROWS_PER_FRAME].astype(np.float32),
                        phoneme_ids[start:stop])
        out += list(pipeline.frames(reference, speech))
    return np.stack(out)


def phoneme_agreement(clips: list[str] | None) -> tuple[float, float]:
    """(words-mode frame agreement, CPU s per audio s) over the reference clips, as benchmarks/phonemes.py."""
    from phonemes import REF_DIR, run_clip

    names = sorted(p.stem for p in REF_DIR.glob("*.json") if (REF_DIR / f"{p.stem}.wav").exists())
    if clips:
        names = [c for c in names if any(c.startswith(x) for x in clips)]
    results = [run_clip((name, "words", [])) for name in names]
    hits, frames = sum(r["hits"] for r in results), sum(r["frames"] for r in results)
    return hits / frames, sum(r["cpu"] for r in results) / sum(r["audio_s"] for r in results)


def today_phonemes_cpu(samples: np.ndarray) -> float:
    """CPU seconds of words-mode recognition with pocketsphinx's default search (before WORDS_CONFIG)."""
    from avct.audio import recognize

    saved = recognize.WORDS_CONFIG
    try:
        recognize.WORDS_CONFIG = {}
        recognize._drop_decoder("words")
        recognize._decoder("words")
        return cpu(recognize.recognize_phonemes, samples)[1]
    finally:
        recognize.WORDS_CONFIG = saved
        recognize._drop_decoder("words")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clip", default=str(CLIP), help="audio (or video) to time, ideally 60 s")
    parser.add_argument("--quick", action="store_true",
                        help="no 'before' phonemes; agreement on two short clips; 25-frame windows")
    parser.add_argument("--frames", type=int, default=50, help="frames per PSNR window (3 windows)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one core for the networks: the process time then is the work itself
    from avct.audio import recognize
    from avct.audio.decode import load_audio
    from avct.audio.features import acoustic_features
    from avct.audio.phonemes import frame_phoneme_ids
    from avct.weights import default_weights_dir
    from avct.inference.pipeline import Pipeline
    from avct.inference.inputs import Speech, load_reference, load_speech

    recognize._decoder(recognize.DEFAULT_MODE)  # model loading is a one-off per process, not per second
    pipeline = Pipeline.load(default_weights_dir(), device="cpu", batch_size=8, backend="torch")
    reference = load_reference(IMAGE)

    load_audio(args.clip)  # imports and first calls, not per-second costs
    decoded, t_decode, w_decode = cpu(load_audio, args.clip)
    samples, seconds = decoded.samples, decoded.duration_s
    for method in ("fast", "official"):
        acoustic_features(samples[:16000], f0=method)
    fast, t_fast, w_fast = cpu(acoustic_features, samples, f0="fast")
    official, t_official, _ = cpu(acoustic_features, samples, f0="official")
    words, t_phonemes, w_phonemes = cpu(recognize.recognize_phonemes, samples)
    ids = np.asarray(frame_phoneme_ids(words), dtype=np.int64)
    _, t_poses, _ = cpu(pipeline.head_poses, reference, Speech(fast.astype(np.float32), ids))
    t_today = today_phonemes_cpu(samples) if not args.quick else float("nan")
    _, t_load, w_load = cpu(load_speech, args.clip)  # the default front-end in one call, threads and all

    total = t_decode + t_fast + t_phonemes + t_poses
    today = t_decode + t_official + t_today + t_poses
    print(f"clip {Path(args.clip).name}: {seconds:.1f} s of audio; CPU s per audio s")
    print(f"  {'':14s} {'before':>8s} {'default':>8s}")
    for name, before, now in (("decode", t_decode, t_decode), ("features", t_official, t_fast),
                              ("phonemes", t_today, t_phonemes), ("head poses", t_poses, t_poses),
                              ("total", today, total)):
        print(f"  {name:14s} {before / seconds:8.4f} {now / seconds:8.4f}")
    print("  (before: official F0, pocketsphinx default search; default: fast F0, WORDS_CONFIG)")
    print(f"load_speech, recogniser beside the features: {t_load / seconds:.4f} CPU s/s, wall {w_load:.1f} s; "
          f"one after the other: wall {w_decode + w_fast + w_phonemes:.1f} s (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

    f0_fast, f0_off = fast[:, 39], official[:, 39]
    both = (fast[:, 40] == 1) & (official[:, 40] == 1)
    print(f"F0 fast vs official: voicing agrees on {np.mean(fast[:, 40] == official[:, 40]):.3f} of rows, "
          f"median relative error {np.median(np.abs(f0_fast[both] / f0_off[both] - 1)):.4f} on voiced rows")

    frames = 25 if args.quick else args.frames
    a = render_windows(pipeline, reference, fast, ids, frames)
    b = render_windows(pipeline, reference, official, ids, frames)
    quality = psnr(a, b)
    print(f"frames from fast vs official F0: PSNR {quality:.2f} dB over {len(a)} frames")

    agree, phoneme_speed = phoneme_agreement(QUICK_CLIPS if args.quick else None)
    print(f"phoneme agreement (words mode, {'2 clips' if args.quick else 'all reference clips'}): "
          f"{100 * agree:.1f}% at {phoneme_speed:.3f} CPU s per audio s")
    print(f"frontend_cpu_per_s={total / seconds:.4f} f0_fast_vs_official_psnr={quality:.2f} "
          f"phoneme_agreement={agree:.4f}")


if __name__ == "__main__":
    main()

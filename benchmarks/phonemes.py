"""Phoneme accuracy and speed of the offline recogniser against the reference phoneme files.

    .venv/bin/python benchmarks/phonemes.py                 # all clips, all three modes, 2 workers
    .venv/bin/python benchmarks/phonemes.py --modes transcript --clips id01849 --jobs 1
    .venv/bin/python benchmarks/phonemes.py --set TIME_SHIFT_CS=3   # try a tuning constant

Every clip in ``shared/data/phoneme_ref/`` (wav + reference JSON from a stronger recogniser) is turned
into phones three ways: no transcript in "words" mode, no transcript in "allphone" mode, and forced
alignment of the transcript taken from the reference JSON's words. Agreement = share of 25 fps video
frames whose phoneme id (``frame_phoneme_ids``, the official parser) equals the reference's, over the
reference's frame count (our list is padded with its last id / cut if it differs). Speed = CPU seconds
(process time of the worker, decoder loading excluded) per second of audio.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = Path(os.environ.get("AVCT_SHARED", ROOT.parent / "shared"))
REF_DIR = SHARED / "data" / "phoneme_ref"
MODES = ("words", "allphone", "transcript")


def agreement(ours: list[int], ref: list[int]) -> tuple[int, int]:
    """(matching frames, reference frames); ours padded with its last id or cut to the reference length."""
    n = len(ref)
    ours = (list(ours) + [ours[-1]] * n)[:n]
    return int(np.sum(np.asarray(ours) == np.asarray(ref))), n


def _apply_settings(settings: list[str]) -> None:
    """``NAME=value`` overrides of recognize.py's tuning constants (for experiments)."""
    from avct.audio import recognize

    for item in settings:
        name, text = item.split("=", 1)
        if not hasattr(recognize, name):
            raise SystemExit(f"recognize.py has no constant {name}")
        try:
            value = json.loads(text)  # numbers, booleans, dicts
        except json.JSONDecodeError:
            value = text
        setattr(recognize, name, value)


def run_clip(args: tuple[str, str, list[str]]) -> dict:
    """One clip in one mode, in a worker process (the decoders load once per worker)."""
    clip, mode, settings = args
    _apply_settings(settings)
    from avct.audio.decode import load_audio
    from avct.audio.phonemes import frame_phoneme_ids, read_phoneme_json
    from avct.audio.recognize import recognize_phonemes, transcript_from_words

    audio = load_audio(REF_DIR / f"{clip}.wav")
    ref = read_phoneme_json(REF_DIR / f"{clip}.json")
    if mode == "transcript":
        kwargs = {"transcript": transcript_from_words(ref)}
    else:
        kwargs = {"mode": mode}
    from avct.audio import recognize

    recognize._decoder("align" if mode == "transcript" else mode)  # load the models before timing
    t0 = time.process_time()
    words = recognize_phonemes(audio.samples, **kwargs)
    cpu = time.process_time() - t0
    hits, n = agreement(frame_phoneme_ids(words), frame_phoneme_ids(ref))
    return {"clip": clip, "mode": mode, "hits": hits, "frames": n, "cpu": cpu,
            "audio_s": audio.duration_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--clips", nargs="+", help="clip name prefixes (default: all)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    if not REF_DIR.is_dir():
        raise SystemExit(f"reference clips not found: {REF_DIR}")
    clips = sorted(p.stem for p in REF_DIR.glob("*.json") if (REF_DIR / f"{p.stem}.wav").exists())
    if args.clips:
        clips = [c for c in clips if any(c.startswith(x) for x in args.clips)]
    tasks = [(c, m, args.settings) for m in args.modes for c in clips]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_clip, tasks))
    report(results, clips, args.modes)


def report(results: list[dict], clips: list[str], modes: list[str]) -> None:
    by = {(r["clip"], r["mode"]): r for r in results}
    print(f"{'clip':34s} {'audio s':>7s} " + " ".join(f"{m + ' %':>12s}" for m in modes))
    for clip in clips:
        row = " ".join(f"{100 * by[clip, m]['hits'] / by[clip, m]['frames']:12.1f}" for m in modes)
        print(f"{clip:34s} {by[clip, modes[0]]['audio_s']:7.1f} {row}")
    summary = []
    for m in modes:
        rs = [r for r in results if r["mode"] == m]
        acc = 100 * sum(r["hits"] for r in rs) / sum(r["frames"] for r in rs)
        speed = sum(r["cpu"] for r in rs) / sum(r["audio_s"] for r in rs)
        summary.append(f"{m}: {acc:.1f}% frames agree, {speed:.3f} CPU s per audio s")
    total = sum(by[c, modes[0]]["audio_s"] for c in clips)
    print(f"\nSUMMARY ({len(clips)} clips, {total:.0f} s of audio, 25 fps frame agreement): "
          + "; ".join(summary))


if __name__ == "__main__":
    main()

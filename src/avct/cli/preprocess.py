"""``avct preprocess``: talking-head videos -> a training dataset (:mod:`avct.data.preprocess`)."""
from __future__ import annotations

import argparse

from .options import add_quiet


def add_preprocess_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``avct preprocess VIDEO... --out DATASET``."""
    p = subparsers.add_parser(
        "preprocess", help="talking-head videos -> training dataset",
        description="Crop (one fixed 256x256 crop per clip), resample to 25 fps, extract 16 kHz audio, the 41-d "
                    "features, phonemes, head poses and mouth boxes into a dataset folder (docs/dataset.md). "
                    "Resumable: finished clips are skipped on a re-run; bad clips are reported and skipped.")
    p.add_argument("videos", nargs="+", help="video files or folders of them (searched recursively)")
    p.add_argument("--out", required=True, metavar="DATASET", help="dataset folder (created if needed)")
    p.add_argument("--transcripts", metavar="DIR",
                   help="folder of <video stem>.txt transcripts (forced alignment: better phonemes)")
    p.add_argument("--no-phonemes", action="store_true",
                   help="fill the phoneme track with silence instead of recognising speech (fast)")
    p.add_argument("--max-seconds", type=float, metavar="S", help="keep only the first S seconds of every clip")
    p.add_argument("--speaker", metavar="NAME", help="speaker name stored in the index for these clips")
    p.add_argument("--audio-delay", type=float, default=0.0, metavar="S",
                   help="seconds by which the audio track runs late against the picture (negative: early); "
                        "the dataset's audio is shifted to re-sync it (default 0)")
    add_quiet(p)
    p.set_defaults(func=cmd_preprocess)
    return p


def cmd_preprocess(args: argparse.Namespace) -> int:
    """Run preprocess and print the summary; exit status 1 when the dataset ends up with no clip."""
    from ..data.preprocess.run import collect_videos, preprocess, read_transcripts

    videos, _ = collect_videos(args.videos)
    transcripts = read_transcripts(args.transcripts, videos)
    report = preprocess(args.videos, args.out, transcripts=transcripts,
                        phonemes="none" if args.no_phonemes else "recognize",
                        max_seconds=args.max_seconds, speaker=args.speaker, audio_delay=args.audio_delay,
                        progress=not getattr(args, "quiet", False))
    print(report.summary())
    return 0 if report.processed or report.reused else 1

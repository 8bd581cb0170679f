"""``avct evaluate``: argument parsing and the command (the metrics are imported only when it runs)."""
from __future__ import annotations

import argparse

from .options import add_device, add_quiet


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``avct evaluate``."""
    p = subparsers.add_parser(
        "evaluate", help="FID, CPBD, LMD, AVOff, AVConf of generated vs reference videos",
        description="Score generated talking-head videos against reference videos paired by file name "
                    "(the paper's Table-1 metrics). Writes per_video.csv, summary.json, summary.md and plots.")
    p.add_argument("--generated", required=True, nargs="+", metavar="DIR|FILE",
                   help="directory of generated videos, or video files")
    p.add_argument("--reference", required=True, nargs="+", metavar="DIR|FILE",
                   help="directory of ground-truth videos, or video files (same names as the generated ones)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="report directory")
    p.add_argument("--syncnet", metavar="PATH",
                   help="syncnet_v2.model (plain state dict) or a D_sync directory from `avct train syncnet`; "
                        "(`default`: the D_sync bundled with avct, see its MODEL_CARD.md); "
                        "without it AVOff/AVConf are not computed")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="FID/CPBD/LMD on every N-th frame (default 1: all frames, as in the paper)")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="face detection for the SyncNet crops every N frames (default 1)")
    p.add_argument("--batch-size", type=int, default=16, help="Inception batch size (default 16)")
    add_device(p)
    add_quiet(p)
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..eval import report
    from ..eval.evaluate import evaluate

    syncnet = args.syncnet
    if syncnet == "default":
        from ..weights.bundled import default_syncnet_dir

        syncnet = default_syncnet_dir()
    summary = evaluate(args.generated, args.reference, args.output, syncnet=syncnet,
                       progress=not args.quiet, frame_step=args.every, detect_every=args.detect_every,
                       batch_size=args.batch_size, device=args.device)
    print(report.markdown_table(summary))
    for note in summary.get("notes", []):
        print(f"note: {note}")
    print(f"report written to {args.output} (per_video.csv, summary.json, summary.md, plots)")
    return 0

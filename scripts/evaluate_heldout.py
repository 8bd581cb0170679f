"""Evaluate weights on held-out clips beside static baselines and the real clips (MODEL_CARD figures).

    .venv/bin/python scripts/evaluate_heldout.py --data HELDOUT_DATASET --out REPORT_DIR \
        [--checkpoint WEIGHTS] [--syncnet default|PATH]

HELDOUT_DATASET comes from `avct preprocess` on clips the weights never saw. Writes REPORT_DIR/videos/
{reference,generated,classic,static,rendered_static}/*.mp4, `avct evaluate` reports for the model (sharp
path), the classic renderer and the two static baselines (REPORT_DIR/model, REPORT_DIR/classic,
REPORT_DIR/static, REPORT_DIR/rendered_static), and REPORT_DIR/comparison.md: FID, CPBD, LMD, lip r /
amplitude / silence gap, sharpness and AVOff/AVConf of each and of the real clips, per clip and averaged
(printed too).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="preprocessed dataset of held-out clips")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--checkpoint", action="append", help="weights (default: the bundled ones); repeatable")
    p.add_argument("--syncnet", default="default",
                   help="SyncNet for AVOff/AVConf (default: the bundled D_sync, trained on one speaker)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = p.parse_args(argv)

    from avct.weights import DEFAULT_NAME, default_syncnet_dir
    from avct.eval.heldout import BUNDLED_DSYNC_LABEL, comparison_markdown, evaluate_variants, reconstruct_clips
    from avct.io_utils import atomic_write_text
    from avct.inference.pipeline import Pipeline

    # the weights' own figures (PyTorch), the same whether or not set-up prepared the int8 renderer
    pipeline = Pipeline.load(args.checkpoint, precision=args.precision, backend="torch")
    out = Path(args.out)
    folders = reconstruct_clips(args.data, out / "videos", pipeline)
    bundled = args.syncnet == DEFAULT_NAME
    syncnet = default_syncnet_dir() if bundled else args.syncnet
    summaries = evaluate_variants(folders, out, syncnet=syncnet)
    table = comparison_markdown(summaries, out, BUNDLED_DSYNC_LABEL if bundled else f"SyncNet weights {syncnet}")
    atomic_write_text(out / "comparison.md", table)
    atomic_write_text(out / "comparison.json", json.dumps(summaries, indent=1, default=str))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

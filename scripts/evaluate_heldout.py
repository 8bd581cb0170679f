"""Evaluate weights on held-out clips against a static baseline (the bundled weights' MODEL_CARD figures).

    .venv/bin/python scripts/evaluate_heldout.py --data HELDOUT_DATASET --out REPORT_DIR \
        [--checkpoint WEIGHTS] [--syncnet default|PATH]

HELDOUT_DATASET comes from `avct preprocess` on clips the weights never saw. Writes REPORT_DIR/videos/
{reference,generated,classic,static,rendered_static}/*.mp4, `avct evaluate` reports for the model (sharp
path), the classic renderer and the two static baselines (REPORT_DIR/model, REPORT_DIR/classic,
REPORT_DIR/static, REPORT_DIR/rendered_static), and prints the tables.
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
    p.add_argument("--syncnet", default="default", help="SyncNet for AVOff/AVConf (default: the bundled D_sync)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = p.parse_args(argv)

    from avct.checkpoints import load_models, merge_models
    from avct.default_weights import default_syncnet_dir, resolve_checkpoint
    from avct.eval import report
    from avct.eval.evaluate import evaluate
    from avct.eval.heldout import reconstruct_clips
    from avct.pipeline import Pipeline

    models = merge_models([load_models(resolve_checkpoint(c)) for c in args.checkpoint or [None]])
    pipeline = Pipeline(models, precision=args.precision)
    out = Path(args.out)
    folders = reconstruct_clips(args.data, out / "videos", pipeline)
    syncnet = default_syncnet_dir() if args.syncnet == "default" else args.syncnet
    results = {}
    for name, variant in (("model", "generated"), ("classic", "classic"), ("static", "static"),
                          ("rendered_static", "rendered_static")):
        summary = evaluate(folders[variant], folders["reference"], out / name, syncnet=syncnet, progress=False)
        results[name] = summary
        print(f"## {name} ({variant} vs reference)")
        print(report.markdown_table(summary))
    (out / "comparison.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

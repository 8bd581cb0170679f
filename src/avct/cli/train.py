"""`avct train {renderer,syncnet,avct,headmotion,lips}`: parser and command function.

``add_train_parser(subparsers)`` and ``cmd_train(args)`` are wired into avct's CLI; ``main`` lets
``torchrun -m avct.cli.train headmotion ...`` (or ``python -m``) run the command on its own.
Under torchrun every process runs the same command; only rank 0 prints.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..train.config import STAGE_NAMES
from .options import add_device, add_quiet

EPILOG = """\
examples:
  avct train renderer   --config small --data DATA --out runs/renderer
  avct train syncnet    --config small --data DATA --out runs/syncnet
  avct train avct       --config small --data DATA --out runs/avct --renderer runs/renderer --syncnet runs/syncnet
  avct train headmotion --config small --data DATA --out runs/headmotion
  avct train headmotion --out runs/headmotion --resume          # continue where it stopped
  avct train lips       --config small --data DATA --out runs/lips   # speech -> lip aperture (any speakers)
  torchrun --nproc_per_node 4 -m avct train avct --config official ...   # 4 GPUs (DDP)
"""


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train one stage (renderer, syncnet, avct, headmotion, lips)",
        description="Train one stage of AVCT on a dataset written by `avct preprocess`. Runs on one CPU/GPU, "
                    "or on several GPUs/nodes under torchrun (DDP). Checkpoints, TensorBoard logs and the "
                    "exported weights go to --out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=STAGE_NAMES, help="what to train")
    p.add_argument("--config", help="preset (official, small) or a YAML file of overrides; "
                                    "with --resume defaults to RUN_DIR/config.yaml")
    p.add_argument("--data", metavar="DATASET", help="dataset directory (index.json + clips/)")
    p.add_argument("--out", metavar="RUN_DIR", required=True, help="run directory (created)")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="stop after N steps of the run in total (the schedule still follows the config)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its latest checkpoint")
    p.add_argument("--renderer", metavar="PATH",
                   help="trained renderer: a renderer RUN_DIR, avct weights, or the official generator.ckpt")
    p.add_argument("--syncnet", metavar="PATH", help="trained lip-sync discriminator: a syncnet RUN_DIR or weights")
    p.add_argument("--headmotion", metavar="PATH", help="head-motion weights to start from (fine-tuning)")
    p.add_argument("--avct", metavar="PATH", help="AVCT weights to start from (fine-tuning, e.g. a second phase)")
    p.add_argument("--lips", metavar="PATH", help="lip-aperture weights to start from (fine-tuning)")
    add_device(p)
    add_quiet(p)
    p.set_defaults(func=cmd_train)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from ..train.engine import train

    init = {role: Path(getattr(args, role)) for role in ("renderer", "syncnet", "headmotion", "avct", "lips")
            if getattr(args, role, None)}
    result = train(args.stage, args.config, args.data, args.out, max_steps=args.max_steps, resume=args.resume,
                   init=init, device=args.device, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        state = "finished" if result.finished else "stopped"
        print(f"{args.stage}: {state} at step {result.step}; weights: {result.weights_dir}"
              + ("" if result.finished else f" (continue with --resume --out {args.out})"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avct")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub)
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in STAGE_NAMES:  # `python -m avct.cli.train headmotion ...`
        argv = ["train", *argv]
    from .runner import run_command

    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

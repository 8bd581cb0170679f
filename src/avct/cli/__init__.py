"""Command line: the ``avct`` parser of every command (one module per command group in this package,
thin wrappers that parse arguments, call the library and print); ``runner.run_command`` runs them.

Every error a user can cause surfaces as one line on stderr and a non-zero exit; no tracebacks.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from .runner import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avct", description="One-shot talking-head generation (AVCT).")
    parser.add_argument("--version", action="version", version=f"avct {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .convert import add_convert_parser
    from .evaluate import add_evaluate_parser
    from .frontend import add_phonemes_parser, add_pose_parser
    from .generate import add_batch_parser, add_generate_parser
    from .preprocess import add_preprocess_parser
    from .serve import add_serve_parser
    from .train import add_train_parser

    for add in (add_generate_parser, add_batch_parser, add_convert_parser, add_phonemes_parser, add_pose_parser,
                add_preprocess_parser, add_train_parser, add_evaluate_parser, add_serve_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Command line: the ``avct`` parser of every command (one module per command group in this package,
thin wrappers that parse arguments, call the library and print) and the one ``run_command``.

Every error a user can cause surfaces as one line on stderr and a non-zero exit; no tracebacks.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .. import __version__
from ..errors import AvctError, AvctNotice


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


def _show_notices(show_others):
    """A ``warnings.showwarning`` that prints AvctNotices as plain notes and leaves the rest alone."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, AvctNotice):
            print(f"avct: note: {message}", file=sys.stderr)
        else:
            show_others(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and a non-zero exit, notices
    (:class:`~avct.errors.AvctNotice`) one ``avct: note:`` line each."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AvctNotice)
            warnings.showwarning = _show_notices(warnings.showwarning)
            return args.func(args)
    except AvctError as e:
        print(f"avct: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("avct: interrupted; no partial output left behind", file=sys.stderr)
        return 130
    except MemoryError:
        print("avct: error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 1
    except OSError as e:  # the machine, not the input: disk full, permissions, I/O errors (one line, no traceback)
        where = f": {e.filename}" if e.filename else ""
        print(f"avct: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

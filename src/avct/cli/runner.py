"""Running a parsed command: the one place where a user's error becomes one line and an exit status.

Why apart from the parser: the per-command entry points (``python -m avct.cli.train``) run commands
too, and must not import the package that imports them."""
from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import AvctError, AvctNotice


def _show_notices(show_others):
    """A ``warnings.showwarning`` that prints AvctNotices as plain notes and leaves the rest alone."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, AvctNotice):
            print(f"avct: note: {message}", file=sys.stderr)
        else:
            show_others(message, category, filename, lineno, file, line)
    return show


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

"""A transcript given as text or as the path of a text file (CLI ``--transcript``, batch columns)."""
from __future__ import annotations

from pathlib import Path

from ..errors import AvctError

TRANSCRIPT_SUFFIXES = frozenset({".txt", ".lab", ".text"})


def looks_like_transcript_file(value: str) -> bool:
    """A short value ending in .txt/.lab/.text names a file; anything else is the text itself."""
    return len(value) < 4096 and Path(value).suffix.lower() in TRANSCRIPT_SUFFIXES


def read_transcript(value: str | None) -> str | None:
    """The text of ``value``: read from the file it names (see ``looks_like_transcript_file``), else itself."""
    if value is None:
        return None
    if looks_like_transcript_file(value):
        path = Path(value)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AvctError(f"transcript file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise AvctError(f"cannot read transcript {path}: {e}") from None
    return value

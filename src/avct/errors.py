"""The exception type for problems a user can cause, and the warning type for what a user should know.

``AvctError``: the CLI prints its message as a single line and exits non-zero; anything else is a bug
and may show a traceback. ``AvctNotice``: something avct decided on the user's behalf (which face, a
fallback); the library issues it as a normal Python warning (filterable, ``pytest.warns``-able) and the
CLI prints it as one plain ``avct: note: ...`` line instead of Python's warning format.
"""
from __future__ import annotations

import warnings


class AvctError(Exception):
    """A user-facing error whose message is a complete, one-line explanation."""


class AvctNotice(UserWarning):
    """A one-line note for the user: the job goes on, but they may want to choose differently."""


def notice(message: str, category: type[AvctNotice] = AvctNotice) -> None:
    """Issue ``message`` (one line) as an :class:`AvctNotice` (or a subclass)."""
    warnings.warn(message, category, stacklevel=3)

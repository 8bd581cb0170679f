"""The one exception type for problems a user can cause (bad file, wrong checkpoint, ...).

The CLI prints its message as a single line and exits non-zero; anything else is a bug and may
show a traceback.
"""


class AvctError(Exception):
    """A user-facing error whose message is a complete, one-line explanation."""

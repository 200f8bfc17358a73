"""The one exception type that the CLI turns into a sentence and exit code 2."""

from __future__ import annotations


class MechvizError(Exception):
    """A user-facing error: bad input, a missing model, an invalid trace.

    The message is one complete sentence that says what to do; the CLI prints it
    without a traceback and exits with code 2.
    """

"""The one exception type that the CLI turns into a sentence and exit code 2."""

from __future__ import annotations


class MechvizError(ValueError):
    """A user-facing error: bad input, a missing model, an invalid trace.

    The message is one complete sentence that says what to do; the CLI prints it
    without a traceback and exits with code 2. It is a ``ValueError``, so Python
    code may catch either.
    """


class Stopped(BaseException):  # noqa: N818 (a signal, not an error)
    """SIGINT or SIGTERM, raised in the main thread so that every ``finally`` cleans up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_stop_signals: list[int] = []


def request_stop(signum: int, frame: object = None) -> None:
    """Signal handler: remember the signal (in case C code swallows the raise), then raise."""
    _stop_signals.append(signum)
    raise Stopped(signum)


def quiet_unraisable(unraisable: object) -> None:
    """``sys.unraisablehook`` that drops a :class:`Stopped` raised inside a callback.

    A signal can land in a weakref callback or ``__del__``, where Python prints
    the exception and carries on; the stop is remembered and takes effect at the
    next :func:`raise_if_stopped`, so the printed traceback would only be noise.
    """
    import sys

    if not isinstance(getattr(unraisable, "exc_value", None), Stopped):
        sys.__unraisablehook__(unraisable)  # type: ignore[arg-type]


def raise_if_stopped() -> None:
    """Call before making a result final: a stop that was swallowed still stops here."""
    if _stop_signals:
        raise Stopped(_stop_signals[0])

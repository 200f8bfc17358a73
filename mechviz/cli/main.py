"""The ``mechviz`` command group: errors as one sentence, signals, and its commands."""

from __future__ import annotations

import signal
import sys

import click

from mechviz import __version__
from mechviz.cli.common import (
    err,
    fail,
)
from mechviz.errors import MechvizError, Stopped, quiet_unraisable, request_stop


class Group(click.Group):
    """Turns a :class:`MechvizError` or a usage error into one sentence and exit code 2.

    SIGINT and SIGTERM unwind the stack (temporary files and render folders are
    removed on the way) and exit with 130 and 143.
    """

    def main(self, *args: object, **kwargs: object) -> object:
        kwargs["standalone_mode"] = False
        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        sys.unraisablehook = quiet_unraisable
        try:
            return super().main(*args, **kwargs)  # type: ignore[arg-type]
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            err.print("Interrupted; nothing was written.")
            sys.exit(130)
        except click.ClickException as exc:
            fail(exc.format_message().rstrip(".") + "." + _hint(exc))
        except MechvizError as exc:
            fail(str(exc))
        except (KeyboardInterrupt, Stopped) as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            word = "Terminated" if signum == signal.SIGTERM else "Interrupted"
            err.print(f"{word}; nothing was written.")
            sys.exit(128 + signum)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return None


def _hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return ""
    takes_prompt = any(p.name == "prompt" for p in ctx.command.params)
    if isinstance(exc, click.NoSuchOption) and takes_prompt:
        return (
            " If that is the start of your prompt, put -- before the prompt: "
            f"`{ctx.command_path} -- '-1 is less than'`."
        )
    return f" (see `{ctx.command_path} --help`)"


@click.group(cls=Group)
@click.version_option(__version__, prog_name="mechviz")
def main() -> None:
    """Explainer animations from one real forward pass of a language model."""


def _register() -> None:
    """Add every command module's commands to :func:`main`."""
    from mechviz.cli.analyze import analyze
    from mechviz.cli.inspect import features, heads, inspect, neurons
    from mechviz.cli.patch import patch
    from mechviz.cli.scene import list_scenes, scene
    from mechviz.cli.trace import trace
    from mechviz.cli.train import train_lens, train_sae

    for command in (trace, scene, list_scenes, patch, analyze, inspect, neurons, heads,
                    train_lens, train_sae, features):  # fmt: skip
        main.add_command(command)


_register()

"""The ``mechviz`` command line: trace, inspect, scene and scenes."""

from __future__ import annotations

import hashlib
import signal
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape

from mechviz import __version__
from mechviz.errors import MechvizError, Stopped, quiet_unraisable, request_stop
from mechviz.tokens import check_prompt

err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one red sentence (user text shown as typed) and exit with code 2."""
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


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


def model_options(func):  # type: ignore[no-untyped-def]
    """Options shared by every command that loads a model."""
    options = [
        click.option(
            "--model",
            "-m",
            default=None,
            metavar="MODEL",
            help="Hugging Face id, local folder or .gguf file "
            "[default: SmolLM2-135M-Instruct, offline].",
        ),
        click.option(
            "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
        ),
        click.option(
            "--dtype",
            default="float32",
            show_default=True,
            type=click.Choice(["float32", "bfloat16", "float16"]),
        ),
        click.option(
            "--device-map",
            default=None,
            type=click.Choice(["auto"]),
            help="Shard a model too large for one GPU across all of them (accelerate).",
        ),
        click.option(
            "--top-k", default=10, show_default=True, type=int, help="Tokens kept per distribution."
        ),
        click.option(
            "--max-tokens",
            default=64,
            show_default=True,
            type=int,
            help="Refuse prompts longer than this many tokens.",
        ),
        click.option("--full", is_flag=True, help="Also store full residual vectors (large)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_trace(
    prompt: str,
    *,
    model: str | None,
    device: str,
    dtype: str,
    device_map: str | None,
    top_k: int,
    max_tokens: int,
    full: bool,
):  # type: ignore[no-untyped-def]
    """Load the model and trace ``prompt`` (imports torch only when called)."""
    from mechviz.models import load_model
    from mechviz.tracing import TraceOptions, trace_prompt

    if max_tokens < 1:
        raise MechvizError(f"--max-tokens must be at least 1; got {max_tokens}.")
    if top_k < 1:
        raise MechvizError(f"--top-k must be at least 1; got {top_k}.")
    check_prompt(prompt)
    loaded = load_model(model, device=device, dtype=dtype, device_map=device_map)
    return trace_prompt(loaded, prompt, TraceOptions(top_k=top_k, max_tokens=max_tokens, full=full))


@main.command()
@click.argument("prompt")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("trace.json"),
    show_default=True,
    help="Where to write the trace.",
)
@model_options
def trace(prompt: str, output: Path, **kwargs: object) -> None:
    """Trace PROMPT through the model and write a JSON trace."""
    from mechviz.io import check_writable, save_trace

    check_prompt(prompt)
    check_writable(output)  # before the slow part
    start = time.perf_counter()
    result = make_trace(prompt, **kwargs)  # type: ignore[arg-type]
    save_trace(result, output)
    token, prob = result.prediction
    n = result.n_positions
    say(
        f"Wrote {output} ({output.stat().st_size / 1024:.0f} KiB, {n} token{'s' * (n != 1)}, "
        f"{time.perf_counter() - start:.1f} s); next token: {result.token_text(token)!r} "
        f"({prob:.2f})."
    )


def say(message: str) -> None:
    """A progress or result line on stderr, printed exactly as written."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@main.command()
@click.argument("name")
@click.option(
    "--trace",
    "trace_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Trace to draw [default: the example trace of the default model].",
)
@click.option("--prompt", default=None, help="Trace this prompt first (with --model) and draw it.")
@click.option(
    "--quality",
    "-q",
    default="low",
    show_default=True,
    type=click.Choice(["low", "medium", "high", "4k"]),
)
@click.option(
    "--format",
    "fmt",
    default=None,
    type=click.Choice(["gif", "mp4", "png"]),
    help="png saves the last frame [default: from the -o extension, else gif].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write [default: renders/<trace-stem>/<Scene>.<ext>].",
)
@click.option("--layer", type=int, default=None, help="Attention: the layer to show.")
@click.option("--head", type=int, default=None, help="Attention: the head to show.")
@model_options
def scene(
    name: str,
    trace_file: Path | None,
    prompt: str | None,
    quality: str,
    fmt: str | None,
    output: Path | None,
    layer: int | None,
    head: int | None,
    **kwargs: object,
) -> None:
    """Render scene NAME from a trace (see `mechviz scenes`)."""
    from mechviz.io import check_writable, load_trace, save_trace
    from mechviz.render import FORMATS, default_output, render_scene, scene_class
    from mechviz.visual.settings import SceneSettings, example_trace

    ctx = click.get_current_context()
    scene_class(name)  # an unknown name fails before any slow work
    if prompt is not None:
        check_prompt(prompt)
    if trace_file is not None and prompt is not None:
        raise MechvizError("Give either --trace or --prompt, not both.")
    if name != "Attention" and (layer is not None or head is not None):
        raise MechvizError(f"--layer and --head apply to the Attention scene only, not {name}.")
    given = [k for k in kwargs if ctx.get_parameter_source(k) != ParameterSource.DEFAULT]
    if prompt is None and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise MechvizError(
            f"Model options ({flags}) apply only with --prompt; a trace file is already made."
        )
    fmt = _format(fmt, output, FORMATS)
    if prompt is not None:
        trace_file = Path("renders") / f"{_slug(prompt)}.json"
    trace_file = trace_file or example_trace()
    make_parents = output is None  # renders/<stem>/ is made; a folder the user names must exist
    output = output or default_output(trace_file, name, fmt)
    check_writable(output, make_parents=make_parents)  # before the slow part
    if prompt is not None:
        check_writable(trace_file, make_parents=True)
        made = make_trace(prompt, **kwargs)  # type: ignore[arg-type]
        _check_layer_head(made, layer, head)
        trace_file.parent.mkdir(exist_ok=True)
        save_trace(made, trace_file)
    trace = load_trace(trace_file)
    _check_layer_head(trace, layer, head)
    start = time.perf_counter()
    settings = SceneSettings(trace=trace_file, layer=layer, head=head)
    path = render_scene(
        name,
        settings,
        quality,
        fmt,
        output,
        progress=sys.stderr.isatty(),
        make_parents=make_parents,
    )
    say(
        f"Wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - start:.1f} s)."
    )


def _format(fmt: str | None, output: Path | None, formats: tuple[str, ...]) -> str:
    """The format: --format, else the extension of -o, else gif; they must agree."""
    ext = output.suffix.lower().lstrip(".") if output is not None else ""
    if fmt and ext and ext != fmt:
        raise MechvizError(f"--format {fmt} does not match the extension of {output}.")
    if not fmt and ext and ext not in formats:
        raise MechvizError(
            f"Cannot tell the format from {output}; use a .gif, .mp4 or .png name or --format."
        )
    return fmt or ext or "gif"


@main.command(name="scenes")
def list_scenes() -> None:
    """List the scenes, one line each."""
    from mechviz.scenes import SCENES

    width = max(map(len, SCENES))
    for name, (_, line) in SCENES.items():
        click.echo(f"{name:<{width}}  {line}")


def _slug(text: str) -> str:
    """A file name for a prompt's trace: its words, and a hash so prompts never collide."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{'_'.join(words)[:40] or 'trace'}-{digest}"


def _check_layer_head(trace: object, layer: int | None, head: int | None) -> None:
    L, H = trace.model.n_layers, trace.model.n_heads  # type: ignore[attr-defined]
    if layer is not None and not 0 <= layer < L:
        raise MechvizError(f"--layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if head is not None and not 0 <= head < H:
        raise MechvizError(f"--head {head} is out of range; this model has heads 0 to {H - 1}.")


@main.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
def inspect(trace_file: Path) -> None:
    """Print the logit lens of a trace as a layer-by-position table."""
    from mechviz.io import load_trace
    from mechviz.report import print_report

    print_report(load_trace(trace_file), Console())

"""The ``mechviz`` command line: trace, inspect (and, later, scene)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console

from mechviz import __version__
from mechviz.errors import MechvizError

err = Console(stderr=True)


class Group(click.Group):
    """Turns a :class:`MechvizError` into one red sentence and exit code 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MechvizError as exc:
            err.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            err.print("Interrupted; nothing was written.")
            sys.exit(130)


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
    if not prompt.strip():
        raise MechvizError("The prompt is empty; give some text to trace.")
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

    check_writable(output)  # before the slow part
    start = time.perf_counter()
    result = make_trace(prompt, **kwargs)  # type: ignore[arg-type]
    save_trace(result, output)
    token, prob = result.prediction
    err.print(
        f"Wrote {output} ({output.stat().st_size / 1024:.0f} KiB, {result.n_positions} tokens, "
        f"{time.perf_counter() - start:.1f} s); next token: {result.token_text(token)!r} "
        f"({prob:.2f}).",
        highlight=False,
    )


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
    default="gif",
    show_default=True,
    type=click.Choice(["gif", "mp4", "png"]),
    help="png saves the last frame.",
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
    fmt: str,
    output: Path | None,
    layer: int | None,
    head: int | None,
    **kwargs: object,
) -> None:
    """Render scene NAME from a trace (see `mechviz scenes`)."""
    from mechviz.io import load_trace, save_trace
    from mechviz.render import render_scene, scene_class
    from mechviz.visual.settings import SceneSettings, example_trace

    scene_class(name)  # an unknown name fails before any slow work
    if trace_file is not None and prompt is not None:
        raise MechvizError("Give either --trace or --prompt, not both.")
    if prompt is not None:
        trace_file = Path("renders") / f"{_slug(prompt)}.json"
        trace_file.parent.mkdir(exist_ok=True)
        save_trace(make_trace(prompt, **kwargs), trace_file)  # type: ignore[arg-type]
    trace_file = trace_file or example_trace()
    trace = load_trace(trace_file)
    _check_layer_head(trace, layer, head)
    start = time.perf_counter()
    settings = SceneSettings(trace=trace_file, layer=layer, head=head)
    path = render_scene(name, settings, quality, fmt, output)
    err.print(
        f"Wrote {path} ({path.stat().st_size / 1024:.0f} KiB, "
        f"{time.perf_counter() - start:.1f} s).",
        highlight=False,
    )


@main.command(name="scenes")
def list_scenes() -> None:
    """List the scenes, one line each."""
    from mechviz.scenes import SCENES

    width = max(map(len, SCENES))
    for name, (_, line) in SCENES.items():
        click.echo(f"{name:<{width}}  {line}")


def _slug(text: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return "_".join(words)[:48] or "trace"


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

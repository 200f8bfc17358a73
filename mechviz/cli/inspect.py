"""The commands that print a trace: ``inspect``, ``neurons``, ``heads``, ``features``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from mechviz.errors import MechvizError


@click.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option(
    "--position",
    "-p",
    type=int,
    default=-1,
    show_default=True,
    help="Position read by the attribution and dictionary tables (-1: the last).",
)
def inspect(trace_file: Path, position: int) -> None:
    """Print the logit lens of a trace, and every analysis it holds, as tables."""
    from mechviz.cli.report import print_report
    from mechviz.tracing.io import load_trace

    print_report(load_trace(trace_file), Console(), position=position)


@click.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option("--layer", type=int, default=None, help="Only this layer [default: every layer].")
@click.option(
    "--above", type=float, default=None, help="Upper threshold [default: the trace's, 3]."
)
@click.option(
    "--below", type=float, default=None, help="Lower threshold [default: the trace's, 0]."
)
@click.option(
    "--relative/--absolute",
    default=None,
    help="Thresholds in standard deviations of each layer, or in activation units "
    "[default: as traced].",
)
@click.option("--top", default=5, show_default=True, type=int, help="Neurons shown per layer.")
def neurons(
    trace_file: Path,
    layer: int | None,
    above: float | None,
    below: float | None,
    relative: bool | None,
    top: int,
) -> None:
    """Per layer, how many MLP neurons fire above or below the thresholds, and on which tokens."""
    from mechviz.cli.report import print_neurons
    from mechviz.tracing.io import load_trace

    print_neurons(
        load_trace(trace_file),
        Console(),
        layer=layer,
        above=above,
        below=below,
        relative=relative,
        top=top,
    )


@click.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option(
    "--criterion",
    "-c",
    default=None,
    help="direct, against, from-last, previous or peaked [default: every one].",
)
@click.option("-n", default=10, show_default=True, type=int, help="Heads per table.")
def heads(trace_file: Path, criterion: str | None, n: int) -> None:
    """List the top heads of a trace under each criterion, with what each attends to."""
    from mechviz.analyses.heads import print_heads
    from mechviz.tracing.io import load_trace

    print_heads(load_trace(trace_file), Console(), criterion=criterion, n=n)


@click.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option(
    "--position", "-p", type=int, default=None, help="Only this position [default: every one]."
)
@click.option("--top", default=5, show_default=True, type=int, help="Features shown per position.")
def features(trace_file: Path, position: int | None, top: int) -> None:
    """Print each position's most active SAE features, with what each one responds to."""
    from mechviz.cli.report import print_features
    from mechviz.tracing.io import load_trace

    if top < 1:
        raise MechvizError(f"--top must be at least 1; got {top}.")
    print_features(load_trace(trace_file), Console(), position=position, top=top)

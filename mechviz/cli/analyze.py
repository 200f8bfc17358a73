"""``mechviz analyze``: add attribution, dictionaries, similarity and weights to a trace."""

from __future__ import annotations

from pathlib import Path

import click

from mechviz.cli.common import (
    say,
)
from mechviz.errors import MechvizError


@click.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option("--attribution", is_flag=True, help="Direct logit attribution of every position.")
@click.option(
    "--versus",
    default=None,
    metavar="TOKEN",
    help='With --attribution: also split logit(top-1) - logit(TOKEN), e.g. " London".',
)
@click.option("--dictionaries", is_flag=True, help="Decode every layer with W_E, W_U, middle.")
@click.option(
    "--middle-layers",
    default=3,
    show_default=True,
    type=int,
    help="Layers each prompt token runs through to make the middle dictionary.",
)
@click.option("--similarity", is_flag=True, help="Cosines of W_E rows for --words.")
@click.option(
    "--words",
    default=None,
    metavar="W1,W2,...",
    help="Comma-separated words for --similarity, each one token [default: the seed's ten].",
)
@click.option("--weights", is_flag=True, help="sigma/mean of W_Q..W_O, parameter tally, heads.")
@click.option(
    "--model",
    "-m",
    default=None,
    metavar="MODEL",
    help="The model that made the trace [default: the one it records].",
)
@click.option(
    "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the analysed trace here [default: over TRACE_FILE].",
)
def analyze(
    trace_file: Path,
    attribution: bool,
    versus: str | None,
    dictionaries: bool,
    middle_layers: int,
    similarity: bool,
    words: str | None,
    weights: bool,
    model: str | None,
    device: str,
    output: Path | None,
) -> None:
    """Add analyses that read the model again to a trace; no flag means all of them.

    Loads the model the trace names and refuses when its weights differ from
    the ones recorded. `mechviz inspect` prints the results; the scenes
    LogitAttribution, Dictionaries, EmbeddingSimilarity and WeightStats draw them.
    """
    from mechviz.api import analyze as run
    from mechviz.tracing.io import load_trace, save_trace

    if versus is not None and not attribution and (dictionaries or similarity or weights):
        raise MechvizError("--versus needs --attribution (or no analysis flag, for all).")
    chosen = {"attribution": attribution, "dictionaries": dictionaries}
    chosen |= {"similarity": similarity, "weights": weights}
    if not any(chosen.values()):
        chosen = dict.fromkeys(chosen, True)
    word_list = None
    if words is not None:
        word_list = [w for w in words.split(",") if w != ""]
        if not word_list:
            raise MechvizError("--words is empty; give comma-separated words.")
    trace = load_trace(trace_file)
    done = run(
        trace,
        model=model,
        device=device,
        versus=versus,
        middle_layers=middle_layers,
        words=word_list,
        **chosen,
    )
    target = output or trace_file
    save_trace(done, target)
    added = ", ".join(name for name, on in chosen.items() if on)
    say(f"Added {added} to {target}; print them with `mechviz inspect {target}`.")

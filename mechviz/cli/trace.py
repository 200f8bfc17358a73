"""``mechviz trace``: a prompt (or a file of prompts) to a trace file."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mechviz.cli.common import (
    make_trace,
    model_options,
    read_prompts,
    say,
    trace_file_names,
)
from mechviz.errors import MechvizError
from mechviz.model.tokens import check_prompt


@click.command()
@click.argument("prompt", nargs=-1)
@click.option(
    "-f",
    "--file",
    "prompt_file",
    type=click.Path(dir_okay=True, path_type=Path, allow_dash=True),
    default=None,
    help="Trace every line of this file (- for stdin), one model load for all.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write: a file for one prompt [default: trace.json]; a folder for "
    "several [default: traces/].",
)
@model_options
@click.option(
    "--width",
    default=1000,
    show_default=True,
    type=int,
    metavar="PX",
    help="Width of the whole-model picture: pooled values kept per row.",
)
@click.option(
    "--neuron-above",
    default=3.0,
    show_default=True,
    type=float,
    help="Neurons above this on some token are selected.",
)
@click.option(
    "--neuron-below",
    default=0.0,
    show_default=True,
    type=float,
    help="Neurons below this on some token are selected.",
)
@click.option(
    "--relative",
    "neuron_relative",
    is_flag=True,
    help="Neuron thresholds in units of each layer's standard deviation.",
)
@click.option(
    "--ablate",
    multiple=True,
    metavar="L.H",
    help="Remove a head's output (5.3; 7.* for every head of layer 7); repeatable.",
)
@click.option(
    "--ablate-mlp", multiple=True, type=int, metavar="L", help="Remove layer L's MLP output."
)
@click.option(
    "--ablate-mode",
    default="zero",
    show_default=True,
    type=click.Choice(["zero", "mean"]),
    help="Ablate to zero, or to the output's mean over positions.",
)
@click.option(
    "--freeze",
    multiple=True,
    metavar="L.H",
    help="Fix a head's attention pattern to the one it has on --freeze-from; repeatable.",
)
@click.option(
    "--freeze-from",
    default=None,
    metavar="PROMPT",
    help="The prompt (same length in tokens) the frozen patterns come from.",
)
@click.option(
    "--tuned-lens",
    is_flag=True,
    help="Also read every layer with the tuned lens (train it first: mechviz train-lens).",
)
@click.option(
    "--sae",
    is_flag=True,
    help="Also record the sparse-autoencoder features of a layer (mechviz train-sae).",
)
@click.option(
    "--sae-layer",
    type=int,
    default=None,
    metavar="L",
    help="The layer --sae reads [default: the middle one]; implies --sae.",
)
def trace(
    prompt: tuple[str, ...], prompt_file: Path | None, output: Path | None, **kwargs: object
) -> None:
    """Trace PROMPT through the model and write a JSON trace.

    Several prompts (as arguments, or one per line with -f) load the model once
    and write one trace each into the -o folder, numbered in order. With
    --ablate, --ablate-mlp or --freeze the trace records the changed run, and
    what changed with the run before it.
    """
    from mechviz.files import check_writable
    from mechviz.tracing.io import save_trace
    from mechviz.tracing.specs import Changes

    sae_layer = kwargs.pop("sae_layer")
    if sae_layer is not None:
        kwargs["sae"] = sae_layer
    asked = {k: kwargs[k] for k in ("ablate", "ablate_mlp", "freeze", "freeze_from")}
    Changes(mode=kwargs["ablate_mode"], **asked).check()  # type: ignore[arg-type]

    prompts = list(prompt) + (read_prompts(prompt_file) if prompt_file is not None else [])
    if not prompts:
        raise MechvizError("Give a prompt to trace, or -f FILE with one prompt per line.")
    for i, text in enumerate(prompts):
        try:
            check_prompt(text)
        except MechvizError as exc:
            raise MechvizError(f"Prompt {i + 1}: {exc}" if len(prompts) > 1 else str(exc)) from None
    start = time.perf_counter()
    if len(prompts) == 1 and prompt_file is None:
        output = output or Path("trace.json")
        if output.is_dir():
            raise MechvizError(f"{output} is a folder; give a file name for the trace.")
        check_writable(output)  # before the slow part
        result = make_trace(prompts[0], **kwargs)  # type: ignore[arg-type]
        save_trace(result, output)
        token, prob = result.prediction
        n = result.n_positions
        say(
            f"Wrote {output} ({output.stat().st_size / 1024:.0f} KiB, {n} token{'s' * (n != 1)}, "
            f"{time.perf_counter() - start:.1f} s); next token: {result.token_text(token)!r} "
            f"({prob:.2f})."
        )
        return
    folder = output or Path("traces")
    if folder.exists() and not folder.is_dir():
        raise MechvizError(f"{folder} is a file; with several prompts -o names a folder.")
    names = trace_file_names(prompts)
    check_writable(folder / names[0], make_parents=True)  # the folder is made once traced
    results = make_trace(prompts, **kwargs)  # type: ignore[arg-type]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MechvizError(f"Cannot make folder {folder}: {exc.strerror or exc}.") from None
    for name, result in zip(names, results):
        save_trace(result, folder / name)
        token, prob = result.prediction
        say(f"Wrote {folder / name}; next token: {result.token_text(token)!r} ({prob:.2f}).")
    say(
        f"Traced {len(prompts)} prompts into {folder} in {time.perf_counter() - start:.1f} s "
        "(one model load)."
    )

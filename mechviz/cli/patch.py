"""``mechviz patch``: activation patching between a clean and a corrupt prompt."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mechviz.cli.common import (
    model_options,
    say,
)
from mechviz.errors import MechvizError


@click.command()
@click.option("--clean", required=True, metavar="PROMPT", help="The run patched from.")
@click.option(
    "--corrupt",
    required=True,
    metavar="PROMPT",
    help="The run patched into; the same number of tokens.",
)
@click.option("--answer", default=None, metavar="TOKEN", help="Default: the clean top-1.")
@click.option("--wrong", default=None, metavar="TOKEN", help="Default: the corrupt top-1.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("patch.json"),
    show_default=True,
    help="Where to write the patching trace.",
)
@model_options
def patch(
    clean: str,
    corrupt: str,
    answer: str | None,
    wrong: str | None,
    output: Path,
    model: str | None,
    **kwargs: object,
) -> None:
    """Activation patching: restore the clean run, one site at a time, inside the corrupt run.

    Patches the residual stream at every layer and position, every head and
    every MLP, and records the logit difference ANSWER - WRONG at the last
    position, normalised: 1 = the clean run's, 0 = the corrupt run's. Draw it
    with `mechviz scene Patching --trace patch.json`.
    """
    from mechviz.api import patch as run_patch
    from mechviz.files import check_writable
    from mechviz.tracing.io import save_trace

    for name in ("max_tokens", "top_k"):
        if int(kwargs[name]) < 1:  # type: ignore[call-overload]
            raise MechvizError(
                f"--{name.replace('_', '-')} must be at least 1; got {kwargs[name]}."
            )
    if output.is_dir():
        raise MechvizError(f"{output} is a folder; give a file name for the patching trace.")
    check_writable(output)
    start = time.perf_counter()
    result = run_patch(
        clean,
        corrupt,
        model,
        answer=answer,
        wrong=wrong,
        device=str(kwargs["device"]),
        dtype=str(kwargs["dtype"]),
        top_k=int(kwargs["top_k"]),  # type: ignore[call-overload]
        max_tokens=int(kwargs["max_tokens"]),  # type: ignore[call-overload]
    )
    save_trace(result, output)
    pt = result.patching
    say(
        f"Wrote {output} ({time.perf_counter() - start:.1f} s): "
        f"{result.token_text(pt.answer)!r} - {result.token_text(pt.wrong)!r} is "
        f"{pt.clean_diff:.2f} clean, {pt.corrupt_diff:.2f} corrupt; draw it with "
        f"`mechviz scene Patching --trace {output}`."
    )

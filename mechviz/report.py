"""Terminal views of a trace (``mechviz inspect``), drawn with rich."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mechviz.errors import MechvizError
from mechviz.schema import Trace
from mechviz.tokens import shown

if TYPE_CHECKING:
    from mechviz.neurons import Selection

CELL_WIDTH = 14  # characters a lens cell needs: a short token and "0.00"


def lens_table(trace: Trace, width: int = 200) -> Table:
    """Layer-by-position table of the logit lens's top-1 token and probability.

    Only the last positions that fit in ``width`` characters are shown: the
    last one holds the prediction.
    """
    fits = max(1, (width - 10) // (CELL_WIDTH + 3))
    first = max(0, trace.n_positions - fits)
    shown_positions = range(first, trace.n_positions)
    title = f"Logit lens: top-1 token after each layer ({escape(trace.model.id)})"
    if first:
        title += f"\nlast {len(shown_positions)} of {trace.n_positions} positions"
    table = Table(title=title)
    table.add_column("layer", justify="right", style="dim", no_wrap=True, min_width=5)
    for p in shown_positions:
        table.add_column(
            Text(shown(trace.tokens.text[p])),
            no_wrap=True,
            max_width=CELL_WIDTH,
            overflow="ellipsis",
        )
    for b, label in enumerate(trace.lens.labels):
        cells = []
        for p in shown_positions:
            token = trace.token_text(trace.lens.top_ids[b, p, 0])
            prob = float(trace.lens.top_probs[b, p, 0])
            style = "bold green" if prob >= 0.5 else ("yellow" if prob >= 0.1 else "")
            cells.append(Text(f"{shown(token)[: CELL_WIDTH - 5]} {prob:.2f}", style=style))
        table.add_row(label.removesuffix("_post"), *cells)
    return table


def print_report(trace: Trace, console: Console | None = None) -> None:
    console = console or Console()
    m = trace.model
    console.print(
        f"[bold]{escape(m.id)}[/] ({m.architecture}, {m.n_layers} layers, {m.n_heads} heads, "
        f"d_model {m.d_model}, {m.dtype}) on {escape(repr(trace.prompt))}",
        highlight=False,
    )
    console.print(lens_table(trace, console.width))
    token, prob = trace.prediction
    console.print(
        f"Prediction after the last token: [bold green]{escape(repr(trace.token_text(token)))}[/] "
        f"with probability {prob:.3f}",
        highlight=False,
    )


# --- mechviz neurons --------------------------------------------------------------------------

NEURON_STYLES = {  # the seed's colours; a background, so that a token's extent shows
    "high": "bold white on red3",
    "mid": "black on dark_orange",
    "low": "white on grey30",
    "neg": "bold white on blue3",
}


def neuron_tokens(
    tokens: list[str], values: np.ndarray, hi: float, lo: float, margin: float
) -> Text:
    """The prompt's tokens, each on the colour of its activation class.

    Args:
        tokens: ``[P]`` token texts.
        values: ``[P]`` one neuron's activation at each position.
        hi: Upper threshold (activation units).
        lo: Lower threshold (activation units).
        margin: Red starts at ``hi + margin``.

    Returns:
        A rich ``Text``; token ``p`` carries ``NEURON_STYLES[class of values[p]]``.

    """
    from mechviz.neurons import activation_class

    line = Text()
    for p, (text, value) in enumerate(zip(tokens, values)):
        if p:
            line.append(" ")  # apart, so two tokens of one colour stay two
        kind = activation_class(float(value), hi, lo, margin)
        line.append(shown(text), style=NEURON_STYLES[kind])
    return line


def neuron_legend(sel: Selection) -> Text:
    """One line: which colour means which range (the rule's own units)."""
    from mechviz.neurons import MARGIN

    units = " std" if sel.relative else ""
    top = sel.above + MARGIN
    parts = [
        (f"red > {top:g}{units}", "high"),
        (f"orange {sel.above:g} to {top:g}{units}", "mid"),
        (f"grey {sel.below:g} to {sel.above:g}{units}", "low"),
        (f"blue < {sel.below:g}{units}", "neg"),
    ]
    line = Text("colours: ")
    for i, (label, kind) in enumerate(parts):
        line.append(label, style=NEURON_STYLES[kind])
        if i < len(parts) - 1:
            line.append("  ")
    return line


def print_neurons(
    trace: Trace,
    console: Console | None = None,
    *,
    layer: int | None = None,
    above: float | None = None,
    below: float | None = None,
    relative: bool | None = None,
    top: int = 5,
) -> None:
    """Print, per layer, how many neurons the rule selects and the most extreme of them.

    Counts are re-counted from ``trace.neurons.peak`` under the given rule; the
    neurons shown are those the trace stored (most extreme first) that pass it.

    Raises:
        MechvizError: No ``neurons`` section, ``above <= below``, ``layer`` out
            of range or ``top < 1``, before anything is printed.

    """
    from mechviz.neurons import select

    console = console or Console()
    sel = select(trace, above, below, relative)
    L = trace.n_layers
    if layer is not None and not 0 <= layer < L:
        raise MechvizError(f"--layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if top < 1:
        raise MechvizError(f"--top must be at least 1; got {top}.")
    kind = "standard deviations of each layer" if sel.relative else "activation units"
    console.print(
        f"[bold]{escape(trace.model.id)}[/] on {escape(repr(trace.prompt))}: MLP neurons above "
        f"{sel.above:g} or below {sel.below:g} ({kind}) on at least one token",
        highlight=False,
    )
    console.print(neuron_legend(sel))
    for l in [layer] if layer is not None else range(L):  # noqa: E741
        _print_layer(trace, console, sel, l, top)


def _print_layer(trace: Trace, console: Console, sel: Selection, layer: int, top: int) -> None:
    count, shown_ids = int(sel.count[layer]), sel.ids[layer][:top]
    head = Text(f"\nlayer {layer}: ", style="bold")
    head.append(f"{count} of {sel.d_mlp} selected", style="bold")
    if sel.relative:
        head.append(f" (> {sel.hi[layer]:.3g} or < {sel.lo[layer]:.3g})", style="dim")
    if count > len(sel.ids[layer]):
        head.append(f"; {len(sel.ids[layer])} of them stored in the trace", style="dim")
    console.print(head)
    width = max((len(str(i)) for i in shown_ids), default=1)
    for k, neuron in enumerate(shown_ids):
        values = sel.values[layer][k]
        line = Text(f"  n{neuron:<{width}}  {values.max():6.2f} {values.min():6.2f}  ", style="dim")
        line.append_text(
            neuron_tokens(
                trace.tokens.text,
                values,
                float(sel.hi[layer]),
                float(sel.lo[layer]),
                float(sel.margin[layer]),
            )
        )
        console.print(line, soft_wrap=True)

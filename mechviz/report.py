"""Terminal views of a trace (``mechviz inspect``), drawn with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mechviz.schema import Trace
from mechviz.tokens import shown

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

"""Terminal views of a trace (``mechviz inspect``), drawn with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mechviz.schema import Trace
from mechviz.tokens import shown


def lens_table(trace: Trace) -> Table:
    """Layer-by-position table of the logit lens's top-1 token and probability."""
    table = Table(title=f"Logit lens: top-1 token after each layer ({trace.model.id})")
    table.add_column("layer", justify="right", style="dim", no_wrap=True, min_width=5)
    for text in trace.tokens.text:
        table.add_column(shown(text), justify="left", no_wrap=True)
    for b, label in enumerate(trace.lens.labels):
        cells = []
        for p in range(trace.n_positions):
            token = trace.token_text(trace.lens.top_ids[b, p, 0])
            prob = float(trace.lens.top_probs[b, p, 0])
            style = "bold green" if prob >= 0.5 else ("yellow" if prob >= 0.1 else "")
            cells.append(Text(f"{shown(token)} {prob:.2f}", style=style))
        table.add_row(label.removesuffix("_post"), *cells)
    return table


def print_report(trace: Trace, console: Console | None = None) -> None:
    console = console or Console()
    m = trace.model
    console.print(
        f"[bold]{m.id}[/] ({m.architecture}, {m.n_layers} layers, {m.n_heads} heads, "
        f"d_model {m.d_model}, {m.dtype}) on {trace.prompt!r}"
    )
    console.print(lens_table(trace))
    token, prob = trace.prediction
    console.print(
        f"Prediction after the last token: [bold green]{trace.token_text(token)!r}[/] "
        f"with probability {prob:.3f}"
    )

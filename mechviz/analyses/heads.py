"""Rank attention heads by a named criterion, from a trace alone (no torch), and print them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.schema import HeadEffects, Trace

Scores = tuple[np.ndarray, str]  # [L, H] scores, higher first; a one-line description


def direct_effect(trace: Trace) -> Scores:
    """Each head's direct effect on the answer's logit at the last position, ``[L, H]`` logits.

    From ``trace.heads`` (schema version 3): the head's output through the final
    norm frozen at the last position, onto ``W_U``'s row of the model's own
    top-1 token (see docs/trace-format.md). Positive heads push the answer up.
    """
    heads = _require_heads(trace)
    answer = shown(trace.token_text(heads.answer))
    return (
        np.asarray(heads.direct, dtype=np.float32),
        f"direct effect on the logit of {answer} at the last position (logits)",
    )


def direct_against(trace: Trace) -> Scores:
    """Minus :func:`direct_effect`: the heads that push the answer's logit down most."""
    direct, _ = direct_effect(trace)
    answer = shown(trace.token_text(_require_heads(trace).answer))
    return -direct, f"direct effect against {answer} at the last position (minus logits)"


def from_last(trace: Trace) -> Scores:
    """Largest weight from the last query on a key other than the first, previous or itself.

    High for heads that fetch an earlier word into the prediction (name movers
    copy a name this way); position 0 (where many heads park unused attention),
    the previous token and the last token itself are left out. ``[L, H]``
    weights in [0, 1]; 0 everywhere for prompts under 4 tokens.
    """
    pattern = trace.attention.pattern  # [L, H, P, P]
    P = pattern.shape[-1]
    description = "largest weight from the last token on one earlier token (not first/previous)"
    if P < 4:
        return np.zeros(pattern.shape[:2], dtype=np.float32), description
    return pattern[:, :, P - 1, 1 : P - 2].max(axis=-1), description


def previous_token(trace: Trace) -> Scores:
    """Mean weight on the previous token, ``pattern[q, q - 1]`` over queries ``q >= 1``, ``[L, H]``.

    0 everywhere for a one-token prompt.
    """
    pattern = trace.attention.pattern
    P = pattern.shape[-1]
    description = "mean weight on the previous token"
    if P < 2:
        return np.zeros(pattern.shape[:2], dtype=np.float32), description
    q = np.arange(1, P)
    return pattern[:, :, q, q - 1].mean(axis=-1), description


def peaked(trace: Trace) -> Scores:
    """Peakedness of every head, ``[L, H]`` (the Attention scene's rule).

    For each query from position 2 on, the largest weight it puts on one
    earlier key, leaving out position 0 (where many heads park attention they
    do not use) and the query itself (heads that only look at themselves move
    nothing between tokens); averaged over queries. High means the head looks
    sharply from one token to another. Prompts under 3 tokens score 0 everywhere.
    """
    pattern = trace.attention.pattern  # [L, H, P, P]
    P = pattern.shape[-1]
    description = "mean largest weight on one earlier token (not the first, not itself)"
    if P < 3:
        return np.zeros(pattern.shape[:2]), description
    best = [pattern[:, :, q, 1:q].max(axis=-1) for q in range(2, P)]
    return np.mean(best, axis=0), description


# Criterion names for `mechviz heads --criterion NAME`, in the order tables are printed.
CRITERIA: dict[str, Callable[[Trace], Scores]] = {
    "direct": direct_effect,
    "against": direct_against,
    "from-last": from_last,
    "previous": previous_token,
    "peaked": peaked,
}
NEEDS_HEADS = frozenset({"direct", "against"})  # criteria that read trace.heads
# Fewer tokens leave no key to score (every head scores 0): a note replaces the table.
MIN_TOKENS = {"from-last": 4, "peaked": 3, "previous": 2}


@dataclass(frozen=True)
class HeadRow:
    """One ranked head and the key its last-position query weights most."""

    layer: int
    head: int
    score: float  # the criterion's score (its units: see the description)
    key: int  # key position with the largest weight from the last position
    key_text: str  # that token's display text
    weight: float  # that weight, in [0, 1]


def scores(trace: Trace, criterion: str) -> Scores:
    """The ``[L, H]`` scores and description of the criterion named ``criterion``."""
    return CRITERIA[_known(criterion)](trace)


def _known(criterion: str) -> str:
    if criterion not in CRITERIA:
        names = ", ".join(CRITERIA)
        raise MechvizError(f"No head criterion called '{criterion}'; choose one of: {names}.")
    return criterion


def top_heads(trace: Trace, criterion: str, n: int = 10) -> list[HeadRow]:
    """The ``n`` heads with the highest scores by ``criterion``, highest first.

    Ties keep layer-major order (layer 0 head 0 first), so the ranking is
    deterministic.
    """
    if n < 1:
        raise MechvizError(f"The number of heads to show must be at least 1; got {n}.")
    values, _ = scores(trace, criterion)
    order = np.argsort(-values.ravel(), kind="stable")[:n]
    last = trace.attention.pattern[:, :, -1, :]  # [L, H, P]
    rows = []
    for flat in order:
        layer, head = divmod(int(flat), values.shape[1])
        key = int(last[layer, head].argmax())
        rows.append(
            HeadRow(
                layer=layer,
                head=head,
                score=float(values[layer, head]),
                key=key,
                key_text=trace.tokens.text[key],
                weight=float(last[layer, head, key]),
            )
        )
    return rows


def heads_table(trace: Trace, criterion: str, n: int = 10) -> Table:
    """A rich table of :func:`top_heads`: rank, layer, head, score, the key looked at.

    Untitled: a title is wrapped to the table's width, so :func:`print_heads`
    prints the criterion's description on its own line above it.
    """
    last = shown(trace.tokens.text[-1])
    table = Table()
    for name in ("#", "layer", "head", "score"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column(Text(f"looks at, from {last}"), no_wrap=True)
    table.add_column("weight", justify="right", no_wrap=True)
    signed = criterion in NEEDS_HEADS
    for rank, row in enumerate(top_heads(trace, criterion, n), start=1):
        table.add_row(
            str(rank),
            str(row.layer),
            str(row.head),
            f"{row.score:+.3f}" if signed else f"{row.score:.3f}",
            Text(f"{shown(row.key_text)} (pos {row.key})"),
            f"{row.weight:.2f}",
        )
    return table


def print_heads(
    trace: Trace, console: Console | None = None, criterion: str | None = None, n: int = 10
) -> None:
    """Print the top ``n`` heads by ``criterion``, or one table per criterion if ``None``.

    With every criterion, a trace older than schema version 3 gets the
    attention tables and one line saying how to get direct effects; asking
    for ``direct`` or ``against`` by name raises :class:`MechvizError` instead.
    """
    console = console or Console()
    names = [_known(criterion)] if criterion is not None else list(CRITERIA)
    if criterion in NEEDS_HEADS:
        _require_heads(trace)  # fail before anything is printed
    if n < 1:
        raise MechvizError(f"The number of heads to show must be at least 1; got {n}.")
    m = trace.model
    console.print(
        f"[bold]{escape(m.id)}[/] ({m.n_layers} layers x {m.n_heads} heads) on "
        f"{escape(repr(trace.prompt))}",
        highlight=False,
    )
    for name in names:
        if criterion is None and name in NEEDS_HEADS and trace.heads is None:
            if name == "direct":
                console.print(Text(_missing_heads(trace), style="yellow"))
            continue
        _, description = scores(trace, name)
        console.print(Text(f"\n{name}: {description}", style="bold"))
        least = MIN_TOKENS.get(name, 1)
        if trace.n_positions < least:
            console.print(
                Text(f"Every head scores 0: this needs a prompt of {least} tokens or more.")
            )
            continue
        console.print(heads_table(trace, name, n))


def _missing_heads(trace: Trace) -> str:
    return (
        f"This trace (schema version {trace.schema_version}) predates direct effects of heads; "
        "re-trace with this version of mechviz (`mechviz trace`) to rank heads by them."
    )


def _require_heads(trace: Trace) -> HeadEffects:
    if trace.heads is None:
        raise MechvizError(_missing_heads(trace))
    return trace.heads

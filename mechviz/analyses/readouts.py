"""Readings of a trace that scenes share: where the answer appears, which lens rows to show.

Pure NumPy over a :class:`~mechviz.tracing.schema.Trace`; no torch, no Manim.
"""

from __future__ import annotations

from collections.abc import Sequence

from mechviz.errors import MechvizError
from mechviz.tracing.schema import Trace


def answer_row(trace: Trace, position: int = -1) -> int:
    """The first lens row from which the model's final token is top-1 at every later row.

    Rows are ``lens.labels``: 0 is the embedding, ``l + 1`` is after layer ``l``.
    The last row always qualifies (the last layer's lens is the model's output).
    """
    top1 = trace.lens.final_token_rank[:, position] == 0  # [Y]
    row = len(top1) - 1
    while row > 0 and top1[row - 1]:
        row -= 1
    return row


def row_name(row: int) -> str:
    """``"embed"`` for row 0, else the layer number of lens row ``row``."""
    return "embed" if row == 0 else str(row - 1)


def table_rows(trace: Trace, capacity: int, layers: Sequence[int] | None = None) -> list[int]:
    """Lens rows for a table of at most ``capacity`` rows (at least 3).

    Always the embedding, the last layer and :func:`answer_row`; then the
    ``layers`` asked for (all of them: the table is then allowed to grow), else
    layers evenly spaced over the gaps to fill the capacity.
    """
    Y = trace.lens.top_ids.shape[0]
    required = {0, Y - 1, answer_row(trace)}
    if layers is not None:
        bad = [layer for layer in layers if not 0 <= layer < Y - 1]
        if bad:
            raise MechvizError(
                f"Layer {bad[0]} is out of range; this model has layers 0 to {Y - 2}."
            )
        return sorted(required | {layer + 1 for layer in layers})
    capacity = max(capacity, len(required))
    if capacity >= Y:
        return list(range(Y))
    rows = set(required)
    # Split the widest gap until the table is full: even spacing around the required rows.
    while len(rows) < capacity:
        ordered = sorted(rows)
        gaps = [(b - a, a, b) for a, b in zip(ordered, ordered[1:]) if b - a > 1]
        if not gaps:
            break
        _, a, b = max(gaps)
        rows.add((a + b) // 2)
    return sorted(rows)

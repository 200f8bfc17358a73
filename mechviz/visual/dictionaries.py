"""The stream read with the model's own token dictionaries, as tables (seed 004, section 2).

:class:`DictionaryTable` shows, for one prompt position, the closest rows of a
dictionary at each shown layer boundary: ``W_E`` (input), ``W_U`` (output) or
the middle dictionary, each match a token over a bar as long as its
normalised amplitude ``A`` (a cosine, full cell = 1), the first match's ``A``
also as a number; or, for contrast, the plain logit lens (final norm, ``W_U``,
softmax) with probabilities. :class:`MiddleTable` shows every position's
closest middle-dictionary entries at one layer. Every token and number is read
from ``trace.dictionaries`` or ``trace.lens``; the tables say what they leave
out (layers, matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from manim import Line, Rectangle, VGroup

from mechviz.analyses.readouts import answer_row, row_name, table_rows
from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure, number

__all__ = ["DictionaryTable", "MiddleTable", "dictionary_title", "value_text"]

ROW_HEIGHT = 0.46  # a table row: MIN_TEXT with room for the bar under it (scene units)
MIN_CELL = 1.1  # a match's cell: a short token at MIN_TEXT (scene units)
NAME_WIDTH = 1.2  # the row-name column of a table by depth: "embed" at MIN_TEXT
BAR_HEIGHT = 0.06
SOURCES = ("input", "output", "middle", "lens")


def dictionary_title(trace: Trace, source: str) -> str:
    """The table's title for ``source`` ("W_E = W_U · cosine A" when the two are tied, ...)."""
    if source == "lens":
        return "logit lens: norm, W_U, softmax · p"
    if source == "middle":
        return f"middle dictionary ({trace.dictionaries.middle_layers} layers) · A"
    if trace.model.tied_embeddings:
        return "W_E = W_U (tied) · cosine A"
    return f"{'input W_E' if source == 'input' else 'output W_U'} · cosine A"


def value_text(value: float) -> str:
    """An amplitude or probability as shown: two decimals, never "-0.00"."""
    text = f"{float(value):.2f}"
    return "0.00" if text == "-0.00" else text


def _value_width() -> float:
    return measure("0.00", style.MIN_TEXT, style.MONO) + 0.12


class _MatchTable(VGroup):
    """Rows of matches: a name, ``k`` token cells each over a bar, the first value as a number.

    Attributes:
        view: The trace view it reads.
        k: Matches shown per row (at most the trace's ``E``).
        kept: Matches the trace holds per row (``E``, or ``U`` for the middle dictionary).
        ids: ``[R, k]`` token ids shown, row by row.
        values: ``[R, k]`` their amplitudes (or probabilities), as recorded.
        title: The title line.
        notes: Note lines under the title ("─ = K layers left out", "top 4 of 5").
        row_labels: The row names.
        cells: ``cells[r][c]``: the match's cell, a VGroup (track, bar, token text).
        cell_texts: ``cell_texts[r][c]``: the token text.
        bars: ``bars[r][c]``: the bar (width = value x bar track's width; none below 0).
        numbers: The first match's value of each row (Number).
        gap_lines: Lines between rows with rows left out between them.
        rows: One VGroup per row (name, gap line, cells, number): reveal them in order.

    """

    def __init__(
        self,
        view: TraceView,
        title: str,
        names: Sequence[str],
        name_colors: Sequence[object],
        ids: np.ndarray,
        values: np.ndarray,
        width: float,
        height: float,
        *,
        name_width: float,
        gaps: Sequence[bool],
        layer_note: str = "",
        bar_color: object = None,
        answer_id: int | None = None,
        value_name: str = "A",
    ) -> None:
        super().__init__()
        self.view, theme = view, view.theme
        self.kept = ids.shape[1]
        value_w = _value_width()
        fit = int((width - name_width - value_w) // MIN_CELL)
        self.k = max(1, min(self.kept, fit))
        self.ids, self.values = ids[:, : self.k], values[:, : self.k]
        self.cell_width = (width - name_width - value_w) / self.k
        notes = [n for n in (layer_note, self._match_note()) if n]
        if len(notes) == 2 and measure(" · ".join(notes), style.MIN_TEXT) <= width:
            notes = [" · ".join(notes)]
        lines = 1 + len(notes) + len(names)  # title (with the values' head), notes, rows
        self.row_height = min(0.56, height / lines)
        h = self.row_height
        x0, y = -width / 2, h * lines / 2 - h / 2
        self.x_cells = x0 + name_width  # left edge of the first cell
        self.x_value = self.x_cells + self.cell_width * self.k + value_w / 2
        head = label(value_name, style.MIN_TEXT, theme.muted)
        self.header = VGroup(center_on(head, [self.x_value, y, 0]))
        self.title = label(title, style.MIN_TEXT, theme.foreground, max_width=width - value_w)
        self.add(center_on(self.title, [x0 + self.title.width / 2, y, 0]), self.header)
        self.notes = VGroup()
        for text in notes:
            y -= h
            note = label(text, style.MIN_TEXT, theme.muted, max_width=width)
            self.notes.add(center_on(note, [x0 + note.width / 2, y, 0]))
        self.add(self.notes)
        self.y_first = y - h
        self.row_labels, self.cells, self.cell_texts, self.bars = [], [], [], []
        self.numbers, self.gap_lines = [], []
        self.rows = VGroup()
        bar_color = bar_color if bar_color is not None else theme.positive
        for r, name in enumerate(names):
            self.rows.add(
                self._row(r, name, name_colors[r], name_width, gaps[r], bar_color, answer_id)
            )
        self.add(self.rows)
        self.extent = Rectangle(width=width, height=h * lines, stroke_opacity=0, fill_opacity=0)
        self.add(self.extent)

    def _match_note(self) -> str:
        return f"top {self.k} of {self.kept}" if self.k < self.kept else ""

    def _row(
        self,
        r: int,
        name: str,
        name_color: object,
        name_width: float,
        gap: bool,
        bar_color: object,
        answer_id: int | None,
    ) -> VGroup:
        theme, view, h, cw = self.view.theme, self.view, self.row_height, self.cell_width
        y = self.y_first - h * r
        group = VGroup()
        text = label(name, style.MIN_TEXT, name_color, max_width=name_width - 0.05)
        group.add(center_on(text, [self.x_cells - name_width + text.width / 2, y + 0.05, 0]))
        self.row_labels.append(text)
        if gap:  # rows left out above this one
            line = Line(
                [self.x_cells - name_width, y + h / 2, 0],
                [self.x_value + _value_width() / 2, y + h / 2, 0],
                stroke_width=3,
                color=theme.muted,
            )
            group.add(line)
            self.gap_lines.append(line)
        cells, texts, bars = [], [], []
        for c in range(self.k):
            token, value = int(self.ids[r, c]), float(self.values[r, c])
            x = self.x_cells + cw * (c + 0.5)
            track_w = cw - 0.12
            bottom = y - h / 2 + 0.04 + BAR_HEIGHT / 2
            track = Rectangle(
                width=track_w, height=BAR_HEIGHT, stroke_width=0, fill_color=theme.faint
            ).set_fill(opacity=1.0)
            track.move_to([x, bottom, 0])
            bar_w = max(min(value, 1.0), 0.0) * track_w
            bar = Rectangle(
                width=max(bar_w, 1e-3), height=BAR_HEIGHT, stroke_width=0, fill_color=bar_color
            ).set_fill(opacity=1.0 if bar_w > 0 else 0.0)
            bar.move_to([x - track_w / 2 + bar_w / 2, bottom, 0])
            color = theme.highlight if token == answer_id else theme.foreground
            word = label(shown(view.vocab_text(token)), style.MIN_TEXT, color, max_width=cw - 0.12)
            center_on(word, [x, y + 0.05, 0])
            cell = VGroup(track, bar, word)
            group.add(cell)
            cells.append(cell)
            texts.append(word)
            bars.append(bar)
        value = number(value_text(self.values[r, 0]), style.MIN_TEXT, theme.foreground)
        group.add(center_on(value, [self.x_value, y + 0.05, 0]))
        self.numbers.append(value)
        self.cells.append(cells)
        self.cell_texts.append(texts)
        self.bars.append(bars)
        return group


class DictionaryTable(_MatchTable):
    """One position's closest dictionary rows (or logit-lens tokens) at each shown boundary.

    Rows are lens rows (``trace.lens.labels``: ``embed``, then after each
    layer), top to bottom, chosen like :class:`~mechviz.visual.lens.LensTable`'s
    (:func:`mechviz.analyses.readouts.table_rows`); a line between two rows marks layers
    left out and a note says how many. ``source`` is ``"input"`` (``W_E``),
    ``"output"`` (``W_U``), ``"middle"`` (from ``trace.dictionaries``, values
    are amplitudes ``A``) or ``"lens"`` (``trace.lens``, values are
    probabilities).

    Attributes:
        source: What the table reads.
        position: The prompt position read (non-negative).
        lens_rows: The lens row of each table row.
        left_out: Lens rows not shown.

    """

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        source: str = "input",
        position: int = -1,
        layers: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> DictionaryTable:
        """The table of ``source`` at ``position``, sized for the room.

        Args:
            trace: A Trace (with ``dictionaries`` unless ``source`` is ``"lens"``) or its path.
            source: ``"input"``, ``"output"``, ``"middle"`` or ``"lens"``.
            position: Prompt position (negative counts from the end).
            layers: Layers to show a row for (as the scenes' ``--layers``); the
                embedding, the last layer and where the answer becomes top-1 are
                always shown. ``None``: as many as fit, evenly spread.
            width: Room's width in scene units (default: the frame less margins).
            height: Room's height in scene units (default: the frame less margins).
            theme: A Theme or its name (default: the current render's).

        Returns:
            The table, centred on the origin. A narrow room shows fewer matches
            per row and says "top k of E shown".

        """
        view = TraceView.of(trace, theme)
        trace = view.trace
        if source not in SOURCES:
            raise MechvizError(
                f"Unknown dictionary {source!r}; choose one of {', '.join(SOURCES)}."
            )
        if source != "lens":
            trace.require("dictionaries")
        w, h = room(width, height)
        P = trace.n_positions
        if not -P <= position < P:
            raise MechvizError(
                f"Position {position} is out of range; the prompt has positions 0 to {P - 1}."
            )
        position %= P
        Y = trace.lens.top_ids.shape[0]
        capacity = int(h // ROW_HEIGHT) - 3  # the title and up to two note lines
        rows = table_rows(trace, capacity, layers)
        ids, values = cls.readings(trace, source, rows, position)
        left_out = Y - len(rows)
        note = f"─ = {left_out} layer{'s' if left_out != 1 else ''} left out" if left_out else ""
        answer = int(trace.output.top_ids[position, 0])
        bar = view.theme.prob if source == "lens" else None
        table = cls(
            view,
            dictionary_title(trace, source),
            [row_name(r) for r in rows],
            [view.theme.muted] * len(rows),
            ids,
            values,
            w,
            h,
            name_width=NAME_WIDTH,
            gaps=[i > 0 and rows[i] - rows[i - 1] > 1 for i in range(len(rows))],
            layer_note=note,
            bar_color=bar,
            answer_id=answer,
            value_name="p" if source == "lens" else "A",
        )
        table.source, table.position = source, position
        table.lens_rows, table.left_out = rows, left_out
        return table

    @staticmethod
    def readings(
        trace: Trace, source: str, rows: Sequence[int], position: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and values ``[R, E]`` of ``source`` at lens ``rows`` and ``position``."""
        rows = list(rows)
        if source == "lens":
            return trace.lens.top_ids[rows, position], trace.lens.top_probs[rows, position]
        d = trace.dictionaries
        ids, amp = getattr(d, f"{source}_ids"), getattr(d, f"{source}_amp")
        return ids[rows, position], amp[rows, position]

    def is_answer_row(self, r: int) -> bool:
        """Whether table row ``r`` is where the answer becomes top-1 for good (lens rows)."""
        return self.lens_rows[r] == answer_row(self.view.trace, self.position)


class MiddleTable(_MatchTable):
    """Every shown position's closest middle-dictionary entries after one layer.

    The middle dictionary (``trace.dictionaries``) has one entry per unique
    token of the prompt: that token run alone through the first
    ``middle_layers`` layers. Rows are prompt positions (their tokens, in their
    colours), cells the closest entries at ``{layer}_post`` with their ``A``.

    Attributes:
        layer: The layer read after.
        positions: The prompt position of each row.

    """

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        layer: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        max_rows: int = 12,
    ) -> MiddleTable:
        """The middle dictionary's matches of every position after ``layer`` (default: L // 2).

        Args:
            trace: A Trace with ``dictionaries``, or its path.
            layer: The layer read after (default: the middle one, ``L // 2``).
            width: Room's width in scene units (default: the frame less margins).
            height: Room's height in scene units (default: the frame less margins).
            theme: A Theme or its name (default: the current render's).
            max_rows: Positions shown at most (the last ones).

        Returns:
            The table, centred on the origin. A long prompt or a short room keeps
            the last positions and says "last N of P positions".

        """
        view = TraceView.of(trace, theme)
        trace = view.trace
        d = trace.require("dictionaries")
        L = trace.n_layers
        layer = L // 2 if layer is None else int(layer)
        if not 0 <= layer < L:
            raise MechvizError(
                f"Layer {layer} is out of range; this model has layers 0 to {L - 1}."
            )
        w, h = room(width, height)
        P = trace.n_positions
        fit = max(1, min(max_rows, int(h // ROW_HEIGHT) - 2))
        positions = list(range(P))[-fit:]
        note = f"last {len(positions)} of {P} positions" if len(positions) < P else ""
        texts = [shown(view.token_texts[p]) for p in positions]
        name_w = min(2.0, max(measure(t, style.MIN_TEXT) for t in texts) + 0.2)
        table = cls(
            view,
            f"middle dictionary after layer {layer} · A",
            texts,
            [view.token_color(p) for p in positions],
            d.middle_ids[layer + 1, positions],
            d.middle_amp[layer + 1, positions],
            w,
            h,
            name_width=name_w,
            gaps=[False] * len(positions),
            layer_note=note,
            bar_color=view.theme.mlp,
        )
        table.layer, table.positions = layer, positions
        return table

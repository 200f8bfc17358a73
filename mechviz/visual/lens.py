"""The logit lens as building blocks: the lens table, and the unembedding pipeline it reads with.

:class:`LensTable` is the logit-lens table (rows are layer boundaries, columns
positions, each cell the top-1 token shaded by its probability);
:class:`UnembedPipeline` is the picture of how one residual vector is read:
final norm, then ``W_U``, then softmax. Both are made from a trace with
``from_trace`` (see :mod:`mechviz.visual.blocks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Arrow,
    Group,
    Line,
    Mobject,
    Rectangle,
    RoundedRectangle,
    SurroundingRectangle,
    Text,
    VGroup,
)

from mechviz.analyses.readouts import answer_row, row_name, table_rows
from mechviz.model.tokens import shown
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.mobjects import TokenBox, grid_image
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure

CELL_HEIGHT = 0.46  # a table row: room for MIN_TEXT with a margin (scene units)
MIN_CELL_WIDTH = 1.55  # a table column: a short token at MIN_TEXT (scene units)
LABEL_WIDTH = 1.2  # the row-name column: "embed ★" at MIN_TEXT (scene units)


class LensTable(VGroup):
    """The logit-lens table: the top-1 token of every lens row at every shown position.

    Rows are lens rows (``trace.lens.labels``: 0 is the embedding, ``l + 1`` is
    after layer ``l``), top to bottom; columns are prompt positions, left to
    right. A cell shows ``trace.lens.top_ids[row, position, 0]`` on a fill shaded
    by ``trace.lens.top_probs[row, position, 0]``. The row from which the
    model's answer stays top-1 (:func:`mechviz.analyses.readouts.answer_row`) is named
    with a ★; a horizontal line between two rows marks layers left out between
    them. Above the column heads, a note says what was left out ("last N of M
    positions", and with ``note_layers`` "─ = K layers left out").

    Build it with :meth:`from_trace`. The grid is centred on the origin;
    :attr:`extent` is its outline (invisible), the box to align it by.

    Attributes:
        view: The trace view the table was drawn from.
        lens_rows: Lens row of each table row, increasing, length ``R``.
        positions: Prompt position of each column, increasing, length ``C``.
        answer: The lens row where the answer becomes top-1 for good.
        left_out: How many layers (lens rows) the table leaves out.
        cell_width: Width of a column (scene units).
        cell_height: Height of a row (scene units).
        header: The notes, the ``layer`` heading and the column heads (a VGroup).
        rows: One VGroup per table row: its name, its gap line if any, its cells and texts.
        notes: The note lines above the header (Text; empty when nothing is left out).
        row_labels: The row names, ``R`` Text.
        col_labels: The column heads (the prompt's tokens), ``C`` Text.
        cells: ``cells[r][c]``: the cell Rectangle of table row ``r``, column ``c``.
        cell_texts: ``cell_texts[r][c]``: the top-1 token Text in that cell.
        gap_lines: The lines that mark layers left out (Line).
        extent: An invisible Rectangle over the whole table (notes, header and rows).

    """

    def __init__(
        self,
        view: TraceView,
        lens_rows: Sequence[int],
        positions: Sequence[int],
        width: float,
        height: float,
        position_note: str = "",
        note_layers: bool = False,
    ) -> None:
        super().__init__()
        self.view = view
        self.lens_rows = [int(r) for r in lens_rows]
        self.positions = [int(p) for p in positions]
        self.answer = answer_row(view.trace)
        self.left_out = view.trace.lens.top_ids.shape[0] - len(self.lens_rows)
        n_cols = len(self.positions)
        table_w = _table_width(width, n_cols)
        self.cell_width = (table_w - LABEL_WIDTH) / n_cols
        texts = _note_lines(position_note, self.layers_note if note_layers else "", table_w)
        lines = len(self.lens_rows) + 1 + len(texts)
        self.cell_height = min(0.6, (height - 0.2) / lines)
        self._x0 = -table_w / 2 + LABEL_WIDTH  # the left edge of the first column
        self._y_top = self.cell_height * lines / 2
        self.extent = Rectangle(
            width=table_w, height=self.cell_height * lines, stroke_width=0, fill_opacity=0
        )
        self.extent.set_stroke(opacity=0)
        self.header = self._build_header(texts, table_w)
        self.rows = VGroup(*(self._build_row(r) for r in range(len(self.lens_rows))))
        self.add(self.extent, self.header, self.rows)

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        layers: Sequence[int] | None = None,
        positions: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        note_layers: bool = True,
    ) -> LensTable:
        """The lens table of ``trace``, sized for ``width`` x ``height``.

        Args:
            trace: A :class:`~mechviz.tracing.schema.Trace` or the path of a trace file.
            layers: Model layers (0-based) to show a row for, after the layer.
                The embedding, the last layer and the answer row are always added,
                and every layer asked for is shown: a long list makes rows shorter
                rather than leaving any out (the scene's ``--layers`` does this).
                ``None``: as many rows as fit at 0.46 units each, evenly spread
                around the three required ones (:func:`mechviz.analyses.readouts.table_rows`).
            positions: Prompt positions (negative counts from the end) for the
                columns, shown in increasing order. ``None``: every position.
                Only as many of the last ones as fit (1.55 units each) are shown,
                and a note says "last N of M positions".
            width: Room in scene units (default: the frame less its margins).
            height: Room in scene units (default: the frame less its margins).
            theme: A theme or its name (default: the current render's).
            note_layers: Also say in the note how many layers the table leaves
                out (a scene that says so in its caption passes ``False``).

        Returns:
            The table, its grid centred on the origin.

        """
        view = TraceView.of(trace, theme)
        width, height = room(width, height)
        n = view.trace.n_positions
        asked = range(n) if positions is None else sorted({int(p) % n for p in positions})
        fit = max(1, int((width - LABEL_WIDTH) // MIN_CELL_WIDTH))
        shown_positions = list(asked)[-fit:]
        note = ""
        if len(shown_positions) < len(asked):
            note = f"last {len(shown_positions)} of {len(asked)} positions"
        capacity = int((height - 0.2) // CELL_HEIGHT) - 1  # minus the header
        if note_layers and layers is None and capacity < view.trace.lens.top_ids.shape[0]:
            table_w = _table_width(width, len(shown_positions))
            capacity -= _layer_note_lines(note, view.trace.n_layers, table_w)  # a row's room
        rows = table_rows(view.trace, capacity, layers)
        return cls(view, rows, shown_positions, width, height, note, note_layers)

    # --- what a storyboard reads and animates ------------------------------------------
    @property
    def layers_note(self) -> str:
        """``"─ = K layers left out"``, or ``""`` when the table shows every layer."""
        if self.left_out <= 0:
            return ""
        return f"─ = {self.left_out} layer{'s' if self.left_out != 1 else ''} left out"

    def index_of(self, lens_row: int) -> int:
        """The table row (index into :attr:`cells`) that shows lens row ``lens_row``.

        Raises:
            ValueError: The table does not show that lens row.

        """
        return self.lens_rows.index(int(lens_row))

    def cell_center(self, row: int, col: int) -> np.ndarray:
        """The centre of ``cells[row][col]`` (table indices; negative from the end), shape [3]."""
        return self.cells[row][col].get_center()

    def frame_cell(
        self, row: int, col: int, color: object = None, stroke_width: float = 4
    ) -> SurroundingRectangle:
        """A frame around one cell (not added to anything); default colour: the highlight."""
        return SurroundingRectangle(
            self.cells[row][col],
            color=color if color is not None else self.view.theme.highlight,
            buff=0.03,
            stroke_width=stroke_width,
        )

    def frame_row(
        self, row: int, color: object = None, stroke_width: float = 4
    ) -> SurroundingRectangle:
        """A frame around a table row's cells and name (not added); default: the highlight."""
        return SurroundingRectangle(
            VGroup(self.row_labels[row], *self.cells[row]),
            color=color if color is not None else self.view.theme.highlight,
            buff=0.03,
            stroke_width=stroke_width,
        )

    def highlight_row(self, lens_row: int, color: object = None) -> SurroundingRectangle:
        """A frame around the row that shows lens row ``lens_row`` (e.g. :attr:`answer`)."""
        return self.frame_row(self.index_of(lens_row), color)

    # --- builders ---------------------------------------------------------------------
    def _build_header(self, notes: list[str], table_w: float) -> VGroup:
        theme, view = self.view.theme, self.view
        x0, cell_w, cell_h = self._x0, self.cell_width, self.cell_height
        y = self._y_top - cell_h / 2
        header = VGroup()
        self.notes = []
        for text in notes:
            note = label(text, style.MIN_TEXT, theme.muted, max_width=table_w)
            center_on(note, [x0 + cell_w * len(self.positions) / 2, y, 0])
            shift = max(0.0, note.get_right()[0] - table_w / 2)  # stays over the table
            shift -= max(0.0, -table_w / 2 - note.get_left()[0] + shift)
            note.shift(LEFT * shift)
            header.add(note)
            self.notes.append(note)
            y -= cell_h
        heading = label("layer", style.MIN_TEXT, theme.muted)
        header.add(center_on(heading, [x0 - LABEL_WIDTH / 2, y, 0]))
        self.col_labels = []
        for c, p in enumerate(self.positions):
            head = label(
                shown(view.token_texts[p]),
                style.MIN_TEXT,
                view.token_color(p),
                max_width=cell_w * 0.92,
            )
            header.add(center_on(head, [x0 + cell_w * (c + 0.5), y, 0]))
            self.col_labels.append(head)
        self._y_first = y - cell_h  # the centre of the first table row
        self.row_labels: list[Text] = []
        self.cells: list[list[Rectangle]] = []
        self.cell_texts: list[list[Text]] = []
        self.gap_lines: list[Line] = []
        return header

    def _build_row(self, r: int) -> VGroup:
        theme, trace = self.view.theme, self.view.trace
        x0, cell_w, cell_h = self._x0, self.cell_width, self.cell_height
        row = self.lens_rows[r]
        y = self._y_first - cell_h * r
        group = VGroup()
        strong = row == self.answer
        name = label(
            row_name(row) + (" ★" if strong else ""),
            style.MIN_TEXT,
            theme.highlight if strong else theme.muted,
        )
        group.add(center_on(name, [x0 - LABEL_WIDTH / 2, y, 0]))
        self.row_labels.append(name)
        if r > 0 and row - self.lens_rows[r - 1] > 1:  # layers left out above this row
            y_line = y + cell_h / 2
            line = Line(
                [x0 - LABEL_WIDTH, y_line, 0],
                [x0 + cell_w * len(self.positions), y_line, 0],
                stroke_width=3,
                color=theme.muted,
            )
            group.add(line)
            self.gap_lines.append(line)
        boxes, texts = [], []
        for c, p in enumerate(self.positions):
            fill = style.prob_color(float(trace.lens.top_probs[row, p, 0]), theme)
            box = Rectangle(
                width=cell_w * 0.96,
                height=cell_h * 0.84,
                stroke_width=0,
                fill_color=fill,
                fill_opacity=1.0,
            ).move_to([x0 + cell_w * (c + 0.5), y, 0])
            text = label(
                shown(self.view.vocab_text(trace.lens.top_ids[row, p, 0])),
                style.MIN_TEXT,
                theme.text_on(fill),
                max_width=cell_w * 0.9,
            )
            group.add(box, center_on(text, box.get_center()))
            boxes.append(box)
            texts.append(text)
        self.cells.append(boxes)
        self.cell_texts.append(texts)
        return group


def _table_width(width: float, n_cols: int) -> float:
    """A table's width for ``n_cols`` columns in ``width``: columns at most 2.2 units wide."""
    return LABEL_WIDTH + min(2.2, (width - LABEL_WIDTH) / n_cols) * n_cols


def _note_lines(positions_note: str, layers_note: str, width: float) -> list[str]:
    """The note lines above a lens table: one line for both notes when it fits ``width``."""
    notes = [n for n in (positions_note, layers_note) if n]
    if len(notes) == 2 and measure(" · ".join(notes), style.MIN_TEXT) <= width:
        return [" · ".join(notes)]
    return notes


def _layer_note_lines(positions_note: str, n_layers: int, width: float) -> int:
    """Lines a layers note adds above a table ``width`` wide (0 when it shares one)."""
    widest = f"─ = {n_layers} layers left out"  # no table leaves out more
    return len(_note_lines(positions_note, widest, width)) - bool(positions_note)


class UnembedPipeline(Group):
    """How one residual vector becomes next-token odds: vector → final norm → W_U → softmax.

    Four stages joined by arrows: the residual vector at one position (a strip
    of its recorded pooled values over its token), the final norm, ``W_U``
    (``d_model → d_vocab``) and softmax. They run in a row when the room is wide
    enough, in a column when it is tall enough, else in a U (vector → norm, down
    to ``W_U``, back left to softmax).

    Build it with :meth:`from_trace`; it is centred on the origin. Its
    submobjects are the stages in order, each after the first with the arrow
    leading into it, so ``for part in pipeline: FadeIn(part)`` reveals it step
    by step.

    Attributes:
        view: The trace view it was drawn from.
        position: The prompt position whose vector is read (non-negative).
        vector: The first stage: the value strip (an ImageMobject) above its TokenBox.
        steps: The three operations, each a VGroup of a rounded box and its words.
        arrows: The arrows between stages (3 Arrow).
        layout: ``"row"``, ``"column"`` or ``"u"``.

    """

    def __init__(
        self, view: TraceView, position: int, width: float, height: float, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        trace, theme, m = view.trace, view.theme, view.trace.model
        self.view = view
        self.position = p = int(position) % trace.n_positions
        values = trace.resid.pooled[-1, p]
        strip = grid_image(
            style.diverging_rgb(values, style.robust_scale(values), theme)[None, :, :], 1.9, 0.3
        )
        token = TokenBox(
            view.token_texts[p], view.token_color(p), style.MIN_TEXT, theme, max_width=2.0
        )
        self.vector = Group(strip, token.next_to(strip, DOWN, buff=0.15))
        self.steps = [
            _step(text, note, theme)
            for text, note in (
                ("final norm", "its own scale"),
                ("W_U", f"{m.d_model} → {m.d_vocab:,}"),
                ("softmax", "logits → odds"),
            )
        ]
        stages = [self.vector, *self.steps]
        self.layout = _arrange(stages, width, height)
        Group(*stages).move_to([0, 0, 0])
        self.arrows = [_arrow(a, b, theme.muted) for a, b in zip(stages, stages[1:])]
        self.add(self.vector)
        for arrow, step in zip(self.arrows, self.steps):
            self.add(VGroup(arrow, step))

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int = -1,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> UnembedPipeline:
        """The unembedding pipeline for the residual vector at ``position`` after the last layer.

        Args:
            trace: A :class:`~mechviz.tracing.schema.Trace` or the path of a trace file.
            position: Prompt position (negative counts from the end; default the last).
            width: Room in scene units (default: the frame less its margins).
            height: Room in scene units (default: the frame less its margins).
            theme: A theme or its name (default: the current render's).

        Returns:
            The pipeline, centred on the origin.

        """
        view = TraceView.of(trace, theme)
        width, height = room(width, height)
        return cls(view, position, width, height)


def _step(text: str, note: str, theme: Theme) -> VGroup:
    """One operation of the pipeline: its name over a short note, in a rounded box."""
    words = VGroup(
        label(text, style.BODY_TEXT, theme.foreground),
        label(note, style.MIN_TEXT, theme.muted),
    ).arrange(DOWN, buff=0.12)
    box = RoundedRectangle(
        corner_radius=0.1,
        width=max(2.1, words.width + 0.3),
        height=1.3,
        stroke_color=theme.muted,
        stroke_width=1.5,
    )
    return VGroup(box, words.move_to(box))


def _arrange(stages: list[Mobject], width: float, height: float) -> str:
    """Lay ``stages`` out in a row, a column or a U, whichever fits first; returns which."""
    row_width = sum(s.width for s in stages) + 0.75 * 3
    column_height = sum(s.height for s in stages) + 0.55 * 3
    if row_width <= width:
        Group(*stages).arrange(RIGHT, buff=0.75)
        return "row"
    if column_height <= height:
        Group(*stages).arrange(DOWN, buff=0.55)
        return "column"
    Group(stages[0], stages[1]).arrange(RIGHT, buff=0.9)
    stages[2].next_to(stages[1], DOWN, buff=0.6)
    stages[3].next_to(stages[2], LEFT, buff=0.9)
    return "u"


def _arrow(a: Mobject, b: Mobject, color: object) -> Arrow:
    """An arrow from ``a``'s edge to ``b``'s, along the axis that separates them."""
    d = b.get_center() - a.get_center()
    if abs(d[0]) >= abs(d[1]):
        side = RIGHT if d[0] > 0 else LEFT
    else:
        side = DOWN if d[1] < 0 else UP
    return Arrow(
        a.get_critical_point(side),
        b.get_critical_point(-side),
        buff=0.08,
        stroke_width=3,
        color=color,
    )


__all__ = ["LensTable", "UnembedPipeline"]

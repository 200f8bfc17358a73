"""Embedding blocks: the prompt's rows of ``W_E`` and how alike they are.

* :class:`EmbeddingRows`: each token, its id and its row of ``W_E`` (the recorded
  values of its first dimensions as a diverging-colour strip), rows in id order
  with the stretches of the vocabulary between them marked "⋮ N rows".
* :class:`CosineMatrix`: the cosine similarity of the prompt tokens' rows of
  ``W_E`` (recorded over all ``d_model`` dimensions), labelled by token, with a
  legend and the values in the cells when they fit.

Both are laid out in a room of ``width`` x ``height`` scene units centred on the
origin: ``block.shift(box.center)`` puts them in a region of the frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Arrow,
    DashedLine,
    Group,
    Mobject,
    Rectangle,
    VGroup,
)

from mechviz.model.tokens import shown
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.mobjects import ID_FONT, Heatmap, TokenBox, grid_image
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure, paragraph

if TYPE_CHECKING:
    from mechviz.tracing.schema import Trace

__all__ = ["CosineMatrix", "DivergingLegend", "EmbeddingRows", "RowsLayout", "fmt_cosine"]


def fmt_cosine(value: float) -> str:
    """A value in [-1, 1] in at most four characters: ``1``, ``.47``, ``−.15``."""
    text = f"{value:.2f}"
    if text in ("1.00", "-1.00"):
        return text[:-3].replace("-", "−")
    if text.lstrip("-").startswith("0."):
        text = text.replace("0.", ".", 1)
    return text.replace("-", "−")


class DivergingLegend(Group):
    """A blue-to-red colour bar for signed values, its ends and zero labelled below it.

    Args:
        scale: The value at either end (the bar runs ``-scale`` to ``+scale``).
        theme: Colours.
        texts: Labels of the left end, zero and the right end.
        width: The bar's width (scene units).
        height: The bar's height (scene units).

    Attributes:
        bar: The colour bar (an image).
        frame: Its outline.
        labels: The three labels, left to right.

    """

    def __init__(
        self,
        scale: float,
        theme: Theme,
        texts: tuple[str, str, str],
        width: float = 2.4,
        height: float = 0.22,
    ) -> None:
        super().__init__()
        values = np.linspace(-scale, scale, 64)[None, :]
        self.bar = grid_image(style.diverging_rgb(values, scale, theme), width, height)
        self.frame = Rectangle(
            width=width, height=height, stroke_color=theme.muted, stroke_width=1
        ).move_to(self.bar)
        self.labels = VGroup()
        for text, edge in zip(texts, (LEFT, 0 * LEFT, RIGHT)):
            mark = label(text, style.MIN_TEXT, theme.muted)
            mark.next_to(self.frame, DOWN, buff=0.1).set_x(
                self.frame.get_center()[0] + edge[0] * width / 2
            )
            self.labels.add(mark)
        self.add(self.bar, self.frame, self.labels)


def _centred(width: float, height: float) -> tuple[float, float, float, float]:
    """The room ``(x0, x1, y0, y1)`` of that size centred on the origin."""
    return -width / 2, width / 2, -height / 2, height / 2


# --- the rows of W_E ---------------------------------------------------------------------


@dataclass
class RowsLayout:
    """Geometry of :class:`EmbeddingRows` (all lengths in scene units).

    Attributes:
        x0, x1, y0, y1: The room.
        size: Manim font size of token texts and ids.
        pitch: One entry of the token list.
        row_h: One row of ``W_E``'s cells.
        id_w, box_w, arrow_w, note_w: Widths of the id column, the token boxes, the
            arrows and a gap note.
        side: Gap notes beside ``W_E`` (wide rooms) or inside its gaps (narrow ones).
        k: Dimensions shown per row.
        cell_w: One cell's width.
        band: The height of a gap where rows are left out.
        n: Tokens listed.
        height: The block's height.

    """

    x0: float
    x1: float
    y0: float
    y1: float
    size: float
    pitch: float
    row_h: float
    id_w: float
    box_w: float
    arrow_w: float
    note_w: float
    side: bool = True
    k: int = 0
    cell_w: float = 0.0
    band: float = 0.0
    n: int = 0
    height: float = 0.0
    header_h: float = 0.55
    legend_h: float = 0.8

    @property
    def width_room(self) -> float:
        """The room's width."""
        return self.x1 - self.x0

    @property
    def height_room(self) -> float:
        """The room's height."""
        return self.y1 - self.y0


class EmbeddingRows(Group):
    """Tokens, their ids and their rows of ``W_E``: an arrow from each token to its row.

    Rows are drawn in id order, one per distinct token, each a strip of its first
    ``k`` recorded dimensions in the diverging colours (legend below); the
    stretches of the vocabulary between them are gaps marked "⋮ N rows", and
    ``W_E``'s first and last row numbers sit at its ends. Build it with
    :meth:`from_trace`.

    Attributes:
        boxes: The listed tokens, top to bottom (:class:`TokenBox`).
        note: "first n of m tokens" when some are left out, else ``None``.
        cells: Token id -> its row of cells (``VGroup`` of ``k`` rectangles).
        labels: Token id -> its row number left of the row.
        arrows: One arrow per listed token, box to row.
        frame: ``W_E``'s outline; ``ends``: its first and last row numbers (when no
            token's row is there); ``header``: "W_E: N rows"; ``gaps``: the gap marks;
            ``legend``: the colour scale (a :class:`DivergingLegend`).
        positions: The prompt positions listed.
        ids: Their token ids.
        k: Dimensions shown per row; ``layout`` the whole :class:`RowsLayout`.
        scale: The colour scale's end value (the rows' 98th percentile of ``|value|``).

    """

    n_dims = 8  # cells per row at most; the rest of d_model is left out (and said so)
    cell_width = (0.36, 0.6)  # a cell: narrowest that still reads as a cell, widest useful
    row_height = 0.34  # a row of cells
    list_pitch = 0.58  # the token list: a MIN_TEXT box and a margin
    max_box_width = 2.1  # a listed token's box; longer tokens are cut with …
    scales = tuple(  # (text size, vertical zoom) tried, biggest first
        (size, zoom) for size in (style.BODY_TEXT, style.MIN_TEXT) for zoom in (2.0, 1.6, 1.3, 1.0)
    )

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        positions: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        dims: int | None = None,
        portrait: bool | None = None,
    ) -> EmbeddingRows:
        """The tokens at ``positions`` (default all), their ids and their rows of ``W_E``.

        The layout lists the most tokens, then shows enough dimensions, then is
        the biggest; tokens that do not fit are left out from the end, with a
        "first n of m tokens" note.

        Args:
            trace: A trace or the path of one.
            positions: Prompt positions to list, in order (default: all).
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            dims: Prefer layouts showing this many dimensions (what a caption says;
                see :meth:`dims_shown`), if any fits.
            portrait: Narrower arrows and cells (default: the room is taller than wide).

        Returns:
            The block, laid out in the room centred on the origin.

        """
        self = cls()
        self._setup(trace, positions, width, height, theme, portrait)
        self.layout = self._best_layout(dims)
        self.k = self.layout.k
        self._build()
        return self

    @classmethod
    def dims_shown(
        cls,
        trace: Trace | str | Path,
        positions: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        portrait: bool | None = None,
    ) -> int:
        """How many dimensions per row :meth:`from_trace` shows in this room."""
        self = cls()
        self._setup(trace, positions, width, height, "dark", portrait)
        return self._best_layout(None).k

    # --- layout ---------------------------------------------------------------------------
    def _setup(
        self,
        trace: Trace | str | Path,
        positions: Sequence[int] | None,
        width: float | None,
        height: float | None,
        theme: Theme | str | None,
        portrait: bool | None,
    ) -> None:
        self.view = view = TraceView.of(trace, theme)
        self.theme, self.trace = view.theme, view.trace
        P = self.trace.n_positions
        self.positions = list(range(P)) if positions is None else [p % P for p in positions]
        self.ids = [int(self.trace.tokens.ids[p]) for p in self.positions]
        self.texts = [view.token_texts[p] for p in self.positions]
        w, h = room(width, height)
        self.room_box = _centred(w, h)
        self.portrait = h > w * 1.05 if portrait is None else portrait

    def _best_layout(self, k: int | None) -> RowsLayout:
        """The layout that lists the most tokens, then shows enough dims, then is biggest.

        With ``k``, only layouts that show ``k`` dims (what the caption says), if any.
        """
        best: RowsLayout | None = None
        for size, zoom in self.scales:
            layout = self._fit(size, zoom)
            if layout is None or (k is not None and layout.k != k):
                continue
            if best is None or (layout.n, min(layout.k, 6)) > (best.n, min(best.k, 6)):
                best = layout
        if best is None and k is not None:
            return self._best_layout(None)
        return best if best is not None else self._fit(style.MIN_TEXT, 1.0, True)

    def _fit(self, size: float, zoom: float, force: bool = False) -> RowsLayout | None:
        """Geometry at text ``size`` and vertical scale ``zoom``.

        None when it does not fit: fewer than 4 dims, or gap notes wider than the cells.
        """
        S = self.trace.embedding.W_E_sample.shape[1]
        last = self.trace.model.d_vocab - 1
        id_w = max(measure(str(i), size, ID_FONT) for i in [*self.ids, last])
        box_w = max(min(measure(shown(t), size) + 0.25, self.max_box_width) for t in self.texts)
        box_h = style.cap_height(size) * 2.0
        lay = RowsLayout(
            *self.room_box,
            size=size,
            pitch=max(self.list_pitch * zoom, box_h + 0.12),
            row_h=self.row_height * zoom,
            id_w=id_w,
            box_w=box_w,
            arrow_w=0.8 if self.portrait else 1.3,
            note_w=measure(f"⋮ {last:,} rows", style.MIN_TEXT),
        )
        fixed = box_w + lay.arrow_w + id_w + 0.12 + 0.16  # + the W_E frame's padding
        side_room = lay.width_room - fixed - 0.15 - lay.note_w
        lay.side = min(S, self.n_dims, int(side_room // self.cell_width[0])) >= min(6, S)
        cells_room = side_room if lay.side else lay.width_room - fixed
        lay.k = min(S, self.n_dims, int(cells_room // self.cell_width[0]))
        if lay.k < min(4, S) and not force:
            return None
        lay.k = max(lay.k, 1)
        lay.cell_w = min(self.cell_width[1] * (1 if self.portrait else 1.25), cells_room / lay.k)
        if lay.side:
            lay.band = 0.24 * zoom
        else:  # the note sits in the gap: room for a MIN_TEXT line, and for it across
            lay.band = max(0.4, 0.3 * zoom)
            if lay.k * lay.cell_w < lay.note_w and not force:
                return None
        height = lay.height_room - lay.header_h - lay.legend_h
        for n in range(1, len(self.ids) + 1):
            if self._block_height(lay, n) > height:
                break
            lay.n = n
        if lay.n == 0:
            if not force:
                return None
            lay.n = 1
        lay.height = lay.header_h + lay.legend_h + self._block_height(lay, lay.n)
        return lay

    def _block_height(self, lay: RowsLayout, n: int) -> float:
        """The taller of the token list (and its note) and W_E, for the first ``n`` tokens."""
        list_h = n * lay.pitch + (0.75 if n < len(self.ids) else 0.0)
        order = sorted(set(self.ids[:n]))
        edges = [-1, *order, self.trace.model.d_vocab]
        gaps = sum(lay.band if b - a > 1 else 0.06 for a, b in zip(edges, edges[1:]))
        return max(list_h, len(order) * lay.row_h + gaps)

    def _origin(self) -> tuple[float, float]:
        """Left edge and top (below the header) of the block, centred in the room."""
        lay = self.layout
        width = (
            lay.box_w
            + lay.arrow_w
            + lay.id_w
            + 0.12
            + lay.k * lay.cell_w
            + 0.16
            + (0.15 + lay.note_w if lay.side else 0.0)
        )
        cx, cy = (lay.x0 + lay.x1) / 2, (lay.y0 + lay.y1) / 2
        top = cy + lay.height / 2 - lay.header_h
        return cx - width / 2, min(top, lay.y1 - lay.header_h)

    # --- parts ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.boxes, self.note = self._token_list()
        self._matrix()
        self.add(*self.boxes)
        if self.note is not None:
            self.add(self.note)
        self.add(self.frame, self.ends, self.header, self.gaps, self.legend)
        self.add(*self.labels.values(), *self.cells.values(), *self.arrows)

    def get_static(self) -> list[Mobject]:
        """The parts that do not move: frame, end numbers, header, gap marks, legend, note."""
        parts = [self.frame, self.ends, self.header, self.gaps, self.legend]
        return parts + ([self.note] if self.note is not None else [])

    def _token_list(self) -> tuple[list[TokenBox], Mobject | None]:
        """The first ``n`` tokens top to bottom, right-aligned; a note when some are left out."""
        lay = self.layout
        x_left, top = self._origin()
        boxes = []
        for i in range(lay.n):
            box = TokenBox(
                self.texts[i],
                self.view.token_colors(self.ids[i]),
                lay.size,
                self.theme,
                max_width=lay.box_w,
                height=lay.pitch - 0.1,
            )
            box.move_to([x_left + lay.box_w - box.width / 2, top - lay.pitch * (i + 0.5), 0])
            boxes.append(box)
        note = None
        if lay.n < len(self.ids):
            note = paragraph(
                f"first {lay.n} of {len(self.ids)} tokens",
                style.MIN_TEXT,
                self.theme.muted,
                max_width=max(lay.box_w + 0.5, 1.6),
                max_lines=2,
            )
            note.next_to(boxes[-1], DOWN, buff=0.2)
            note.set_x(max(x_left + lay.box_w - note.width / 2, lay.x0 + note.width / 2))
        return boxes, note

    def _matrix(self) -> None:
        """W_E: rows in id order, evenly spaced, gaps marked with the rows they skip."""
        lay, theme, m = self.layout, self.theme, self.trace.model
        sample = self.trace.embedding.W_E_sample[self.positions]
        first: dict[int, int] = {}
        for i in range(lay.n):
            first.setdefault(self.ids[i], i)
        last = m.d_vocab - 1
        x_left, top = self._origin()
        x_label = x_left + lay.box_w + lay.arrow_w + lay.id_w  # row labels' right edge
        x_cells = x_label + 0.12 + 0.08
        width = lay.k * lay.cell_w
        self.scale = scale = style.robust_scale(self.trace.embedding.W_E_sample)
        y = top
        self.cells, self.labels, self.gaps = {}, {}, VGroup()
        previous = -1
        for token_id in [*sorted(first), None]:  # walk down: a band where rows are skipped
            skipped = (last + 1 if token_id is None else token_id) - previous - 1
            if skipped > 0:
                self.gaps.add(self._gap(skipped, y - lay.band / 2, x_cells, width))
                y -= lay.band
            else:
                y -= 0.06
            if token_id is None:
                break
            rgb = style.diverging_rgb(sample[first[token_id], : lay.k], scale, theme) / 255
            self.cells[token_id] = VGroup(
                *(
                    Rectangle(
                        width=lay.cell_w,
                        height=lay.row_h,
                        stroke_width=1,
                        stroke_color=theme.background,
                        fill_color=rgb[j],
                        fill_opacity=1.0,
                    ).move_to([x_cells + lay.cell_w * (j + 0.5), y - lay.row_h / 2, 0])
                    for j in range(lay.k)
                )
            )
            number = label(str(token_id), lay.size, self.view.token_colors(token_id), font=ID_FONT)
            self.labels[token_id] = center_on(
                number, [x_label - number.width / 2, y - lay.row_h / 2, 0]
            )
            y -= lay.row_h
            previous = token_id
        self.frame = Rectangle(
            width=width + 0.16, height=top - y, stroke_width=1.5, stroke_color=theme.muted
        )
        self.frame.move_to([x_cells + width / 2, (top + y) / 2, 0])
        self.ends = VGroup()
        for value, edge in ((0, top), (last, y)):
            if value not in self.labels:  # the matrix's first and last row numbers, at its edges
                mark = label(str(value), style.MIN_TEXT, theme.muted, font=ID_FONT)
                self.ends.add(center_on(mark, [x_label - mark.width / 2, edge, 0]))
        self.header = label(f"W_E: {m.d_vocab:,} rows", lay.size, theme.foreground)
        self.header.next_to(self.frame, UP, buff=0.2).align_to(self.frame, LEFT)
        self.legend = DivergingLegend(
            scale,
            theme,
            (f"−{scale:.2f}", "0", f"+{scale:.2f}"),
            width=max(2.4, min(3.2, self.frame.width)),
        )
        self.legend.next_to(self.frame, DOWN, buff=0.2)
        for part in (self.header, self.legend):
            overshoot = part.get_right()[0] - lay.x1
            if overshoot > 0:
                part.shift(LEFT * overshoot)
        self.arrows = [self._arrow(i, x_left + lay.box_w + 0.1, top) for i in range(lay.n)]

    def _arrow(self, i: int, x: float, top: float) -> Arrow:
        """The arrow from listed token ``i`` to its row."""
        token_id = self.ids[i]
        start = np.array([x, top - self.layout.pitch * (i + 0.5), 0])
        end = self.labels[token_id].get_left() + LEFT * 0.1
        end[1] = self.cells[token_id].get_center()[1]
        return Arrow(
            start,
            end,
            buff=0,
            stroke_width=2.5,
            tip_length=0.14,
            max_tip_length_to_length_ratio=0.3,
            color=self.view.token_colors(token_id),
        )

    def _gap(self, skipped: int, mid: float, x: float, width: float) -> VGroup:
        """A break in W_E: a dashed line or ⋮, and how many rows it leaves out."""
        note = label(f"⋮ {skipped:,} rows", style.MIN_TEXT, self.theme.muted)
        if not self.layout.side:
            return VGroup(center_on(note, [x + width / 2, mid, 0]))
        dashes = DashedLine(
            [x, mid, 0],
            [x + width, mid, 0],
            dash_length=0.06,
            stroke_width=1.5,
            color=self.theme.muted,
        )
        center_on(note, [x + width + 0.08 + 0.15 + note.width / 2, mid, 0])
        return VGroup(dashes, note)


# --- cosine similarity -------------------------------------------------------------------


class CosineMatrix(Group):
    """A square matrix of signed values as a heatmap: token labels, legend and numbers.

    Built by :meth:`from_trace` for the cosine similarity of the prompt's rows of
    ``W_E``, or by :meth:`from_matrix` for any square matrix. When not every row
    fits at ``min_cell``, the first ones are shown with a "first n of m tokens" note.

    Attributes:
        grid: The :class:`~mechviz.visual.mobjects.Heatmap` (``grid.cell_center(i, j)``).
        row_labels: One label left of each row shown.
        col_labels: One label above each column shown (upright or turned 90°).
        labels: Row and column labels (and the note), in one group.
        numbers: Each cell's value (``fmt``), empty when a cell is too small to read one.
        legend: The colour scale (a :class:`DivergingLegend`).
        note: "first n of m tokens" when some are left out, else ``None``.
        values: The values drawn, ``[n, n]``.
        n: Rows (and columns) shown.

    """

    min_cell = 0.45  # a cell: at least a MIN_TEXT label high
    max_cell = 1.2  # bigger cells add nothing but emptiness
    legend_width = 2.4

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        positions: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        numbers: bool = True,
    ) -> CosineMatrix:
        """The cosine similarity of the prompt tokens' rows of ``W_E``, labelled by token.

        The values are the trace's ``embedding.cosine`` (computed over all
        ``d_model`` dimensions when the trace was made, not the few stored ones).

        Args:
            trace: A trace or the path of one.
            positions: Prompt positions to compare, in order (default: all).
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            numbers: Write each cell's value when it fits.

        Returns:
            The block, laid out in the room centred on the origin.

        """
        view = TraceView.of(trace, theme)
        P = view.trace.n_positions
        chosen = list(range(P)) if positions is None else [p % P for p in positions]
        values = view.trace.embedding.cosine[np.ix_(chosen, chosen)]
        colors = [view.token_color(p) for p in chosen]
        block = cls.from_matrix(
            values,
            [view.token_texts[p] for p in chosen],
            colors,
            width=width,
            height=height,
            theme=view.theme,
            numbers=numbers,
        )
        block.positions = chosen[: block.n]
        return block

    @classmethod
    def from_matrix(
        cls,
        values: np.ndarray,
        labels: Sequence[str],
        colors: Sequence[object] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        numbers: bool = True,
        scale: float = 1.0,
        fmt: Callable[[float], str] = fmt_cosine,
    ) -> CosineMatrix:
        """Any square matrix ``[m, m]`` of signed values, its rows and columns labelled.

        Args:
            values: The matrix, ``[m, m]``.
            labels: One label per row/column (raw token text; made visible with ``shown``).
            colors: One colour per label (default: the theme's foreground).
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            numbers: Write each cell's value when it fits.
            scale: The value at full colour (the legend runs ``-scale`` to ``+scale``).
            fmt: How a value is written (default :func:`fmt_cosine`, for [-1, 1]).

        Returns:
            The block, laid out in the room centred on the origin.

        """
        from mechviz.visual.blocks import resolve_theme

        theme = resolve_theme(theme)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape != (len(labels), len(labels)):
            raise ValueError(f"need a square matrix and one label per row; got {values.shape}")
        colors = list(colors) if colors is not None else [theme.foreground] * len(labels)
        self = cls()
        self.theme, self.scale, self.fmt = theme, scale, fmt
        self.positions = list(range(len(labels)))
        self._layout(values, [shown(t) for t in labels], colors, *room(width, height), numbers)
        return self

    def cell_center(self, row: int, col: int) -> np.ndarray:
        """The centre of cell (``row``, ``col``), a point ``[3]`` in scene units."""
        return self.grid.cell_center(row, col)

    def highlight(self, row: int, col: int, color: object = None) -> Rectangle:
        """A frame around cell (``row``, ``col``) (not added; play ``Create`` on it)."""
        cell = self.grid.cell
        return Rectangle(
            width=cell,
            height=self.grid.cell_height,
            stroke_width=4,
            stroke_color=color if color is not None else self.theme.highlight,
        ).move_to(self.cell_center(row, col))

    # --- layout ---------------------------------------------------------------------------
    def _layout(
        self,
        all_values: np.ndarray,
        names: list[str],
        colors: list,
        w: float,
        h: float,
        numbers: bool,
    ) -> None:
        """The heatmap of the first rows that fit, labels, numbers and legend."""
        theme, P = self.theme, len(names)
        x0, x1, y0, y1 = _centred(w, h)
        row_w = min(1.8, max(measure(s, style.MIN_TEXT) for s in names))
        # The legend beside the grid or below it: whichever leaves the bigger cells.
        s = self.scale
        ends = ("−1", "0", "+1") if s == 1.0 else (f"−{s:.2g}", "0", f"+{s:.2g}")
        legend = DivergingLegend(s, theme, ends, width=self.legend_width)
        n, cell, upright, below = max(
            (self._fit(names, row_w, legend, below, w, h) + (below,) for below in (True, False)),
            key=lambda fit: (fit[0], fit[1]),
        )
        col_h = (
            0.4 if upright else min(1.6, max(measure(s, style.MIN_TEXT) for s in names[:n])) + 0.12
        )
        note_h = 0.45 if n < P else 0.0
        values = all_values[:n, :n]
        grid = Heatmap(style.diverging_rgb(values, s, theme), cell * n, cell * n, theme)
        block_w = row_w + 0.15 + grid.width + (0 if below else 0.5 + legend.width)
        block_h = note_h + col_h + grid.height + (legend.height + 0.25 if below else 0)
        gx = -block_w / 2 + row_w + 0.15
        gy = block_h / 2 - col_h - note_h
        grid.move_to([gx + grid.width / 2, gy - grid.height / 2, 0])
        if below:
            legend.next_to(grid, DOWN, buff=0.25)
        else:
            legend.next_to(grid, RIGHT, buff=0.5).align_to(grid, DOWN)
        labels, self.row_labels, self.col_labels = VGroup(), VGroup(), VGroup()
        for i in range(n):
            row = label(names[i], style.MIN_TEXT, colors[i], max_width=row_w)
            center_on(
                row, [grid.get_left()[0] - 0.12 - row.width / 2, grid.cell_center(i, 0)[1], 0]
            )
            col = label(names[i], style.MIN_TEXT, colors[i], max_width=max(col_h - 0.1, cell))
            if upright:
                center_on(col, [grid.cell_center(0, i)[0], grid.get_top()[1] + 0.22, 0])
            else:
                col.rotate(np.pi / 2)
                col.next_to(grid, UP, buff=0.1).set_x(grid.cell_center(0, i)[0])
            labels.add(row, col)
            self.row_labels.add(row)
            self.col_labels.add(col)
        self.note = None
        if n < P:
            self.note = label(f"first {n} of {P} tokens", style.MIN_TEXT, theme.muted)
            center_on(self.note, [grid.get_center()[0], grid.get_top()[1] + col_h + 0.22, 0])
            self.note.shift(RIGHT * max(0.0, x0 - self.note.get_left()[0]))
            labels.add(self.note)
        self.grid, self.labels, self.legend = grid, labels, legend
        self.values, self.n = values, n
        self.numbers = self._numbers() if numbers else VGroup()
        self.add(grid, labels, self.numbers, legend)

    def _fit(
        self, names: list[str], row_w: float, legend: Group, below: bool, w: float, h: float
    ) -> tuple[int, float, bool]:
        """Rows shown, cell size and upright column labels, with the legend ``below`` or not."""
        P = len(names)
        avail_w = w - row_w - 0.15 - (0 if below else legend.width + 0.5)
        avail_h = h - (legend.height + 0.25 if below else 0.0)
        turned = min(1.6, max(measure(s, style.MIN_TEXT) for s in names)) + 0.12
        best = (0, 0.0, False)
        for upright, col_h in ((False, turned), (True, 0.4)):
            side = min(avail_w, avail_h - col_h)
            n = max(1, min(P, int(side // self.min_cell)))
            side = min(avail_w, avail_h - col_h - (0.45 if n < P else 0.0))
            n = max(1, min(n, int(side // self.min_cell)))
            cell = min(self.max_cell, side / n)
            fits = max(measure(s, style.MIN_TEXT) for s in names[:n]) <= cell * 0.92
            if upright and not fits:
                continue
            best = max(best, (n, cell, upright), key=lambda b: (b[0], b[1]))
        return best

    def _numbers(self) -> VGroup:
        """Each cell's value (``.47``, ``−.15``, ``1``) when every one fits at MIN_TEXT."""
        grid, values = self.grid, self.values
        texts = [[self.fmt(v) for v in row] for row in values]
        widest = max(measure(t, style.MIN_TEXT, ID_FONT) for row in texts for t in row)
        numbers = VGroup()
        if widest > grid.cell * 0.9 or grid.cell_height < 0.42:
            return numbers
        rgb = style.diverging_rgb(values, self.scale, self.theme)
        for i, row in enumerate(texts):
            for j, text in enumerate(row):
                color = self.theme.text_on(rgb[i, j] / 255)
                number = label(text, style.MIN_TEXT, color, font=ID_FONT)
                numbers.add(center_on(number, grid.cell_center(i, j)))
        return numbers

"""Attention building blocks: one head's pattern as a grid, one query's arcs, a layer's heads.

Each block draws ``trace.attention.pattern[layer, head, query_pos, key_pos]``
(weights in [0, 1], each query row summing to 1 over keys ``0..query``) and
nothing else. When the room cannot hold every token, a block shows fewer and
says so: the grid writes "N of M tokens" under itself, the arcs put "…" where
tokens were left out. See :mod:`mechviz.visual.blocks` for what every block shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from manim import (
    DOWN,
    LEFT,
    ORIGIN,
    RIGHT,
    UP,
    ArcBetweenPoints,
    Group,
    Line,
    Rectangle,
    SurroundingRectangle,
    VGroup,
)

from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, resolve_theme, room
from mechviz.visual.mobjects import Heatmap, TokenBox, window
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure, number, paragraph

__all__ = [
    "ARC_ROW",
    "AttentionArcs",
    "AttentionGrid",
    "HeadGallery",
    "MAX_ARC_KEYS",
    "MIN_ARC_WEIGHT",
    "MIN_CELL",
    "grid_window",
    "query_position",
    "strongest_keys",
]

MIN_CELL = 0.36  # a grid row or column: room for a token label at MIN_TEXT
ARC_ROW = 0.46  # a token box in the arcs column
MIN_ARC_WEIGHT = 0.05  # keys drawn as arcs: at least this weight ...
MAX_ARC_KEYS = 6  # ... and at most this many, strongest first
MASK_WORDS = "hatched: masked, later keys"
MIN_DRAWN = 0.01  # a shown key whose weight rounds (2 decimals) below this gets no arc


# --- choices shared by the blocks ---------------------------------------------------------
def query_position(trace: Trace, query: int | None) -> int:
    """The query position ``query`` names: ``None`` is the last, negatives count from the end.

    Args:
        trace: The trace whose prompt is indexed.
        query: A position in ``-P .. P-1`` (``P`` prompt tokens), or ``None``.

    Returns:
        The position in ``0 .. P-1``.

    Raises:
        MechvizError: ``query`` is outside the prompt.

    """
    P = trace.n_positions
    q = P - 1 if query is None else int(query)
    if not -P <= q < P:
        raise MechvizError(f"Query {q} is out of range; this prompt has positions 0 to {P - 1}.")
    return q % P


def _check_head(trace: Trace, layer: int, head: int | None = None) -> None:
    L, H = trace.model.n_layers, trace.model.n_heads
    if not 0 <= layer < L:
        raise MechvizError(f"Layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if head is not None and not 0 <= head < H:
        raise MechvizError(f"Head {head} is out of range; this model has heads 0 to {H - 1}.")


def strongest_keys(pattern: np.ndarray, query: int) -> list[int]:
    """The keys a query reads most, strongest first, the query itself left out.

    Args:
        pattern: One head's weights, ``[query_pos, key_pos]`` (causal: keys ``0..query``).
        query: The query position.

    Returns:
        Key positions with weight >= :data:`MIN_ARC_WEIGHT`, at most :data:`MAX_ARC_KEYS`,
        strongest first (ties: the earlier position); when none is that strong, the
        strongest key alone; empty only for ``query == 0``.

    """
    w = pattern[query, : query + 1]
    order = [int(k) for k in np.argsort(-w, kind="stable") if k != query]
    keys = [k for k in order if w[k] >= MIN_ARC_WEIGHT][:MAX_ARC_KEYS]
    return keys or order[:1]


def grid_window(pattern: np.ndarray, query: int, n: int) -> list[int]:
    """``n`` positions for a grid: the query, its strongest keys, the first token, the last ones.

    Args:
        pattern: One head's weights, ``[query_pos, key_pos]``.
        query: The query whose keys must be shown.
        n: How many positions the grid has room for.

    Returns:
        Up to ``n`` sorted positions.

    """
    keep = [query, *strongest_keys(pattern, query), 0]
    return window(pattern.shape[0], keep, n)


def _n_splits(positions: list[int]) -> int:
    """How many runs of left-out positions lie between sorted ``positions``."""
    return sum(1 for a, b in zip(positions, positions[1:]) if b - a > 1)


# --- the grid -----------------------------------------------------------------------------
class _OneHead:
    """What AttentionGrid and AttentionArcs share: one head's pattern, read from one query."""

    def _take(self, pattern: np.ndarray, query: int | None, theme: Theme | str | None) -> None:
        self.theme = resolve_theme(theme)
        self.pattern = np.asarray(pattern)
        P = self.pattern.shape[0]
        self.query = P - 1 if query is None else int(query) % P
        self.layer: int | None = None
        self.head: int | None = None

    @classmethod
    def _of_head(
        cls,
        trace: Trace | str | Path,
        layer: int,
        head: int,
        query: int | None,
        width: float | None,
        height: float | None,
        theme: Theme | str | None,
    ):  # type: ignore[no-untyped-def]
        """The block for ``head`` of ``layer`` of ``trace``: what each ``from_trace`` does."""
        view = TraceView.of(trace, theme)
        tr = view.trace
        _check_head(tr, layer, head)
        colors = [view.token_color(p) for p in range(tr.n_positions)]
        block = cls(  # type: ignore[call-arg]
            tr.attention.pattern[layer, head],
            view.token_texts,
            colors,
            query_position(tr, query),
            width=width,
            height=height,
            theme=view.theme,
        )
        block.layer, block.head = layer, head
        return block


class AttentionGrid(_OneHead, Group):
    """One head's query-by-key pattern as a heatmap with token labels on both axes.

    Rows are queries, columns keys; a cell's colour runs from the theme's neutral
    (weight 0) to its attention colour (weight 1); a later key, which the causal
    mask hides from the query, is hatched (never drawn like a weight of 0).
    Numbers are written in the cells when they are big enough. When the room holds
    fewer than all ``P`` tokens, the grid keeps the query, its strongest keys and
    the first token, fills up with the last tokens, marks the left-out runs with
    gaps and writes "N of P tokens" below.

    Args:
        pattern: The head's weights, ``[P, P]`` (query x key).
        texts: The ``P`` token texts (readable; made visible with ``shown``).
        colors: The ``P`` token colours.
        query: The query whose keys the window must keep (default: the last position).
        width: Room in scene units (default: the frame less margins).
        height: Room in scene units (default: the frame less margins).
        theme: Colours (default: the current render's theme).

    Attributes:
        pattern: The full ``[P, P]`` pattern drawn from.
        query: The query position the window was chosen for.
        positions: The ``n`` shown token positions, sorted; grid row/column ``i`` is
            position ``positions[i]``.
        weights: The shown weights, ``[n, n]`` (``pattern`` at ``positions`` x ``positions``).
        heatmap: The :class:`~mechviz.visual.mobjects.Heatmap` (an image and its frame).
        gaps: Lines where positions were left out.
        numbers: The weights written in the cells (empty when cells are too small).
        row_labels: One query token label per row.
        col_labels: One key token label per column.
        query_label: The "query →" axis name (left, turned).
        key_label: The "key →" axis name (top).
        note: What the hatching means ("hatched: masked, later keys"), after "n of P
            tokens; " when tokens were left out.
        layer: The layer (set by :meth:`from_trace`, else ``None``).
        head: The head (set by :meth:`from_trace`, else ``None``).

    """

    def __init__(
        self,
        pattern: np.ndarray,
        texts: Sequence[str],
        colors: Sequence[object],
        query: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self._take(pattern, query, theme)
        self._build(list(texts), list(colors), *room(width, height))

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        layer: int,
        head: int,
        *,
        query: int | None = None,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> AttentionGrid:
        """The pattern of ``head`` in ``layer`` of ``trace``.

        Args:
            trace: A :class:`~mechviz.tracing.schema.Trace` or a path to one.
            layer: The layer, ``0 .. n_layers-1``.
            head: The head, ``0 .. n_heads-1``.
            query: The query the window keeps with its strongest keys (default: the last).
            width: Room in scene units (default: the frame less margins).
            height: Room in scene units (default: the frame less margins).
            theme: A theme or its name (default: the current render's).

        Returns:
            The grid, centred on the origin.

        """
        return cls._of_head(trace, layer, head, query, width, height, theme)

    def _build(self, texts: list[str], colors: list[object], width: float, height: float) -> None:
        theme, P = self.theme, self.pattern.shape[0]
        axis_w, key_h, note_h = 0.45, 0.45, 0.45  # the note (hatching, tokens left out) always
        drawn = [shown(t) for t in texts]  # as the labels draw them (the labels show them)
        row_w = min(max(measure(t, style.MIN_TEXT) for t in drawn) + 0.05, 1.8, width * 0.28)
        avail_w = width - axis_w - row_w - 0.15
        col_h = 0.4
        for _ in range(3):  # the column labels' height depends on the cell size
            avail_h = height - key_h - col_h - 0.1
            n = max(1, min(P, int(min(avail_w, avail_h - note_h) // MIN_CELL)))
            cut = n < P
            cell = min(1.4, avail_w / n, (avail_h - note_h) / n)
            positions = grid_window(self.pattern, self.query, n)
            longest = max(measure(drawn[p], style.MIN_TEXT) for p in positions) + 0.05
            new_h = 0.4 if longest <= cell * 0.95 else min(1.6, longest + 0.15, height * 0.3)
            if abs(new_h - col_h) < 1e-6:
                break
            col_h = new_h
        self.positions = positions
        self.weights = self.pattern[np.ix_(positions, positions)]
        heat = Heatmap(
            style.attention_rgb(
                self.weights, style.causal_mask(positions), high=theme.attention, theme=theme
            ),
            cell * n,
            cell * n,
            theme,
            shape=(n, n),
        )
        self.heatmap = heat
        shown_texts = [texts[p] for p in positions]
        shown_colors = [colors[p] for p in positions]
        self.row_labels = heat.get_row_labels(shown_texts, shown_colors, max_width=row_w)
        self.col_labels = heat.get_col_labels(shown_texts, shown_colors, max_height=col_h - 0.1)
        self.gaps = self._gaps()
        self.numbers = heat.get_numbers(self.weights, lower_only=True)
        self.query_label = label("query →", style.MIN_TEXT, theme.muted).rotate(-np.pi / 2)
        self.query_label.next_to(self.row_labels, LEFT, buff=0.12)
        self.query_label.set_y(heat.frame.get_center()[1])
        self.key_label = label("key →", style.MIN_TEXT, theme.muted)
        self.key_label.next_to(self.col_labels, UP, buff=0.1).set_x(heat.frame.get_center()[0])
        self.add(
            heat,
            self.gaps,
            self.numbers,
            self.row_labels,
            self.col_labels,
            self.query_label,
            self.key_label,
        )
        words = f"{n} of {P} tokens; " if cut else ""
        self.note = label(f"{words}{MASK_WORDS}", style.MIN_TEXT, theme.muted, max_width=width)
        self.note.next_to(heat.frame, DOWN, buff=0.15)
        self.add(self.note)
        self.move_to(ORIGIN)

    def _gaps(self) -> VGroup:
        """Background-coloured lines between shown positions that are not neighbours."""
        heat, positions, gaps = self.heatmap, self.positions, VGroup()
        left, right = heat.frame.get_left()[0], heat.frame.get_right()[0]
        top, bottom = heat.frame.get_top()[1], heat.frame.get_bottom()[1]
        for i in range(1, len(positions)):
            if positions[i] - positions[i - 1] > 1:  # positions left out: a split in the grid
                x = left + heat.cell * i
                y = top - heat.cell_height * i
                line = {"stroke_width": 4, "color": self.theme.background}
                gaps.add(Line([x, top, 0], [x, bottom, 0], **line))
                gaps.add(Line([left, y, 0], [right, y, 0], **line))
        return gaps

    def shows(self, position: int) -> bool:
        """Whether token ``position`` has a row and a column in the grid."""
        return int(position) in self.positions

    def index(self, position: int) -> int:
        """The grid row (and column) of token ``position``.

        Raises:
            ValueError: The position was left out of the window (see :attr:`positions`).

        """
        if not self.shows(position):
            raise ValueError(f"position {position} is not shown; shown are {self.positions}")
        return self.positions.index(int(position))

    def cell_center(self, query: int, key: int) -> np.ndarray:
        """The scene point at the centre of cell (``query``, ``key``), token positions.

        Returns:
            A point ``[x, y, 0]`` in scene units.

        """
        return self.heatmap.cell_center(self.index(query), self.index(key))

    def highlight(self, query: int, key: int, color: object = None) -> Rectangle:
        """A frame around cell (``query``, ``key``) (token positions), not yet added.

        Args:
            query: The query position (row).
            key: The key position (column).
            color: Stroke colour (default: the theme's highlight).

        Returns:
            A rectangle one cell in size, centred on the cell.

        """
        heat = self.heatmap
        frame = Rectangle(
            width=heat.cell,
            height=heat.cell_height,
            stroke_color=color or self.theme.highlight,
            stroke_width=4,
        )
        return frame.move_to(self.cell_center(query, key))

    def highlight_row(self, query: int, color: object = None) -> Rectangle:
        """A frame around the whole row of ``query`` (a token position), not yet added.

        Returns:
            A rectangle the grid's width and one cell high.

        """
        heat = self.heatmap
        row = Rectangle(
            width=heat.frame.width,
            height=heat.cell_height,
            stroke_color=color or self.theme.highlight,
            stroke_width=4,
        )
        return row.move_to([heat.frame.get_center()[0], self.cell_center(query, query)[1], 0])


# --- the arcs -----------------------------------------------------------------------------
class AttentionArcs(_OneHead, VGroup):
    """One query's reads: the token column, each key's weight at its left, arcs at its right.

    The column holds the query (framed), the first token, the strongest keys (see
    :func:`strongest_keys`) and, room left, the tokens just before the query; "…"
    stands where tokens were left out. Every shown key has its weight beside it, and
    an arc from the query when that weight reads 0.01 or more (two decimals), its
    width and opacity growing with the weight. The strongest key other than the
    query itself is always shown, whatever the room.

    Args:
        pattern: The head's weights, ``[P, P]`` (query x key).
        texts: The ``P`` token texts (readable).
        colors: The ``P`` token colours.
        query: The query position (default: the last).
        width: Room in scene units (default: the frame less margins).
        height: Room in scene units (default: the frame less margins).
        theme: Colours (default: the current render's theme).

    Attributes:
        query: The query position.
        keys: :func:`strongest_keys` of the query, strongest first.
        positions: The shown token positions, sorted.
        arc_keys: The key position of each arc in :attr:`arcs`, in the same order.
        boxes: Token position -> its :class:`~mechviz.visual.mobjects.TokenBox`.
        tokens: The token boxes, the "…" marks and the query's frame (part 0).
        numbers: The weights ``pattern[query, key]`` beside the boxes (part 1).
        arcs: The arcs (part 2).
        focus: The frame around the query's box.
        layer: The layer (set by :meth:`from_trace`, else ``None``).
        head: The head (set by :meth:`from_trace`, else ``None``).

    """

    def __init__(
        self,
        pattern: np.ndarray,
        texts: Sequence[str],
        colors: Sequence[object],
        query: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self._take(pattern, query, theme)
        self.keys = strongest_keys(self.pattern, self.query)
        w, h = room(width, height)
        self.positions = self._choose(h)
        self._build(list(texts), list(colors), w, h)

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        layer: int,
        head: int,
        query: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> AttentionArcs:
        """The arcs of ``query`` for ``head`` in ``layer`` of ``trace``.

        Args:
            trace: A :class:`~mechviz.tracing.schema.Trace` or a path to one.
            layer: The layer, ``0 .. n_layers-1``.
            head: The head, ``0 .. n_heads-1``.
            query: The query position, negatives from the end (default: the last).
            width: Room in scene units (default: the frame less margins).
            height: Room in scene units (default: the frame less margins).
            theme: A theme or its name (default: the current render's).

        Returns:
            The arcs, centred on the origin.

        """
        return cls._of_head(trace, layer, head, query, width, height, theme)

    def _choose(self, height: float) -> list[int]:
        """The positions the column has room for (a "…" row counts as one)."""
        q, keys = self.query, self.keys
        capacity = max(3, min(12, int(height // ARC_ROW)))
        must = [q, *keys[:1]]  # the query and its strongest key are never left out
        extra = [0, *keys[1:]]  # left out from the end (the weakest first) when room is short
        while True:
            positions = sorted(set(must + extra))
            if len(positions) + _n_splits(positions) <= capacity or not extra:
                break
            extra.pop()
        for p in range(q - 1, 0, -1):  # room left: the tokens just before the query
            trial = sorted(set(positions) | {p})
            if p not in positions and len(trial) + _n_splits(trial) <= capacity:
                positions = trial
        return positions

    def _build(self, texts: list[str], colors: list[object], width: float, height: float) -> None:
        theme, q = self.theme, self.query
        rows: list[int | None] = []
        for p in self.positions:
            if rows and rows[-1] is not None and p - rows[-1] > 1:
                rows.append(None)
            rows.append(p)
        row_h = min(0.85, height / len(rows))
        size = style.BODY_TEXT if row_h >= 0.6 else style.MIN_TEXT
        num_w = 0.95 if size == style.BODY_TEXT else 0.8
        box_w = min(2.4, width * 0.4)
        arc_w = min(2.5, width - num_w - box_w - 0.2)
        self.tokens, self.numbers, self.arcs = VGroup(), VGroup(), VGroup()
        self.boxes: dict[int, TokenBox] = {}
        top = row_h * len(rows) / 2
        for r, p in enumerate(rows):
            y = top - row_h * (r + 0.5)
            if p is None:
                dots = label("…", size, theme.muted)
                self.tokens.add(center_on(dots, [num_w + 0.3, y, 0]))
                continue
            token = TokenBox(texts[p], colors[p], size, theme, max_width=box_w, height=row_h * 0.8)
            token.move_to([num_w + 0.1 + token.width / 2, y, 0])
            self.boxes[p] = token
            self.tokens.add(token)
            weight = float(self.pattern[q, p])
            # Every key shown says its weight; it has an arc when that says 0.01 or more.
            color = theme.foreground if weight >= MIN_ARC_WEIGHT else theme.muted
            self.numbers.add(center_on(number(f"{weight:.2f}", size, color), [num_w / 2, y, 0]))
        self.focus = SurroundingRectangle(
            self.boxes[q], color=theme.highlight, buff=0.05, stroke_width=4
        )
        self.tokens.add(self.focus)
        self._draw_arcs(arc_w)
        self.add(self.tokens, self.numbers, self.arcs)
        self.move_to(ORIGIN)

    def _draw_arcs(self, arc_w: float) -> None:
        q, boxes = self.query, self.boxes
        right = max(b.get_right()[0] for b in boxes.values()) + 0.1
        end = np.array([right, boxes[q].get_center()[1], 0])
        self.arc_keys: list[int] = []
        for p in self.positions:
            weight = float(self.pattern[q, p])
            if p == q or round(weight, 2) < MIN_DRAWN:  # no arc for a weight shown as 0.00
                continue
            start = np.array([right, boxes[p].get_center()[1], 0])
            chord = float(np.hypot(*(end - start)[:2]))
            bulge = min(max(chord / 2, 0.5), arc_w - 0.1)
            angle = 4 * np.arctan(2 * max(bulge, 0.1) / chord)
            arc = ArcBetweenPoints(
                end, start, angle=angle, color=self.theme.attention, stroke_width=1 + 12 * weight
            )
            self.arcs.add(arc.set_stroke(opacity=0.3 + 0.7 * weight))
            self.arc_keys.append(p)


# --- the heads ----------------------------------------------------------------------------
class HeadGallery(Group):
    """Every head of one layer as a small pattern, named "head h", one optionally framed.

    The panels are laid out in the grid of columns and rows that makes them
    biggest in the room (at most 2.6 units a side), less :attr:`FRAME_PAD` on every
    side, which the highlight frame may reach into. With ``texts``, each row of
    panels has the query tokens left of it when its cells are a label high; a note
    below says rows are queries, columns keys, and that hatched cells are masked.

    Args:
        patterns: The layer's weights, ``[H, P, P]`` (head x query x key).
        highlight: The head to frame (default: none).
        width: Room in scene units (default: the frame less margins).
        height: Room in scene units (default: the frame less margins).
        theme: Colours (default: the current render's theme).
        texts: The ``P`` token texts, for the query labels (default: none).
        colors: Their colours (default: the foreground).

    Attributes:
        panels: One ``Group(heatmap, name)`` per head, in head order.
        heatmaps: The ``H`` :class:`~mechviz.visual.mobjects.Heatmap` s.
        names: The ``H`` "head h" labels.
        token_labels: The query tokens left of each row of panels (empty when
            the cells are too small for them).
        note: What rows, columns and the hatching are (Text).
        frame: The frame around the highlighted head's pattern, or ``None``.
        highlighted: The framed head, or ``None``.
        extent: An invisible rectangle, the panels' bounds grown by :attr:`FRAME_PAD`.
        layer: The layer (set by :meth:`from_trace`, else ``None``).

    """

    FRAME_PAD = 0.1  # room kept around the panels for the highlight frame (scene units)
    MIN_ROW = 0.26  # a cell at least this tall carries a token label (MIN_TEXT's line)

    def __init__(
        self,
        patterns: np.ndarray,
        highlight: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        texts: Sequence[str] | None = None,
        colors: Sequence[object] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = resolve_theme(theme)
        self.patterns = np.asarray(patterns)
        self.layer: int | None = None
        self.texts = list(texts) if texts is not None else None  # raw: the labels show them
        P = self.patterns.shape[-1]
        self.colors = list(colors) if colors is not None else [self.theme.foreground] * P
        w, h = room(width, height)
        self._build(w - 2 * self.FRAME_PAD, h - 2 * self.FRAME_PAD)
        self.highlighted = highlight
        self.frame = None if highlight is None else self.highlight_head(highlight)
        self.add(self.extent, self.panels, self.token_labels, self.note)
        if self.frame is not None:
            self.add(self.frame)

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        layer: int,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        highlight: int | None = None,
    ) -> HeadGallery:
        """Every head of ``layer`` in ``trace``, the query tokens beside them when they fit.

        Args:
            trace: A :class:`~mechviz.tracing.schema.Trace` or a path to one.
            layer: The layer, ``0 .. n_layers-1``.
            width: Room in scene units (default: the frame less margins).
            height: Room in scene units (default: the frame less margins).
            theme: A theme or its name (default: the current render's).
            highlight: The head to frame, ``0 .. n_heads-1`` (default: none).

        Returns:
            The gallery, its panels centred on the origin.

        """
        view = TraceView.of(trace, theme)
        _check_head(view.trace, layer, highlight)
        tr = view.trace
        gallery = cls(
            tr.attention.pattern[layer],
            highlight,
            width=width,
            height=height,
            theme=view.theme,
            texts=view.token_texts,
            colors=[view.token_color(p) for p in range(tr.n_positions)],
        )
        gallery.layer = layer
        return gallery

    def _layout(self, width: float, height: float, label_w: float) -> tuple[float, int, int]:
        """The panel side, columns and rows that make the panels biggest in the room."""
        H = self.patterns.shape[0]
        name_h, gap = 0.42, 0.3
        name_w = label(f"head {H - 1}", style.MIN_TEXT).width + 0.15
        width, height = width - label_w, height - self.note_h
        best = (0.0, 1, H)
        for cols in range(1, H + 1):
            rows = -(-H // cols)
            if (name_w + gap) * cols - gap > width:
                break
            size = min(
                (width - gap * (cols - 1)) / cols,
                (height - rows * name_h - gap * (rows - 1)) / rows,
            )
            if size > best[0]:
                best = (size, cols, rows)
        size, cols, rows = best
        return min(size, 2.6), cols, rows

    def _build(self, width: float, height: float) -> None:
        theme, gap = self.theme, 0.3
        P = self.patterns.shape[-1]
        words = f"rows: queries, columns: keys (prompt order); {MASK_WORDS}"
        self.note = paragraph(words, style.MIN_TEXT, theme.muted, max_width=width)
        self.note_h = self.note.height + 0.2
        label_w = 0.0
        if self.texts is not None:
            longest = max(measure(shown(t), style.MIN_TEXT) for t in self.texts)
            label_w = min(longest + 0.05, 1.6) + 0.15 + self.FRAME_PAD  # slack: never cut "A"
            if self._layout(width, height, label_w)[0] / P < self.MIN_ROW:
                label_w = 0.0  # cells too small for a label each: the note says what rows are
        size, cols, rows = self._layout(width, height, label_w)
        self.panels, self.heatmaps, self.names = Group(), [], []
        mask = style.causal_mask(range(P))
        for h, pattern in enumerate(self.patterns):
            rgb = style.attention_rgb(pattern, mask, high=theme.attention, theme=theme)
            heat = Heatmap(rgb, size, size, theme, shape=(P, P))
            name = label(f"head {h}", style.MIN_TEXT, theme.muted)
            name.next_to(heat, UP, buff=0.16)
            self.heatmaps.append(heat)
            self.names.append(name)
            self.panels.add(Group(heat, name))
        self.panels.arrange_in_grid(rows=rows, cols=cols, buff=(gap, gap))
        self.panels.move_to(ORIGIN).shift(RIGHT * label_w / 2 + UP * self.note_h / 2)
        self.token_labels = VGroup()
        if label_w:
            for first in self.heatmaps[::cols]:  # the first panel of each row
                room_w = label_w - 0.15 - self.FRAME_PAD
                labels = first.get_row_labels(self.texts, self.colors, max_width=room_w)
                self.token_labels.add(labels.shift(LEFT * self.FRAME_PAD))  # clear of a frame
        self.note.next_to(self.panels, DOWN, buff=0.2).set_x(0.0)
        parts = Group(self.panels, self.token_labels, self.note)
        parts.shift(-parts.get_center())  # the whole gallery centred on the origin
        pad = 2 * self.FRAME_PAD
        self.extent = Rectangle(
            width=parts.width + pad,
            height=parts.height + pad,
            stroke_width=0,
            stroke_opacity=0,
            fill_opacity=0,
        ).move_to(parts)

    def highlight_head(self, head: int, color: object = None) -> Rectangle:
        """A frame around ``head``'s pattern (not added); its name turns the frame's colour.

        Args:
            head: The head, ``0 .. H-1``.
            color: Stroke colour (default: the theme's highlight).

        Returns:
            The frame, 0.06 units outside the pattern.

        """
        color = color or self.theme.highlight
        self.names[head].set_color(color)
        return SurroundingRectangle(self.heatmaps[head], color=color, buff=0.06, stroke_width=4)

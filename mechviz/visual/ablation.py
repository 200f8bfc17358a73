"""Blocks of changed runs: the map of what was changed, and readouts before and after.

A trace with an ``interventions`` section (:class:`mechviz.tracing.schema.Interventions`)
is a changed run: its heads ablated or frozen, its MLPs ablated; it keeps the
run before the change at the last position (``before_*``). These blocks draw it:

* :class:`HeadMap`: layers x heads (and a row of MLPs), the changed ones lit and
  named in a legend ("23.4, 29.1 ablated (zero)", "7.* frozen to ...");
* :class:`BeforeAfter`: the next-token bars of two runs side by side (or stacked),
  the answer's probability from one to the other;
* :class:`LensCompare`: the logit lens of the last position of two runs, layer by
  layer: each run's top-1 token, and the answer's probability in both.

Two runs are two readings (:class:`Reading`): the last position's lens and output of a
trace (:meth:`Reading.after`, or of any trace), or the run before its change
(:meth:`Reading.before`). Every number drawn is read from the traces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, Line, Rectangle, Square, VGroup

from mechviz.analyses.readouts import row_name
from mechviz.errors import MechvizError
from mechviz.model.tokens import readable, shown
from mechviz.tracing.schema import Interventions, Trace
from mechviz.visual import style
from mechviz.visual.blocks import resolve_theme, resolve_trace, room
from mechviz.visual.mobjects import ProbBars
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure, number, spans

__all__ = [
    "BeforeAfter",
    "HeadMap",
    "LensCompare",
    "Reading",
    "change_lines",
    "change_summary",
    "first_changed_layer",
    "differing_rows",
    "head_names",
    "parting_words",
    "top1_rows",
    "prob_text",
]

ROW_HEIGHT = 0.46  # a table row: a MIN_TEXT token with a margin (scene units)
LABEL_WIDTH = 1.2  # the row-name column ("embed") at MIN_TEXT (scene units)
MIN_CELL = 1.55  # a token cell: a short token at MIN_TEXT (scene units)
MAX_CELL = 2.4  # a token cell never grows past this (scene units)
STACK_WIDTH = 8.0  # a narrower room stacks the two charts of BeforeAfter (scene units)
MIN_SIDE_BY_SIDE = 6.0  # ...and one narrower than this always does (scene units)


# --- what was changed, in words -------------------------------------------------------


def _split(head: str) -> tuple[int, int]:
    layer, h = head.split(".")
    return int(layer), int(h)


def head_names(heads: Sequence[str], n_heads: int) -> list[str]:
    """Heads as written on screen, in layer order: every head of a layer is ``"7.*"``.

    Args:
        heads: ``"layer.head"`` names (as ``Interventions.ablate`` keeps them).
        n_heads: Heads per layer.

    """
    by_layer: dict[int, list[int]] = {}
    for layer, h in sorted({_split(x) for x in heads}):
        by_layer.setdefault(layer, []).append(h)
    out: list[str] = []
    for layer, hs in by_layer.items():
        if len(hs) == n_heads:
            out.append(f"{layer}.*")
        else:
            out += [f"{layer}.{h}" for h in hs]
    return out


def _listed(names: Sequence[str], limit: int = 4) -> str:
    """``"a, b, c"``; past ``limit`` names, the first ones and how many in all."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[: limit - 1])}, … ({len(names)} in all)"


def change_lines(iv: Interventions, n_heads: int) -> list[tuple[str, str]]:
    """What was changed, one line per kind: ``(kind, text)``.

    ``kind`` is ``"ablate"``, ``"freeze"`` or ``"mlp"``; texts read like
    "23.4, 29.1 ablated (zero)", "5.3 frozen to "The capital of Italy is"",
    "MLP 7 ablated (mean)". A run with nothing changed gives ``[]``.
    """
    lines = []
    if iv.ablate:
        lines.append(("ablate", f"{_listed(head_names(iv.ablate, n_heads))} ablated ({iv.mode})"))
    if iv.freeze:
        source = f' to "{iv.freeze_from}"' if iv.freeze_from else ""
        lines.append(("freeze", f"{_listed(head_names(iv.freeze, n_heads))} frozen{source}"))
    if iv.ablate_mlp:
        layers = _listed([str(layer) for layer in iv.ablate_mlp])
        lines.append(("mlp", f"MLP {layers} ablated ({iv.mode})"))
    return lines


def change_summary(iv: Interventions, n_heads: int) -> str:
    """All of it in one short phrase: "23.4, 29.1 ablated", "5.3 frozen; MLP 7 ablated"."""
    parts = []
    if iv.ablate:
        parts.append(f"{_listed(head_names(iv.ablate, n_heads), 3)} ablated")
    if iv.freeze:
        parts.append(f"{_listed(head_names(iv.freeze, n_heads), 3)} frozen")
    if iv.ablate_mlp:
        parts.append(f"MLP {_listed([str(x) for x in iv.ablate_mlp], 3)} ablated")
    return "; ".join(parts) or "nothing changed"


def first_changed_layer(iv: Interventions) -> int | None:
    """The first layer with a changed head or MLP (``None``: nothing changed)."""
    layers = [_split(h)[0] for h in (*iv.ablate, *iv.freeze)] + list(iv.ablate_mlp)
    return min(layers) if layers else None


# --- two runs at the last position ---------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One run's reading of the last position: its logit lens by layer and its output.

    Attributes:
        name: What the run is called on screen ("before", "A: The capital of ...").
        lens_ids: Top-k token ids of the lens after each layer boundary, ``[Y, K]``
            (row 0 the embedding, row ``l + 1`` after layer ``l``).
        lens_probs: Their probabilities, ``[Y, K]``.
        output_ids: The model's top-k next tokens, ``[K]``.
        output_probs: Their probabilities, ``[K]``.
        vocab: Token id -> readable text (from the trace the run comes from).

    """

    name: str
    lens_ids: np.ndarray
    lens_probs: np.ndarray
    output_ids: np.ndarray
    output_probs: np.ndarray
    vocab: Callable[[int], str]

    @classmethod
    def after(cls, trace: Trace, name: str = "after") -> Reading:
        """The trace's own run (the changed one, for a trace with interventions)."""
        return cls(
            name,
            trace.lens.top_ids[:, -1],
            trace.lens.top_probs[:, -1],
            trace.output.top_ids[-1],
            trace.output.top_probs[-1],
            _vocab(trace),
        )

    @classmethod
    def before(cls, trace: Trace, name: str = "before") -> Reading:
        """The run before the trace's change (``interventions.before_*``)."""
        iv = trace.require("interventions")  # one sentence saying how to make one
        return cls(
            name,
            iv.before_lens_ids,
            iv.before_lens_probs,
            iv.before_output_ids,
            iv.before_output_probs,
            _vocab(trace),
        )

    @property
    def answer(self) -> int:
        """The run's top-1 next token (id)."""
        return int(self.output_ids[0])

    def prob(self, token_id: int, row: int | None = None) -> float | None:
        """``token_id``'s probability in the output (``row=None``) or lens ``row``.

        Returns:
            The recorded probability, or ``None`` when the token is not in the top k
            (then it is below :meth:`floor`).

        """
        ids, probs = (
            (self.output_ids, self.output_probs)
            if row is None
            else (self.lens_ids[row], self.lens_probs[row])
        )
        hits = np.nonzero(ids == int(token_id))[0]
        return float(probs[hits[0]]) if len(hits) else None

    def floor(self, row: int | None = None) -> float:
        """The k-th probability (output or lens ``row``): what a token not kept is below."""
        probs = self.output_probs if row is None else self.lens_probs[row]
        return float(probs[-1])


def _vocab(trace: Trace) -> Callable[[int], str]:
    return lambda token_id: readable(trace.token_text(int(token_id)))


def prob_text(reading: Reading, token_id: int, row: int | None = None) -> str:
    """``"0.77"``, or ``"<0.03"`` when the token is not in the run's top k there."""
    p = reading.prob(token_id, row)
    if p is not None:
        return f"{p:.2f}"
    return f"<{max(reading.floor(row), 0.005):.2f}"


def parting_words(
    differ: Sequence[int], n_rows: int | None = None, unseen: Sequence[int] = ()
) -> str:
    """Where two lenses' top-1 differ, in words, from those lens rows (:func:`top1_rows`).

    Rows are lens rows: 0 the embedding, ``r`` after layer ``r - 1``. With
    ``n_rows`` (the lens's rows) the words say exactly which rows differ:
    "the same up to layer 22, different from layer 23 on" only when every row
    from layer 23 to the last differs, else "different at layers 25 and 28,
    the same at the others". Without it, the first difference is taken to last.
    ``unseen``: differing rows a table left out, said after the layers
    ("(28 not shown)").
    """
    hidden = [int(r) - 1 for r in unseen if int(r) > 0]
    note = f" ({spans(hidden)} not shown)" if hidden else ""
    rows = sorted(int(r) for r in differ)
    if not rows:
        return "the same at every layer"
    first = rows[0]
    to_the_end = n_rows is None or rows == list(range(first, n_rows))
    if to_the_end:
        if first == 0:
            return "different from the embedding on"
        same = "the same at the embedding" if first == 1 else f"the same up to layer {first - 2}"
        return f"{same}, different from layer {first - 1} on{note}"
    layers = [r - 1 for r in rows if r > 0]
    where = []
    if rows[0] == 0:
        where.append("the embedding")
    if layers:
        word = "layer" if len(layers) == 1 else "layers"
        where.append(f"{word} {spans(layers)}")
    return f"different at {' and '.join(where)}{note}, the same at the others"


def top1_rows(a: Reading, b: Reading) -> list[int]:
    """Lens rows where the two runs' top-1 tokens differ (what the tables' cells show)."""
    return [int(r) for r in np.nonzero(a.lens_ids[:, 0] != b.lens_ids[:, 0])[0]]


def differing_rows(a: Reading, b: Reading) -> list[int]:
    """Lens rows where the two runs' top-k differ (ids, or probabilities by more than 1e-6)."""
    ids = (a.lens_ids != b.lens_ids).any(axis=1)
    probs = np.abs(a.lens_probs - b.lens_probs).max(axis=1) > 1e-6
    return [int(r) for r in np.nonzero(ids | probs)[0]]


# --- the map --------------------------------------------------------------------------


class HeadMap(VGroup):
    """Layers x heads, and a row of MLPs: the changed ones lit, named in a legend below.

    Layers run along the longer side of the room (left to right when it is wider
    than tall, else top to bottom). Ablated heads and MLPs are filled with the
    theme's ``positive`` colour, frozen heads with its ``negative`` colour; the
    others are empty cells. Each kind of change has a legend line: a swatch and
    its words (:func:`change_lines`).

    Attributes:
        n_layers: Layers (L).
        n_heads: Heads per layer (H).
        across: Whether layers run left to right.
        cells: ``cells[l][h]``: the Square of head ``h`` of layer ``l``.
        mlp_cells: ``mlp_cells[l]``: the Square of layer ``l``'s MLP.
        marked: ``(layer, head)`` -> kind (``"ablate"``, ``"freeze"``); MLPs as ``(layer, None)``.
        grid: The cells, MLP cells and axis labels.
        legend: The legend lines (VGroup of VGroup(swatch, text)).
        legend_texts: The legend's texts, in order.
        cell: A cell's side (scene units).

    """

    def __init__(
        self,
        iv: Interventions,
        n_layers: int,
        n_heads: int,
        theme: Theme,
        width: float,
        height: float,
        legend: bool = True,
    ) -> None:
        super().__init__()
        self.n_layers, self.n_heads, self.theme = n_layers, n_heads, theme
        self.marked: dict[tuple[int, int | None], str] = {}
        for head in iv.ablate:
            self.marked[_split(head)] = "ablate"
        for head in iv.freeze:
            self.marked[_split(head)] = "freeze"
        for layer in iv.ablate_mlp:
            self.marked[(int(layer), None)] = "ablate"
        lines = change_lines(iv, n_heads) if legend else []
        self.legend = VGroup(*(self._legend_line(kind, text, width) for kind, text in lines))
        self.legend.arrange(DOWN, buff=0.14, aligned_edge=LEFT)
        self.legend_texts = [line[1] for line in self.legend]
        legend_h = self.legend.height + 0.3 if lines else 0.0
        self.across = width >= height - legend_h
        self.grid = self._grid(width, height - legend_h)
        self.add(self.grid)
        if lines:
            self.legend.next_to(self.grid, DOWN, buff=0.3)
            self.legend.align_to(self.grid, LEFT)
            if self.legend.width > self.grid.width:
                self.legend.set_x(self.grid.get_x())
            self.add(self.legend)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        legend: bool = True,
    ) -> HeadMap:
        """The map of ``trace``'s changes (its ``interventions`` section), sized for the room.

        Args:
            trace: A trace with interventions, or the path of one.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            legend: Name the changes under the grid.

        Returns:
            The map, centred on the origin.

        """
        t = resolve_trace(trace)
        Reading.before(t)  # one sentence if the trace has no interventions
        iv = t.interventions
        w, h = room(width, height)
        return cls(iv, t.n_layers, t.model.n_heads, resolve_theme(theme), w, h, legend)

    def _legend_line(self, kind: str, text: str, width: float) -> VGroup:
        theme = self.theme
        color = theme.negative if kind == "freeze" else theme.positive
        swatch = Square(side_length=0.26, stroke_width=0, fill_color=color, fill_opacity=1.0)
        words = label(text, style.MIN_TEXT, theme.foreground, max_width=width - 0.45)
        center_on(words, [swatch.get_right()[0] + 0.15 + words.width / 2, 0, 0])
        swatch.set_y(0.0)  # the words' capitals are centred on y = 0
        return VGroup(swatch, words)

    def _grid(self, width: float, height: float) -> VGroup:
        """The cells and their axis labels, fitted to ``width`` x ``height``."""
        theme, L, H = self.theme, self.n_layers, self.n_heads
        across = self.across
        tick_room = 0.5  # tick labels beside the cells (scene units)
        name_room = measure("head 0", style.MIN_TEXT) + 0.15  # the row names, left
        rows, cols = (H + 1, L) if across else (L, H + 1)  # +1: the MLPs, a gap apart
        gap = 0.6  # between the heads and the MLPs, in cells
        avail_w = width - (name_room + 0.3 if across else tick_room)  # "29" overhangs a bit
        # Across: layer numbers above, the axis title below; down: "MLP" upright above.
        avail_h = height - (tick_room + 0.45 if across else 0.8 + 0.45)
        cell = min(0.42, avail_w / (cols + (0 if across else gap)), avail_h / (rows + gap * across))
        cell = max(cell, 0.05)
        self.cell = cell
        grid = VGroup()
        self.cells = [[None] * H for _ in range(L)]
        self.mlp_cells = [None] * L

        def spot(layer: int, slot: int) -> np.ndarray:
            """Centre of layer ``layer``'s cell ``slot`` (0..H-1 heads, H the MLP)."""
            off = slot + (gap if slot == H else 0)
            if across:
                return np.array([(layer + 0.5) * cell, -(off + 0.5) * cell, 0.0])
            return np.array([(off + 0.5) * cell, -(layer + 0.5) * cell, 0.0])

        for layer in range(L):
            for slot in range(H + 1):
                kind = self.marked.get((layer, slot if slot < H else None))
                fill = theme.neutral
                if kind is not None:
                    fill = theme.negative if kind == "freeze" else theme.positive
                square = Square(
                    side_length=cell * 0.86,
                    stroke_color=theme.faint if kind is None else fill,
                    stroke_width=1,
                    fill_color=fill,
                    fill_opacity=1.0,
                ).move_to(spot(layer, slot))
                if slot < H:
                    self.cells[layer][slot] = square
                else:
                    self.mlp_cells[layer] = square
                grid.add(square)
        ticks = self._ticks(spot, cell, gap)
        grid.add(*ticks)
        self.grid_cells = grid
        return grid

    def _ticks(self, spot: Callable[[int, int], np.ndarray], cell: float, gap: float) -> list:
        """Layer numbers along the layers, "head 0".."H-1", "MLP", and the axis names."""
        theme, L, H, across = self.theme, self.n_layers, self.n_heads, self.across
        muted = theme.muted
        digit = measure("00", style.MIN_TEXT) + 0.15
        step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 1000) if s * cell >= digit)
        layers = list(range(0, L, step))
        if (L - 1) - layers[-1] < step * 0.6 and len(layers) > 1:
            layers[-1] = L - 1  # the last layer is always named
        elif layers[-1] != L - 1:
            layers.append(L - 1)
        out = []
        for layer in layers:
            text = label(str(layer), style.MIN_TEXT, muted)
            p = spot(layer, 0)
            if across:
                center_on(text, [p[0], p[1] + cell / 2 + 0.25, 0])
            else:
                text.move_to([p[0] - cell / 2 - 0.12 - text.width / 2, p[1], 0])
                center_on(text, [text.get_x(), p[1], 0])
            out.append(text)
        if across:
            names = [("head 0", 0), (f"{H - 1}", H - 1), ("MLP", H)] if H > 1 else [("head", 0)]
            names += [("MLP", H)] if H == 1 else []
            if (1 + gap) * cell < 0.4 or (H - 1) * cell < 0.4:  # "8" would meet its neighbours
                names = [n for n in names if n[1] != H - 1]
            for text, slot in names:
                word = label(text, style.MIN_TEXT, muted)
                p = spot(0, slot)
                out.append(center_on(word, [p[0] - cell / 2 - 0.12 - word.width / 2, p[1], 0]))
        else:
            # Narrow columns: "heads" over the heads, "MLP" turned upright over its column.
            left, right = spot(0, 0), spot(0, H - 1)
            heads = label("heads", style.MIN_TEXT, muted)
            out.append(center_on(heads, [(left[0] + right[0]) / 2, left[1] + cell / 2 + 0.25, 0]))
            mlp = label("MLP", style.MIN_TEXT, muted).rotate(np.pi / 2)
            p = spot(0, H)
            mlp.move_to([p[0], p[1] + cell / 2 + 0.1 + mlp.height / 2, 0])
            out.append(mlp)
            heads.shift(LEFT * max(0.0, heads.get_right()[0] - (mlp.get_left()[0] - 0.12)))
        title = label("layer →" if across else "layer ↓", style.MIN_TEXT, muted)
        if across:
            end = spot(L - 1, H)
            center_on(title, [end[0] + cell / 2 - title.width / 2, end[1] - cell / 2 - 0.3, 0])
        else:
            end = spot(L - 1, 0)
            center_on(title, [end[0] - cell / 2 + title.width / 2, end[1] - cell / 2 - 0.3, 0])
        out.append(title)
        return out

    def changed_cells(self) -> list[Square]:
        """The cells of the changed heads and MLPs, in layer order."""
        out = []
        for (layer, head), _kind in sorted(
            self.marked.items(), key=lambda x: (x[0][0], x[0][1] or 99)
        ):
            out.append(self.mlp_cells[layer] if head is None else self.cells[layer][head])
        return out


# --- the output before and after -------------------------------------------------------


class BeforeAfter(VGroup):
    """Two runs' next-token bars, side by side (stacked in a tall room), and the answer line.

    The answer is the first run's top-1 token; its bars have the highlight
    colour in both charts. Below the charts: "·Paris 0.77 → 0.17" (a run that
    does not keep the answer in its top k says "<p", p its k-th probability).

    Attributes:
        first, second: The two readings (:class:`Reading`).
        answer: The answer's token id.
        headings: The two charts' headings.
        bars: The two :class:`ProbBars` (the second built showing the second run).
        answer_line: The answer's probability in both runs (a Text).
        k: Bars per chart.

    """

    def __init__(
        self,
        first: Reading,
        second: Reading,
        theme: Theme,
        width: float,
        height: float,
        k: int = 5,
        stacked: bool | None = None,
    ) -> None:
        super().__init__()
        self.first, self.second, self.theme = first, second, theme
        self.answer = first.answer
        answer_text = first.vocab(self.answer)
        self.answer_line = label(
            f"{shown(answer_text)}  {prob_text(first, self.answer)} → "
            f"{prob_text(second, self.answer)}",
            style.BODY_TEXT,
            theme.highlight,
            max_width=width,
        )
        head_h = style.cap_height(style.BODY_TEXT) * 1.6 + 0.2
        line_h = self.answer_line.height + 0.35
        if stacked is None:  # stacked in a narrow room, unless that leaves under 3 bars each
            stacked_h = (height - line_h) / 2 - head_h - 0.3
            stacked = width < STACK_WIDTH and (
                stacked_h // ProbBars.min_row >= 3 or width < MIN_SIDE_BY_SIDE
            )
        panel_w = width if stacked else (width - 0.6) / 2
        panel_h = (height - line_h) / (2 if stacked else 1) - head_h - (0.3 if stacked else 0)
        k = max(1, min(k, len(first.output_ids), len(second.output_ids)))
        pitch = 0.5
        k = max(1, min(k, int(panel_h // ProbBars.min_row)))
        pitch = min(0.56, panel_h / k)
        self.k = k
        value_w = measure("0.00", style.MIN_TEXT, style.MONO) + 0.12
        name_w = min(2.0, max(1.2, 0.32 * panel_w))
        self.headings = VGroup()
        self.bars = VGroup()
        panels = []
        for reading in (first, second):
            heading = label(reading.name, style.BODY_TEXT, theme.foreground, max_width=panel_w)
            bars = ProbBars(
                *self.values(reading),
                theme,
                bar_width=max(panel_w - name_w - 0.15 - value_w, 0.5),
                name_width=name_w,
                row_height=pitch,
                highlight=lambda t, a=answer_text: t == a,
            )
            panel = VGroup(heading, bars).arrange(DOWN, buff=0.2, aligned_edge=LEFT)
            self.headings.add(heading)
            self.bars.add(bars)
            panels.append(panel)
        pair = VGroup(*panels)
        if stacked:
            pair.arrange(DOWN, buff=0.3, aligned_edge=LEFT)
        else:
            pair.arrange(RIGHT, buff=0.6, aligned_edge=UP)
        self.answer_line.next_to(pair, DOWN, buff=0.35)
        self.panels = VGroup(*panels)
        self.add(self.panels, self.answer_line)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        k: int = 5,
        stacked: bool | None = None,
    ) -> BeforeAfter:
        """Before and after the trace's change (its ``interventions``), sized for the room.

        Args:
            trace: A trace with interventions, or the path of one.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            k: Bars per chart at most (fewer when the room is short).
            stacked: One chart above the other (default: when the room is under 8 units
                wide and that keeps 3 bars each, or under 6 units wide).

        Returns:
            The block, centred on the origin.

        """
        t = resolve_trace(trace)
        w, h = room(width, height)
        before, after = Reading.before(t), Reading.after(t)
        return cls(before, after, resolve_theme(theme), w, h, k, stacked)

    def values(self, reading: Reading) -> tuple[list[str], np.ndarray]:
        """A run's top ``k`` next tokens (texts) and their probabilities."""
        k = getattr(self, "k", 5)
        ids = reading.output_ids[:k]
        return [reading.vocab(i) for i in ids], np.asarray(reading.output_probs[:k])


# --- the lens before and after ---------------------------------------------------------


def pick_rows(
    n_rows: int, capacity: int, required: set[int], focus: int | None = None
) -> list[int]:
    """Lens rows for a table of ``capacity`` rows: ``required`` ones, the rest spread out.

    With ``focus`` (the first row where two runs differ), all but a quarter of
    the table (one row at least) go to the rows from just before it to the
    end, where the runs part; the rest is spread evenly over the whole depth.
    """
    rows = {r for r in required if 0 <= r < n_rows} | {0, n_rows - 1}
    if capacity >= n_rows:
        return list(range(n_rows))

    def fill(low: int, limit: int) -> None:
        while len(rows) < limit:
            ordered = sorted(r for r in rows if r >= low)
            gaps = [(b - a, a, b) for a, b in zip(ordered, ordered[1:]) if b - a > 1]
            if not gaps:
                return
            _, a, b = max(gaps)
            rows.add((a + b) // 2)

    if focus is not None:
        fill(max(focus - 1, 0), max(len(rows), capacity - max(1, capacity // 4)))
    fill(0, capacity)
    return sorted(rows)


class LensCompare(VGroup):
    """The logit lens of the last position in two runs, layer by layer.

    Rows are lens rows (``embed``, then after each layer), top to bottom; the
    columns: the row's name, each run's top-1 token on a cell shaded by its
    probability, and the answer's probability in both ("0.77 → 0.17"; "<p" when
    a run does not keep the answer in its top k there). The embedding, the last
    layer, the rows around the first one where the runs differ and (while the
    room holds them) every row where their top-1 differs are always shown; a
    line between two rows marks layers left out, and a note above
    says how many ("─ = K layers left out").

    Attributes:
        first, second: The two readings.
        answer: The answer's token id (the first run's top-1).
        lens_rows: The lens row of each table row.
        differ: Lens rows where the two runs differ (top-k tokens or probabilities).
        differ_top1: Lens rows where their top-1 tokens differ (what the cells show).
        left_out: Lens rows not shown.
        header: The note(s) and the column heads.
        names: The row names.
        cells: ``cells[r]`` = (first's cell, second's cell), each VGroup(box, text).
        probs: The answer's probabilities per row (Text; none when ``with_prob`` is false).
        with_prob: Whether the answer's column fitted (a room under ~6.5 units leaves it out).
        gap_lines: Lines marking left-out layers.

    """

    def __init__(
        self,
        first: Reading,
        second: Reading,
        theme: Theme,
        width: float,
        height: float,
        names: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.first, self.second, self.theme = first, second, theme
        self.answer = first.answer
        n = first.lens_ids.shape[0]
        self.differ = differing_rows(first, second)
        self.differ_top1 = top1_rows(first, second)
        answer = shown(first.vocab(self.answer))
        p_head = f"p({answer})"
        p_w = max(measure("<0.00→<0.00", style.MIN_TEXT, style.MONO), measure(p_head, 24)) + 0.2
        # A narrow room leaves out the answer's column before the token cells go too thin.
        self.with_prob = (width - LABEL_WIDTH - p_w) / 2 >= MIN_CELL
        p_w = p_w if self.with_prob else 0.0
        cell_w = min(MAX_CELL, (width - LABEL_WIDTH - p_w) / 2)
        if cell_w < 1.0:
            raise MechvizError("The room is too narrow for the lens of two runs.")
        table_w = LABEL_WIDTH + 2 * cell_w + p_w
        capacity = int((height - 0.1) // ROW_HEIGHT) - 1  # the column heads take a row
        if capacity < n:
            capacity -= 1  # the note's line
        # Every row whose top-1 differs first (the caption names them), then the rows
        # where the runs first part, while they fit.
        required = {0, n - 1}
        context = [self.differ[0], max(self.differ[0] - 1, 0)] if self.differ else []
        for r in [*self.differ_top1, *context]:
            if len(required) < max(capacity, 3):
                required.add(r)
        focus = self.differ[0] if self.differ else None
        self.lens_rows = pick_rows(n, max(capacity, len(required)), required, focus)
        self.left_out = n - len(self.lens_rows)
        lines = len(self.lens_rows) + 1 + (self.left_out > 0)
        row_h = min(0.56, (height - 0.1) / lines)
        self.row_h, self.cell_w = row_h, cell_w
        x0 = -table_w / 2
        xs = [x0 + LABEL_WIDTH / 2, x0 + LABEL_WIDTH + cell_w / 2]
        xs += [xs[1] + cell_w, x0 + LABEL_WIDTH + 2 * cell_w + p_w / 2]
        y = row_h * lines / 2 - row_h / 2
        self.header = VGroup()
        self.note = None
        if self.left_out > 0:
            word = "layer" if self.left_out == 1 else "layers"
            self.note = label(f"─ = {self.left_out} {word} left out", style.MIN_TEXT, theme.muted)
            center_on(self.note, [x0 + table_w - self.note.width / 2, y, 0])
            self.header.add(self.note)
            y -= row_h
        names = names or (first.name, second.name)
        heads = ["layer", names[0], names[1], p_head][: 4 if self.with_prob else 3]
        widths = [LABEL_WIDTH, cell_w, cell_w, p_w]
        self.col_heads = []
        for x, text, w in zip(xs, heads, widths):
            head = label(text, style.MIN_TEXT, theme.muted, max_width=w - 0.1)
            self.header.add(center_on(head, [x, y, 0]))
            self.col_heads.append(head)
        self.add(self.header)
        self.names, self.cells, self.probs, self.gap_lines = [], [], [], []
        self.with_values = self._values_fit(first, second)
        self.rows = VGroup()
        for i, row in enumerate(self.lens_rows):
            y -= row_h
            group = VGroup()
            if i > 0 and row - self.lens_rows[i - 1] > 1:
                line = Line(
                    [x0, y + row_h / 2, 0],
                    [x0 + table_w, y + row_h / 2, 0],
                    stroke_width=3,
                    color=theme.muted,
                )
                group.add(line)
                self.gap_lines.append(line)
            name = center_on(label(row_name(row), style.MIN_TEXT, theme.muted), [xs[0], y, 0])
            pair = tuple(self._cell(r, row, xs[1 + j], y) for j, r in enumerate((first, second)))
            group.add(name, *pair)
            self.names.append(name)
            self.cells.append(pair)
            if self.with_prob:
                prob = label(
                    f"{prob_text(first, self.answer, row)}→{prob_text(second, self.answer, row)}",
                    style.MIN_TEXT,
                    theme.foreground,
                    font=style.MONO,
                )
                group.add(center_on(prob, [xs[3], y, 0]))
                self.probs.append(prob)
            self.rows.add(group)
        self.add(self.rows)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> LensCompare:
        """The lens before and after the trace's change (its ``interventions``).

        Args:
            trace: A trace with interventions, or the path of one.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).

        Returns:
            The table, centred on the origin.

        """
        t = resolve_trace(trace)
        w, h = room(width, height)
        return cls(Reading.before(t), Reading.after(t), resolve_theme(theme), w, h)

    def parting(self) -> str:
        """Where the runs' top-1 differ, in words, and which of those rows the table left out.

        :func:`parting_words` of the differing rows, with "(28 not shown)" after
        the layers when the room could not hold them all.
        """
        unseen = [r for r in self.differ_top1 if r not in self.lens_rows]
        return parting_words(self.differ_top1, self.first.lens_ids.shape[0], unseen)

    def _values_fit(self, first: Reading, second: Reading) -> bool:
        """Whether every shown cell holds its token and its probability uncut."""
        value = measure("0.00", style.MIN_TEXT, style.MONO)
        inner = self.cell_w * 0.94 - 0.2
        widest = max(
            measure(shown(r.vocab(int(r.lens_ids[row, 0]))), style.MIN_TEXT)
            for r in (first, second)
            for row in self.lens_rows
        )
        return widest + 0.15 + value <= inner

    def _cell(self, reading: Reading, row: int, x: float, y: float) -> VGroup:
        theme = self.theme
        p = float(reading.lens_probs[row, 0])
        fill = style.prob_color(p, theme)
        box = Rectangle(
            width=self.cell_w * 0.94,
            height=self.row_h * 0.84,
            stroke_width=0,
            fill_color=fill,
            fill_opacity=1.0,
        ).move_to([x, y, 0])
        token = int(reading.lens_ids[row, 0])
        ink = theme.text_on(fill)
        inner = self.cell_w * 0.94 - 0.2  # a margin of 0.1 each side
        if not self.with_values:  # the token alone, centred; its shade gives the probability
            text = label(shown(reading.vocab(token)), style.MIN_TEXT, ink, max_width=inner)
            cell = VGroup(box, center_on(text, box.get_center()))
            cell.token, cell.prob = token, p
            return cell
        value = number(f"{p:.2f}", style.MIN_TEXT, ink)
        text = label(
            shown(reading.vocab(token)), style.MIN_TEXT, ink, max_width=inner - value.width - 0.15
        )
        left = box.get_left()[0] + 0.1
        center_on(text, [left + text.width / 2, y, 0])
        center_on(value, [box.get_right()[0] - 0.1 - value.width / 2, y, 0])
        cell = VGroup(box, text, value)
        cell.token, cell.prob = token, p
        return cell

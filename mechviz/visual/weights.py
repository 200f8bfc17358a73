"""Weight statistics drawn: sigma / mean(|w|) by layer, the parameter tally, layer-0 head tokens.

:class:`RatioChart` is one small line chart: a matrix's sigma / mean(|w|) by
layer, along the model dimension (solid) and across the heads (dashed), with
a zero-centred Gaussian's sqrt(pi / 2) as a dotted reference line.
:class:`RatioPanels` sets the four matrices (W_Q, W_K, W_V, W_O) side by side
on one shared scale, under a :class:`RatioLegend`. :class:`ParameterTally` is
a stacked bar of the parameter count by component with a table of the exact
counts and their total. :class:`HeadTokens` lists, for layer 0's heads, the
vocabulary tokens that give each head its largest queries and keys.

Every number is read from ``trace.weights`` (:class:`mechviz.tracing.schema.Weights`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, DashedVMobject, Line, Rectangle, VGroup, VMobject

from mechviz.errors import MechvizError
from mechviz.model.tokens import readable, shown
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.blocks import resolve_theme, resolve_trace, room
from mechviz.visual.neurons import tile_box
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure, number

__all__ = [
    "GAUSSIAN",
    "HeadTokens",
    "ParameterTally",
    "RatioChart",
    "RatioLegend",
    "RatioPanels",
    "format_count",
    "ratio_ticks",
    "tally_color",
    "token_label",
]

GAUSSIAN = math.sqrt(math.pi / 2)  # sigma / mean(|w|) of a zero-centred Gaussian
SIZE = style.MIN_TEXT
LINE_WIDTH = 3.0  # curves, in Manim stroke units
GAP = 0.15  # between a label and what it names (scene units)
HEAD_GAP = 0.2  # between two heads' blocks
TICK_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def format_count(count: int) -> str:
    """A parameter count with thousands separators: ``134,515,008``."""
    return f"{int(count):,}"


def format_share(count: int, total: int) -> str:
    """A share of the total: ``59.2%``, or ``<0.1%`` for what rounds to nothing."""
    share = count / max(total, 1)
    return f"{share:.1%}" if share >= 0.001 or count == 0 else "<0.1%"


def ratio_ticks(values: np.ndarray, most: int = 4) -> tuple[float, float, list[float]]:
    """``(low, high, ticks)``: a scale holding ``values`` and the Gaussian's ratio.

    The ends are multiples of the largest round step that gives at most
    ``most`` intervals.
    """
    v = np.concatenate([np.ravel(values), [GAUSSIAN]])
    lo, hi = float(v.min()), float(v.max())
    for step in TICK_STEPS:
        a, b = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        if b == a:
            b = a + 1
        if b - a <= most:
            return a * step, b * step, [round(k * step, 6) for k in range(a, b + 1)]
    step = TICK_STEPS[-1]
    a, b = math.floor(lo / step), math.ceil(hi / step)
    return a * step, b * step, [k * step for k in range(a, b + 1)]


def _tick_text(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    digits = 2 if step < 0.1 - 1e-9 else 1 if step < 1 - 1e-9 else 0
    return f"{value:.{digits}f}"


def tick_room(ticks: Sequence[float]) -> float:
    """Width of the value labels at a chart's left, and their gap to the plot."""
    return max(measure(_tick_text(t, ticks), SIZE, style.MONO) for t in ticks) + GAP


def _polyline(points: Sequence[np.ndarray], color: object, width: float) -> VMobject:
    line = VMobject(stroke_color=color, stroke_width=width)
    line.set_points_as_corners([np.asarray(p, dtype=float) for p in points])
    return line


def _dashed(points: Sequence[np.ndarray], color: object, width: float, dash: float) -> VMobject:
    solid = _polyline(points, color, width)
    length = sum(float(np.linalg.norm(b - a)) for a, b in zip(points, points[1:]))
    dashes = max(2, int(length / dash))
    return DashedVMobject(solid, num_dashes=dashes, dashed_ratio=0.55)


class RatioChart(VGroup):
    """One matrix's sigma / mean(|w|) by layer: along d_model (solid), across heads (dashed).

    Args:
        name: The matrix ("W_Q"), written at the top left.
        along: ``[L]`` ratios of the vectors along the model dimension.
        across: ``[L]`` ratios of the vectors across the heads.
        low: Bottom of the value scale.
        high: Top of the value scale.
        ticks: Values labelled on the left (from :func:`ratio_ticks`).
        theme: Colours.
        width: The chart's width (scene units), labels included.
        height: The chart's height, title and layer numbers included.
        tick_labels: Write the values at the left (charts in a row share the first's).

    Attributes:
        title: The matrix's name.
        area: The plotting frame.
        along_line: The solid curve, one corner per layer.
        across_line: The dashed curve.
        reference: The dotted line at sqrt(pi / 2).
        tick_labels: The value labels, bottom to top.
        axis: The first and last layer's numbers (and "layer" when it fits).

    """

    def __init__(
        self,
        name: str,
        along: np.ndarray,
        across: np.ndarray,
        low: float,
        high: float,
        ticks: Sequence[float],
        theme: Theme,
        width: float,
        height: float,
        tick_labels: bool = True,
    ) -> None:
        super().__init__()
        self.theme, self.name = theme, name
        self.along, self.across = np.asarray(along, float), np.asarray(across, float)
        self.low, self.high = float(low), float(high)
        cap = style.cap_height(SIZE)
        self.title = label(name, SIZE, theme.foreground)
        texts = [_tick_text(t, ticks) for t in ticks]
        tick_w = tick_room(ticks) - GAP if tick_labels else -GAP
        area_w = max(width - tick_w - GAP, 0.5)
        area_h = max(height - self.title.height - 2 * cap - 0.45, 0.4)
        self.area = Rectangle(
            width=area_w, height=area_h, stroke_color=theme.faint, stroke_width=1.5
        )
        self.area.move_to([tick_w + GAP + area_w / 2, area_h / 2, 0.0])
        self.title.move_to(self.area.get_corner(UP + LEFT) + UP * 0.12, aligned_edge=DOWN + LEFT)
        self.L = len(self.along)
        grid = VGroup()
        self.tick_labels = VGroup()
        # Every tick gets a grid line; labels skip ticks until they stand 1.8 capitals apart.
        spacing = area_h / max(len(ticks) - 1, 1)
        every = max(1, math.ceil(1.8 * cap / spacing))
        for k, (t, text) in enumerate(zip(ticks, texts)):
            y = self.y_of(t)
            if 0.01 < y < area_h - 0.01:
                grid.add(Line([tick_w + GAP, y, 0], [tick_w + GAP + area_w, y, 0]))
            if k % every or not tick_labels:
                continue
            mob = number(text, SIZE, theme.muted)
            center_on(mob, [0.0, y, 0.0])
            mob.shift(RIGHT * (tick_w - mob.get_right()[0]))
            self.tick_labels.add(mob)
        grid.set_stroke(theme.faint, width=1.0)
        ref_y = self.y_of(GAUSSIAN)
        self.reference = _dashed(
            [np.array([tick_w + GAP, ref_y, 0]), np.array([tick_w + GAP + area_w, ref_y, 0])],
            theme.muted,
            2.0,
            0.05,
        )
        self.along_line = _polyline(self.curve_points(self.along), theme.negative, LINE_WIDTH)
        self.across_line = _dashed(
            self.curve_points(self.across), theme.attention, LINE_WIDTH, 0.14
        )
        self.axis = self._axis(cap)
        self.add(grid, self.area, self.reference, self.along_line, self.across_line)
        self.add(self.title, self.tick_labels, self.axis)
        self.move_to([0.0, 0.0, 0.0])

    def y_of(self, value: float) -> float:
        """Height above the area's bottom of ``value``, in the chart's own frame when built."""
        h = self.area.height
        return (value - self.low) / (self.high - self.low) * h + self.area.get_bottom()[1]

    def value_at(self, y: float) -> float:
        """The value drawn at height ``y`` (scene coordinates, wherever the chart is now)."""
        bottom, h = self.area.get_bottom()[1], self.area.height
        return self.low + (y - bottom) / h * (self.high - self.low)

    def x_of(self, layer: int) -> float:
        """The x of ``layer``'s corner (scene coordinates)."""
        left, w = self.area.get_left()[0], self.area.width
        return left + w * (layer / (self.L - 1) if self.L > 1 else 0.5)

    def curve_points(self, values: np.ndarray) -> list[np.ndarray]:
        """One point per layer, in the chart's frame as built."""
        return [np.array([self.x_of(i), self.y_of(v), 0.0]) for i, v in enumerate(values)]

    def _axis(self, cap: float) -> VGroup:
        y = self.area.get_bottom()[1] - 0.14 - cap / 2
        first = number("0", SIZE, self.theme.muted)
        center_on(first, [self.x_of(0), y, 0])
        first.shift(RIGHT * max(0.0, self.area.get_left()[0] - first.get_left()[0]))
        parts = [first]
        if self.L > 1:
            last = number(str(self.L - 1), SIZE, self.theme.muted)
            center_on(last, [self.x_of(self.L - 1), y, 0])
            last.shift(LEFT * max(0.0, last.get_right()[0] - self.area.get_right()[0]))
            word = label("layer", SIZE, self.theme.muted)
            center_on(word, [self.area.get_center()[0], y, 0])
            roomy = word.get_left()[0] - first.get_right()[0] > 0.15
            roomy &= last.get_left()[0] - word.get_right()[0] > 0.15
            parts += [word, last] if roomy else [last]
        return VGroup(*parts)


def _swatch_line(kind: str, color: object, length: float = 0.55) -> VMobject:
    points = [np.array([0.0, 0.0, 0.0]), np.array([length, 0.0, 0.0])]
    if kind == "solid":
        return _polyline(points, color, LINE_WIDTH)
    if kind == "dashed":
        return _dashed(points, color, LINE_WIDTH, 0.14)
    return _dashed(points, color, 2.0, 0.05)


class RatioLegend(VGroup):
    """What the line styles mean: along d_model, across heads, the Gaussian's ratio.

    Args:
        d_model: The model dimension (the length of the solid curve's vectors).
        theme: Colours.
        width: The widest (scene units): one row, else one line per item.

    Attributes:
        labels: The three texts, in order.

    """

    def __init__(self, d_model: int, theme: Theme, width: float) -> None:
        super().__init__()
        texts = [
            ("solid", theme.negative, f"along d_model ({d_model:,})"),
            ("dashed", theme.attention, "across heads"),
            ("dotted", theme.muted, f"Gaussian {GAUSSIAN:.4f}"),
        ]
        self.labels = VGroup()
        items = []
        for kind, color, text in texts:
            swatch = _swatch_line(kind, color)
            mob = label(text, SIZE, theme.foreground)
            center_on(mob, swatch.get_right() + RIGHT * (GAP + mob.width / 2))
            self.labels.add(mob)
            items.append(VGroup(swatch, mob))
        lines: list[list[VGroup]] = [[]]
        for item in items:  # as many items per line as fit
            trial = sum(i.width + 0.45 for i in lines[-1]) + item.width
            if lines[-1] and trial > width:
                lines.append([])
            lines[-1].append(item)
        rows = [VGroup(*line).arrange(RIGHT, buff=0.45) for line in lines]
        VGroup(*rows).arrange(DOWN, buff=0.14, aligned_edge=LEFT)
        self.add(*items)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> RatioLegend:
        """The legend for ``trace``'s model (its d_model); ``height`` is unused."""
        w, _ = room(width, height)
        return cls(resolve_trace(trace).model.d_model, resolve_theme(theme), w)


class RatioPanels(VGroup):
    """The legend over four :class:`RatioChart` (W_Q, W_K, W_V, W_O) on one shared scale.

    Args:
        names: The matrices' names (``weights.ratio_names``).
        along: ``[L, 4]`` ratios along the model dimension (``weights.ratio_model``).
        across: ``[L, 4]`` ratios across the heads (``weights.ratio_heads``).
        d_model: For the legend.
        theme: Colours.
        width: The block's width (scene units).
        height: The block's height.
        columns: Charts per row (default: 1 in a room more than 1.3 times taller
            than wide, else 2).

    Attributes:
        legend: The :class:`RatioLegend`.
        charts: The four charts, in ``names`` order.
        low, high, ticks: The shared scale.

    """

    def __init__(
        self,
        names: Sequence[str],
        along: np.ndarray,
        across: np.ndarray,
        d_model: int,
        theme: Theme,
        width: float,
        height: float,
        columns: int | None = None,
    ) -> None:
        super().__init__()
        along, across = np.asarray(along, float), np.asarray(across, float)
        self.low, self.high, self.ticks = ratio_ticks(np.concatenate([along, across]))
        self.legend = RatioLegend(d_model, theme, width)
        gap_x, gap_y = 0.5, 0.3
        room_h = height - self.legend.height - 0.3
        ticks_w = tick_room(self.ticks)

        def shape(cols: int) -> tuple[float, float]:
            """The plotting area of one chart: only the first column writes the values."""
            rows = math.ceil(len(names) / cols)
            w = (width - ticks_w - gap_x * (cols - 1)) / cols
            h = (room_h - gap_y * (rows - 1)) / rows - 1.25  # less title and layer numbers
            return w, h

        def misfit(cols: int) -> float:  # plotting areas best 1.4 times as wide as tall
            w, h = shape(cols)
            return abs(math.log(max(w, 0.1) / max(h, 0.1) / 1.4))

        cols = columns or min((1, 2, 4), key=misfit)
        rows = math.ceil(len(names) / cols)
        area_w, _ = shape(cols)
        chart_h = (room_h - gap_y * (rows - 1)) / rows
        self.charts = VGroup()
        for m, name in enumerate(names):
            first = m % cols == 0
            chart = RatioChart(
                name,
                along[:, m],
                across[:, m],
                self.low,
                self.high,
                self.ticks,
                theme,
                area_w + (ticks_w if first else 0.0),
                chart_h,
                tick_labels=first,
            )
            self.charts.add(chart)
        self.charts.arrange_in_grid(rows=rows, cols=cols, buff=(gap_x, gap_y), aligned_edge=RIGHT)
        VGroup(self.legend, self.charts).arrange(DOWN, buff=0.3)
        self.add(self.legend, self.charts)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        columns: int | None = None,
    ) -> RatioPanels:
        """The four charts of ``trace.weights`` fitting ``width`` x ``height``, centred."""
        trace = resolve_trace(trace)
        w = trace.require("weights")
        width, height = room(width, height)
        return cls(
            w.ratio_names,
            w.ratio_model,
            w.ratio_heads,
            trace.model.d_model,
            resolve_theme(theme),
            width,
            height,
            columns,
        )


def tally_color(name: str, theme: Theme) -> object:
    """The colour of a tally group, by its name (:mod:`mechviz.analyses.weights` groups)."""
    if name.startswith("embedding"):
        return theme.tokens[0]
    if name.startswith("position"):
        return theme.tokens[5]
    if name.startswith("attention"):
        return theme.attention
    if name.startswith("MLP"):
        return theme.mlp
    if name.startswith("norm"):
        return theme.highlight
    if name.startswith("unembedding"):
        return theme.tokens[2]
    return theme.muted


class ParameterTally(VGroup):
    """The parameter count by component: a stacked bar and a table that adds up to the total.

    Args:
        names: The components (``weights.tally_names``).
        counts: Their parameter counts.
        total: The model's parameter count (the counts add up to it).
        theme: Colours.
        width: The block's width (scene units).
        height: The block's height (the bar shrinks first).

    Attributes:
        segments: The bar's parts, one per component, width proportional to its count.
        rows: One ``VGroup(swatch, name, count, share)`` per component.
        count_labels: The counts as written ("79,626,240"), in ``names`` order.
        total_label: The total as written.

    """

    def __init__(
        self,
        names: Sequence[str],
        counts: Sequence[int],
        total: int,
        theme: Theme,
        width: float,
        height: float = float("inf"),
    ) -> None:
        super().__init__()
        counts = [int(c) for c in counts]
        self.names, self.counts, self.total = list(names), counts, int(total)
        cap = style.cap_height(SIZE)
        count_w = measure(format_count(total), SIZE, style.MONO)
        share_w = measure("100.0%", SIZE, style.MONO)
        side = cap * 1.5
        name_w = width - side - count_w - share_w - 3 * 0.3
        self.rows = VGroup()
        self.count_labels, self.share_labels = VGroup(), VGroup()
        for name, count in zip(names, counts):
            color = tally_color(name, theme)
            swatch = Rectangle(width=side, height=side, stroke_width=0, fill_color=color)
            swatch.set_fill(color, opacity=1.0)
            text = _wrapped(name, theme.foreground, name_w)
            self.rows.add(self._row(swatch, text, count, side, name_w, count_w, share_w))
        rule = Line([0, 0, 0], [width, 0, 0], stroke_color=theme.muted, stroke_width=1.5)
        total_text = _wrapped("total", theme.foreground, name_w)
        blank = Rectangle(width=side, height=side, stroke_width=0, fill_opacity=0.0)
        total_row = self._row(blank, total_text, total, side, name_w, count_w, share_w)
        self.total_label = self.count_labels[-1]
        table = VGroup(*self.rows, rule, total_row).arrange(DOWN, buff=0.16, aligned_edge=LEFT)
        bar_h = min(0.55, max(height - table.height - 0.35, 0.25))
        self.segments = VGroup()
        x = 0.0
        for name, count in zip(names, counts):
            w = width * count / max(total, 1)
            seg_w = max(w, 1e-3)  # a sliver for a tiny group, kept inside the frame
            seg = Rectangle(width=seg_w, height=bar_h, stroke_width=0)
            seg.set_fill(tally_color(name, theme), opacity=1.0)
            seg.move_to([min(x, width - seg_w) + seg_w / 2, 0.0, 0.0])
            self.segments.add(seg)
            x += w
        frame = Rectangle(width=width, height=bar_h, stroke_color=theme.muted, stroke_width=1.0)
        frame.move_to([width / 2, 0.0, 0.0])
        self.bar = VGroup(self.segments, frame)
        VGroup(self.bar, table).arrange(DOWN, buff=0.35, aligned_edge=LEFT)
        self.add(self.bar, table)
        self.move_to([0.0, 0.0, 0.0])

    def _row(
        self,
        swatch: Rectangle,
        text: VMobject,
        count: int,
        side: float,
        name_w: float,
        count_w: float,
        share_w: float,
    ) -> VGroup:
        """Swatch, name, count (right aligned), share; on the first line of the name."""
        theme_ink = text[0].get_color()
        count_mob = number(format_count(count), SIZE, theme_ink)
        share_mob = number(format_share(count, self.total), SIZE, theme_ink)
        if share_mob.text.startswith("<"):
            share_mob = label(share_mob.text, SIZE, theme_ink)
        first_y = 0.0
        text.shift(RIGHT * (side + 0.3 - text.get_left()[0]))
        swatch.move_to([side / 2, first_y, 0.0])
        right = side + 0.3 + name_w + 0.3 + count_w
        center_on(count_mob, [0.0, first_y, 0.0])
        count_mob.shift(RIGHT * (right - count_mob.get_right()[0]))
        center_on(share_mob, [0.0, first_y, 0.0])
        share_mob.shift(RIGHT * (right + 0.3 + share_w - share_mob.get_right()[0]))
        self.count_labels.add(count_mob)
        self.share_labels.add(share_mob)
        row = VGroup(swatch, text, count_mob, share_mob)
        row.name_text = text
        return row

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> ParameterTally:
        """The tally of ``trace.weights``, fitting ``width`` (its height is the table's)."""
        w = resolve_trace(trace).require("weights")
        width, height = room(width, height)
        width = min(width, 10.0)  # a wider table only spreads the numbers from their names
        return cls(
            w.tally_names, w.tally_counts.tolist(), w.total, resolve_theme(theme), width, height
        )


def _wrapped(text: str, color: object, width: float) -> VGroup:
    """``text`` as lines no wider than ``width``, one label each, the first centred on y = 0."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and measure(trial, SIZE) <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    step = style.cap_height(SIZE) * 2.0
    mobs = [label(line, SIZE, color, max_width=width) for line in lines]
    for k, mob in enumerate(mobs):
        center_on(mob, [mob.width / 2, -k * step, 0.0])
    group = VGroup(*mobs)
    group.text = text
    return group


def token_label(text: str) -> str:
    """A vocabulary token as a tile writes it: spaces as ``·``, control bytes as their symbols."""
    visible = shown(readable(text))
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 32 else c for c in visible)


def _token_tile(text: str, theme: Theme, max_width: float) -> VGroup:
    mob = label(token_label(text), SIZE, theme.foreground, max_width=max_width)
    tile = tile_box(mob.width + 0.12, style.cap_height(SIZE) * 2.3, theme.faint)
    center_on(mob, tile.get_center())
    group = VGroup(tile, mob)
    group.text = mob.text
    return group


class HeadTokens(VGroup):
    """Layer 0's heads and the tokens that give each its largest queries (Q) and keys (K).

    Args:
        heads: The heads to show, e.g. ``[0, 1, 2]`` (as many as fit are kept).
        query_texts: Per head of ``heads``, its query tokens' texts, largest first.
        key_texts: Per head, its key tokens' texts.
        n_heads: Heads in layer 0 (for the header).
        theme: Colours.
        width: The block's width (scene units).
        height: The block's height; heads that do not fit are left out, and the
            header says which are shown. Each list shows its largest tokens, as
            many as fit one line.

    Attributes:
        header: "Layer 0 · heads 0–5 of 9 · up to 8 tokens each, largest first".
        shown_heads: The heads drawn.
        lines: ``{(head, "Q" or "K"): VGroup of tiles}``; each tile's ``text``.

    """

    def __init__(
        self,
        heads: Sequence[int],
        query_texts: Sequence[Sequence[str]],
        key_texts: Sequence[Sequence[str]],
        n_heads: int,
        theme: Theme,
        width: float,
        height: float,
    ) -> None:
        super().__init__()
        cap = style.cap_height(SIZE)
        tile_h = cap * 2.3
        cols = 2 if width > 11.0 else 1
        col_w = (width - 0.6 * (cols - 1)) / cols
        name_w = measure(f"head {max(heads)}", SIZE) + 0.25
        letter_w = measure("Q", SIZE) + 0.15
        token_room = col_w - name_w - letter_w
        stored = len(query_texts[0])
        head_h = 2 * tile_h + 0.1
        header_h = cap * 2.0
        per_col = max(1, int((height - header_h - 0.25 + HEAD_GAP) // (head_h + HEAD_GAP)))
        keep = min(len(heads), per_col * cols)
        self.shown_heads = [int(h) for h in heads[:keep]]
        self.lines: dict[tuple[int, str], VGroup] = {}
        blocks = []
        for h, q, k in zip(self.shown_heads, query_texts, key_texts):
            blocks.append(self._head(h, q, k, theme, name_w, letter_w, token_room))
        per = math.ceil(keep / cols)
        columns = [VGroup(*blocks[c * per : (c + 1) * per]) for c in range(cols)]
        for col in columns:
            col.arrange(DOWN, buff=HEAD_GAP, aligned_edge=LEFT)
        body = VGroup(*[c for c in columns if len(c)]).arrange(RIGHT, buff=0.6, aligned_edge=UP)
        span = f"{self.shown_heads[0]}–{self.shown_heads[-1]}" if keep > 1 else str(heads[0])
        what = "heads" if keep > 1 else "head"
        texts = [
            f"Layer 0 · {what} {span} of {n_heads} · up to {stored} tokens each, largest first",
            f"Layer 0 · {what} {span} of {n_heads} · largest first",
            f"Layer 0 · {what} {span} of {n_heads}",
            f"L0 · {span} of {n_heads}",
        ]
        fit = next((t for t in texts if measure(t, SIZE) <= width), texts[-1])
        self.header = label(fit, SIZE, theme.muted, max_width=width)
        VGroup(self.header, body).arrange(DOWN, buff=0.25, aligned_edge=LEFT)
        self.add(self.header, body)
        self.move_to([0.0, 0.0, 0.0])

    def _head(
        self,
        head: int,
        queries: Sequence[str],
        keys: Sequence[str],
        theme: Theme,
        name_w: float,
        letter_w: float,
        token_room: float,
    ) -> VGroup:
        name = label(f"head {head}", SIZE, theme.foreground)
        rows = []
        for letter, texts, color in (("Q", queries, theme.negative), ("K", keys, theme.attention)):
            mark = label(letter, SIZE, color, weight="BOLD")
            tiles, used = VGroup(), 0.0
            for t in texts:  # largest first, as many as fit the line (one at least)
                tile = _token_tile(t, theme, min(2.5, token_room))
                if len(tiles) and used + 0.08 + tile.width > token_room:
                    break
                used += tile.width + (0.08 if len(tiles) else 0.0)
                tiles.add(tile)
            tiles.arrange(RIGHT, buff=0.08)
            tiles.move_to([name_w + letter_w, 0.0, 0.0], aligned_edge=LEFT)
            center_on(mark, [name_w + mark.width / 2, 0.0, 0.0])
            self.lines[(head, letter)] = tiles
            rows.append(VGroup(mark, tiles))
        VGroup(*rows).arrange(DOWN, buff=0.1, aligned_edge=LEFT)
        rows[0].shift(RIGHT * (name_w - rows[0][0].get_left()[0]))
        rows[1].shift(RIGHT * (name_w - rows[1][0].get_left()[0]))
        center_on(name, [name.width / 2, rows[0].get_center()[1], 0.0])
        return VGroup(name, *rows)

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        heads: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> HeadTokens:
        """Layer 0's ``heads`` (default: all, as many as fit) of ``trace.weights``."""
        trace = resolve_trace(trace)
        w = trace.require("weights")
        n_heads = w.query_ids.shape[0]
        heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
        bad = [h for h in heads if not 0 <= h < n_heads]
        if bad or not heads:
            raise MechvizError(
                f"Head {bad[0] if bad else 'list'} is out of range; layer 0 has heads 0 to "
                f"{n_heads - 1}."
            )
        texts = [
            [[trace.token_text(int(i)) for i in ids[h]] for h in heads]
            for ids in (w.query_ids, w.key_ids)
        ]
        width, height = room(width, height)
        return cls(heads, texts[0], texts[1], n_heads, resolve_theme(theme), width, height)

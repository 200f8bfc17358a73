"""Direct logit attribution drawn: a waterfall of what each part adds, the lens beside it, heads.

:class:`LogitWaterfall` stacks the contributions of ``trace.attribution`` to
one logit (or logit difference) at one position: the embedding at the bottom,
then each layer's attention and MLP, the bias, and the total, one thin row
each, every bar starting where the running sum stood. The largest parts are
named at the side ("L29 MLP +6.98"); how many are left unnamed, and how small
they are, is written under the chart, with the sum of the bars beside the
recorded logit. :class:`LensTrack` reads the same rows with the logit lens
(``lens_mid`` after attention, ``lens`` after the MLP): the answer's rank there.
:class:`TopHeads` names the heads with the largest direct effect.
:class:`PartLegend` says which colour is which kind of part.

Every number is read from the trace (:class:`mechviz.tracing.schema.AttributionTable`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, Line, Rectangle, RoundedRectangle, VGroup

from mechviz.errors import MechvizError
from mechviz.model.tokens import readable, shown
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.blocks import resolve_theme, resolve_trace, room
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure

__all__ = [
    "LensTrack",
    "LogitWaterfall",
    "PartLegend",
    "TopHeads",
    "part_names",
    "resolve_position",
]

SIZE = style.MIN_TEXT  # every label of these blocks (the charts are dense; text never shrinks)
LINE = 1.6  # label pitch, in capital heights (room between stacked labels)
LEADER_GAP = 0.45  # chart edge to the named labels (the leaders' run)
KINDS = ("embed", "attn", "mlp", "bias", "total")


def kind_colors(theme: Theme) -> dict[str, object]:
    """The colour of each kind of part: attention and MLP as everywhere, the total highlighted."""
    return {
        "embed": theme.muted,
        "attn": theme.attention,
        "mlp": theme.mlp,
        "bias": theme.muted,
        "total": theme.highlight,
    }


def part_names(n_layers: int) -> list[str]:
    """The names of the parts in the order of ``AttributionTable.parts``: embed, L0 attn, ..."""
    names = ["embed"]
    for layer in range(n_layers):
        names += [f"L{layer} attn", f"L{layer} MLP"]
    return names


def part_kinds(n_layers: int) -> list[str]:
    """``"embed"``, then ``"attn"``, ``"mlp"`` per layer (the parts' kinds, in order)."""
    return ["embed"] + ["attn", "mlp"] * n_layers


def resolve_position(trace: Trace, position: int | None) -> int:
    """``position`` checked against the prompt (negative counts from the end); default the last."""
    P = trace.n_positions
    if position is None:
        return P - 1
    if not -P <= position < P:
        raise MechvizError(
            f"Position {position} is out of range; the prompt has positions 0 to {P - 1}."
        )
    return position % P


def signed(value: float) -> str:
    """A contribution as drawn: signed, two decimals ("+6.98", "-0.39")."""
    text = f"{value:+.2f}"
    return "+0.00" if text == "-0.00" else text


def spread(desired: np.ndarray, pitch: float, low: float, high: float) -> np.ndarray:
    """Positions near ``desired`` at least ``pitch`` apart, inside ``[low, high]``.

    Labels that would collide are pushed apart as a group centred on where they
    want to be (the order is kept); a group that runs past an end is moved in.
    """
    order = np.argsort(desired, kind="stable")
    clusters: list[list[int]] = []  # indices into desired, ascending

    def centre(members: list[int]) -> float:
        half = len(members) * pitch / 2
        mid = float(np.mean(desired[members]))
        return min(max(mid, low + half), max(high - half, low + half))

    for i in order:
        clusters.append([int(i)])
        while len(clusters) > 1:
            a, b = clusters[-2], clusters[-1]
            top_a = centre(a) + len(a) * pitch / 2
            bottom_b = centre(b) - len(b) * pitch / 2
            if bottom_b >= top_a - 1e-9:
                break
            clusters[-2:] = [a + b]
    out = np.zeros(len(desired))
    for members in clusters:
        start = centre(members) - len(members) * pitch / 2
        for k, i in enumerate(members):
            out[i] = start + pitch * (k + 0.5)
    return out


def nice_ticks(low: float, high: float, most: int) -> list[float]:
    """Round tick values between ``low`` and ``high``, at most ``most`` of them, 0 among them."""
    span = max(high - low, 1e-9)
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if span / step <= most - 1:
            break
    first = math.ceil(low / step - 1e-9)
    return [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]


class PartLegend(VGroup):
    """Which colour is which kind of part: embedding and bias, attention, MLP, the logit.

    Args:
        theme: Colours.
        width: The widest (scene units): one row, or two rows when one does not fit.
        total: The total's name ("logit", "difference").

    Attributes:
        swatches: One square per entry, in order.
        labels: Their names.

    """

    def __init__(self, theme: Theme, width: float, total: str = "logit") -> None:
        super().__init__()
        colors = kind_colors(theme)
        long = [("attn", "attention"), ("mlp", "MLP"), ("embed", "embed, bias"), ("total", total)]
        short = [("attn", "attn"), *long[1:]]
        entries = short if self._width(long) > width >= self._width(short) else long
        side = style.cap_height(SIZE) * 1.6
        self.swatches, self.labels = VGroup(), VGroup()
        items = []
        for kind, name in entries:
            swatch = RoundedRectangle(
                corner_radius=0.04,
                width=side,
                height=side,
                stroke_width=0,
                fill_color=colors[kind],
                fill_opacity=1.0,
            )
            text = label(name, SIZE, theme.foreground)
            center_on(text, swatch.get_right() + RIGHT * (0.12 + text.width / 2))
            self.swatches.add(swatch)
            self.labels.add(text)
            items.append(VGroup(swatch, text))
        row = VGroup(*items).arrange(RIGHT, buff=0.35)
        self.rows = 1
        if row.width > width:
            self.rows = 2
            top = VGroup(*items[:2]).arrange(RIGHT, buff=0.35)
            low = VGroup(*items[2:]).arrange(RIGHT, buff=0.35)
            VGroup(top, low).arrange(DOWN, buff=0.16, aligned_edge=LEFT)
        self.add(*items)
        self.move_to([0.0, 0.0, 0.0])

    @staticmethod
    def _width(entries: list[tuple[str, str]]) -> float:
        """The legend's width on one row."""
        side = style.cap_height(SIZE) * 1.6
        texts = sum(measure(name, SIZE) for _, name in entries)
        return texts + len(entries) * (side + 0.12) + (len(entries) - 1) * 0.35 + 0.1

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        total: str = "logit",
    ) -> PartLegend:
        """The legend (it reads nothing of the trace; the argument keeps the block convention)."""
        w, _ = room(width, height)
        return cls(resolve_theme(theme), w, total)


class LogitWaterfall(VGroup):
    """The parts of one logit as a waterfall: one row per part, bottom (embedding) to top (total).

    Row ``i`` holds a bar from the running sum before part ``i`` to the sum
    after it, so a bar reaching right raises the logit and one reaching left
    lowers it; the bias has its own row and the total runs from 0 to the sum.
    The ``n_named`` largest parts by size (and always the embedding, the bias
    and the total) are named at the right with a leader to their bar; under
    the chart, the axis, the sum of the bars beside the recorded logit, and
    how many parts are left unnamed.

    Args:
        values: ``[B]`` the parts, in the order of :func:`part_names`.
        bias: The bias (``AttributionTable.bias``).
        logit: The recorded logit (difference), before any soft cap.
        output: The model's own output logit (after the cap); shown when it differs.
        theme: Colours.
        width, height: The room (scene units).
        what: The total's name under the chart ("logit ·Paris", "·Paris − ·London").
        n_named: Parts named at most (default: as many as the height holds, up to 10).
        total_name: The total's label beside its bar ("logit", "difference").

    Attributes:
        values: The parts drawn, then the bias (``[B + 1]``).
        names: Their names (``"embed"``, ``"L0 attn"``, ..., ``"bias"``).
        running: ``[B + 2]`` the running sum before each part, then the total.
        total: The sum of every bar (the parts and the bias).
        logit, output: As given.
        bars: One rectangle per part, the bias, then the total (``B + 2``).
        named: Indices of the named bars (into ``bars``), bottom to top.
        labels: The names at the right ("L29 MLP +6.98"), one per named bar.
        leaders: A line from each named bar to its label.
        ticks: The layer numbers at the left ("L0", "L10", ...).
        axis: The tick numbers under the chart.
        unit: "logits", the axis's unit, right of the numbers.
        sum_text: "sum of parts 17.37 = logit 17.37".
        note: How many parts are unnamed, and their largest size.
        area: The chart's frame (x = logits, y = rows).

    """

    def __init__(
        self,
        values: np.ndarray,
        bias: float,
        logit: float,
        output: float,
        theme: Theme,
        width: float,
        height: float,
        what: str = "logit",
        n_named: int | None = None,
        total_name: str = "logit",
    ) -> None:
        super().__init__()
        self.theme = theme
        parts = np.asarray(values, dtype=np.float64)
        L = (len(parts) - 1) // 2
        self.n_layers = L
        self.values = np.append(parts, float(bias))
        self.names = part_names(L) + ["bias"]
        self.kinds = part_kinds(L) + ["bias"]
        self.running = np.concatenate([[0.0], np.cumsum(self.values)])
        self.total = float(self.running[-1])
        self.logit, self.output, self.what = float(logit), float(output), what
        self.total_name = total_name
        cap = style.cap_height(SIZE)
        self.pitch_text = cap * LINE
        # --- the footer: axis numbers, the sum, the note (built first: they set the chart's height)
        self.room_width = width
        probe = self._note_forms(len(parts), float(np.abs(self.values).max()))[1]
        self.one_line = measure(self._sum_forms()[0], SIZE) + measure(probe, SIZE) + 0.8 <= width
        footer_h = (2 if self.one_line else 3) * self.pitch_text + 0.25
        self.n_rows = len(self.values) + 2  # the parts, a gap, the bias, the total
        self.top_room = self.pitch_text + 0.1  # above the chart: room for a track's header
        chart_h = max(height - footer_h - self.top_room, 1.0)
        named_room = int((chart_h + self.top_room) // self.pitch_text)
        fixed = [0, len(parts), len(parts) + 1]  # the embedding, the bias, the total
        n = min(10, max(named_room - len(fixed), 1)) if n_named is None else n_named
        order = (
            np.argsort(-np.abs(parts[1:]), kind="stable") + 1
        )  # the layers' parts, largest first
        self.n_named = int(min(n, len(order)))
        chosen = set(int(i) for i in order[: self.n_named]) | set(fixed)
        self.named = sorted(chosen)
        label_texts = {i: self._label_text(i) for i in self.named}
        self.label_width = max(measure(t, SIZE) for t in label_texts.values())
        tick_w = measure(f"L{max(L - 1, 0)}", SIZE) + 0.25
        chart_w = max(width - tick_w - LEADER_GAP - self.label_width - 0.1, 1.0)
        chart_w = min(chart_w, 9.0)
        self.area = Rectangle(
            width=chart_w, height=chart_h, stroke_width=0, fill_opacity=0.0
        ).move_to([0, 0, 0])
        self._bars(chart_w, chart_h)
        self._labels(label_texts)
        self._ticks(tick_w)
        self._footer(chart_w)
        self.add(self.area, self.grid, self.bars, self.leaders, self.labels, self.ticks)
        self.add(self.axis, self.unit, self.sum_text, self.note)
        # The block's bounds are its room's height (top slot, chart, footer), whatever it holds.
        left, right = self.get_left()[0], self.get_right()[0]
        self.room = Rectangle(
            width=right - left, height=chart_h + footer_h + self.top_room, stroke_width=0
        ).set_fill(opacity=0.0)
        self.room.move_to(
            [(left + right) / 2, self.area.get_top()[1] + self.top_room - self.room.height / 2, 0]
        )
        self.add(self.room)
        self.move_to([0.0, 0.0, 0.0])

    # --- geometry -------------------------------------------------------------------------
    def x_of(self, value: float) -> float:
        """The x of a logit value on the chart (scene units)."""
        return self._x0 + (value - self._lo) * self._scale

    def row_y(self, row: int) -> float:
        """The y of row ``row``'s centre: 0 the embedding, ``B`` the bias, ``B + 1`` the total."""
        B = len(self.values) - 1
        slot = row + (1 if row >= B else 0)  # one empty row before the bias
        bottom = self.area.get_bottom()[1]
        return float(bottom + self.area.height * (slot + 0.5) / self.n_rows)

    def _bars(self, chart_w: float, chart_h: float) -> None:
        theme = self.theme
        colors = kind_colors(theme)
        lo = min(0.0, float(self.running.min()), self.logit)
        hi = max(0.0, float(self.running.max()), self.logit)
        pad = 0.03 * (hi - lo or 1.0)
        self._lo, self._hi = lo - pad, hi + pad
        self._scale = chart_w / (self._hi - self._lo)
        self._x0 = self.area.get_left()[0]
        row_h = chart_h / self.n_rows
        bar_h = max(row_h * 0.78, 0.012)
        self.bars = VGroup()
        starts = list(self.running[:-1]) + [0.0]
        ends = list(self.running[1:]) + [self.total]
        kinds = self.kinds + ["total"]
        for row, (a, b, kind) in enumerate(zip(starts, ends, kinds)):
            x0, x1 = sorted((self.x_of(a), self.x_of(b)))
            w = max(x1 - x0, 0.025)  # a part too small to see keeps a sliver at its place
            bar = Rectangle(
                width=w,
                height=bar_h if kind != "total" else max(bar_h, 0.08),
                stroke_width=0,
                fill_color=colors[kind],
                fill_opacity=1.0,
            )
            bar.move_to([(x0 + x1) / 2, self.row_y(row), 0])
            bar.value = float(b - a) if kind != "total" else self.total
            bar.start, bar.end = float(a), float(b)
            bar.kind = kind
            self.bars.add(bar)
        zero = self.x_of(0.0)
        top, bottom = self.area.get_top()[1], self.area.get_bottom()[1]
        self.zero_line = Line([zero, bottom, 0], [zero, top, 0], stroke_width=1.5)
        self.zero_line.set_stroke(theme.muted, opacity=0.8)
        self.grid = VGroup(self.zero_line)
        for value in self._tick_values():
            if value == 0:
                continue
            x = self.x_of(value)
            line = Line([x, bottom, 0], [x, top, 0], stroke_width=1.0)
            self.grid.add(line.set_stroke(theme.faint, opacity=0.9))
        self.logit_line = Line(
            [self.x_of(self.logit), bottom, 0], [self.x_of(self.logit), top, 0], stroke_width=1.5
        ).set_stroke(theme.highlight, opacity=0.5)
        self.grid.add(self.logit_line)

    def _tick_values(self) -> list[float]:
        most = max(2, int(self.area.width // 0.8))  # numbers of 2-3 digits, with room between
        return nice_ticks(self._lo, self._hi, most)

    def _label_text(self, row: int) -> str:
        if row == len(self.values):
            return f"{self.total_name} {self.logit:.2f}"
        return f"{self.names[row]} {signed(float(self.values[row]))}"

    def _labels(self, texts: dict[int, str]) -> None:
        theme = self.theme
        x = self.area.get_right()[0] + LEADER_GAP
        desired = np.array([self.row_y(i) for i in self.named])
        bottom, top = self.area.get_bottom()[1], self.area.get_top()[1]
        # Labels may rise into the slot above the chart (a track's header takes it when they go).
        ys = spread(desired, self.pitch_text, bottom - self.pitch_text * 0.3, top + self.top_room)
        self.labels, self.leaders = VGroup(), VGroup()
        for i, y in zip(self.named, ys):
            color = theme.highlight if i == len(self.values) else theme.foreground
            text = label(texts[i], SIZE, color)
            center_on(text, [x + text.width / 2, y, 0])
            text.row = i
            self.labels.add(text)
            bar = self.bars[i]
            start = [bar.get_right()[0] + 0.04, self.row_y(i), 0]
            mid = [self.area.get_right()[0] + 0.1, self.row_y(i), 0]
            end = [x - 0.08, y, 0]
            leader = VGroup(Line(start, mid, stroke_width=1.0), Line(mid, end, stroke_width=1.0))
            leader.set_stroke(theme.muted, opacity=0.55)
            self.leaders.add(leader)

    def _ticks(self, tick_w: float) -> None:
        x = self.area.get_left()[0] - 0.25
        L = self.n_layers
        self.ticks = VGroup()
        if L == 0:
            return
        room_per_layer = self.area.height * 2 / self.n_rows
        stride = next(
            s for s in (1, 2, 5, 10, 20, 50, 100, 10**9) if s * room_per_layer >= self.pitch_text
        )
        layers = list(range(0, L, stride))
        if L - 1 not in layers:
            if layers and (L - 1 - layers[-1]) * room_per_layer < self.pitch_text:
                layers.pop()
            layers.append(L - 1)
        for layer in layers:
            text = label(f"L{layer}", SIZE, self.theme.muted)
            y = (self.row_y(1 + 2 * layer) + self.row_y(2 + 2 * layer)) / 2
            center_on(text, [x - text.width / 2, y, 0])
            text.layer = layer
            self.ticks.add(text)

    def _footer(self, chart_w: float) -> None:
        theme = self.theme
        bottom = self.area.get_bottom()[1]
        y = bottom - 0.12 - self.pitch_text / 2
        self.axis = VGroup()
        placed: list[tuple[float, float]] = []
        for value in self._tick_values():
            text = label(f"{value:g}", SIZE, theme.muted)
            center_on(text, [self.x_of(value), y, 0])
            box = (text.get_left()[0] - 0.15, text.get_right()[0] + 0.15)
            if any(box[0] < b and a < box[1] for a, b in placed):
                continue
            placed.append(box)
            self.axis.add(text)
        self.unit = label("logits", SIZE, theme.muted)
        center_on(self.unit, [self.area.get_right()[0] + LEADER_GAP + self.unit.width / 2, y, 0])
        left = self.ticks.get_left()[0] if len(self.ticks) else self.area.get_left()[0]
        width = max(self.labels.get_right()[0] - left, self.room_width - 0.05)
        y2 = y - self.pitch_text
        forms = self._sum_forms()
        fits = [f for f in forms if measure(f, SIZE) <= width]
        self.sum_text = label(fits[0] if fits else forms[-1], SIZE, theme.foreground)
        center_on(self.sum_text, [left + self.sum_text.width / 2, y2, 0])
        self.sum_value = self.total
        unnamed = [i for i in range(1, len(self.values) - 1) if i not in self.named]
        largest = max((abs(float(self.values[i])) for i in unnamed), default=0.0)
        forms = self._note_forms(len(unnamed), largest)
        if self.one_line:
            room = width - self.sum_text.width - 0.8
            fits = [f for f in forms if measure(f, SIZE) <= room]
            self.one_line = bool(fits)
        if not self.one_line:
            fits = [f for f in forms if measure(f, SIZE) <= width]
        self.note = label(fits[0] if fits else forms[-1], SIZE, theme.muted, max_width=width)
        if self.one_line:  # right of the sum, ending where the labels end
            center_on(self.note, [left + width - self.note.width / 2, y2, 0])
        else:
            center_on(self.note, [left + self.note.width / 2, y2 - self.pitch_text, 0])
        self.n_unnamed = len(unnamed)
        self.unnamed_max = largest

    def _sum_forms(self) -> list[str]:
        """The sum line, longest first: "sum of parts 17.37 = logit ·Paris 17.37", ..."""
        forms = [
            f"sum of parts {self.total:.2f} = {self.what} {self.logit:.2f}",
            f"sum {self.total:.2f} = {self.what} {self.logit:.2f}",
            f"sum {self.total:.2f} = {self.logit:.2f}",
        ]
        if not math.isclose(self.output, self.logit, rel_tol=1e-6, abs_tol=1e-6):
            capped = f" (after the soft cap: {self.output:.2f})"
            forms = [f + capped for f in forms] + forms[-1:]
        return forms

    def _note_forms(self, unnamed: int, largest: float) -> list[str]:
        """The note on the unnamed parts, longest first."""
        n_parts = len(self.values) - 1
        return [
            f"{unnamed} of {n_parts} parts unnamed, each within ±{largest:.2f}",
            f"{unnamed} of {n_parts} unnamed, each within ±{largest:.2f}",
            f"{unnamed} unnamed, within ±{largest:.2f}",
        ]

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int | None = None,
        *,
        versus: bool = False,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        n_named: int | None = None,
    ) -> LogitWaterfall:
        """The waterfall of the top token's logit at ``position`` (default: the last).

        Args:
            trace: A trace with an ``attribution`` section, or the path of one.
            position: The position read (its next-token prediction); negative counts from the end.
            versus: Split ``logit(top) - logit(versus)`` instead (row 1 of the table).
            width: The room's width (default: the frame less margins).
            height: The room's height (default: the frame less margins).
            theme: A theme or its name (default: the current render's).
            n_named: Parts named at most (default: as many as fit, up to 10).

        Raises:
            MechvizError: No ``attribution`` section, a position out of range, or
                ``versus`` asked of a table recorded without it.

        """
        trace = resolve_trace(trace)
        a = trace.require("attribution")
        p = resolve_position(trace, position)
        t = 1 if versus else 0
        if versus and a.versus is None:
            raise MechvizError(
                "This trace's attribution has no versus token; add one with "
                "`mechviz analyze TRACE --attribution --versus WORD`."
            )
        top = shown(readable(trace.token_text(int(a.token[p]))))
        what = f"logit {top}"
        if versus:
            what = f"{top} − {shown(readable(trace.token_text(int(a.versus))))}"
        w, h = room(width, height)
        return cls(
            a.parts[t, p],
            float(a.bias[t, p]),
            float(a.logit[t, p]),
            float(a.output[t, p]),
            resolve_theme(theme),
            w,
            h,
            what=what,
            n_named=n_named,
            total_name="difference" if versus else "logit",
        )


def lens_rows(trace: Trace, position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lens at each part's row (embed, after L0 attention, after L0 MLP, ...) at ``position``.

    After attention is ``lens_mid`` (``{l}_mid``), after the MLP ``lens`` (``{l}_post``).

    Returns:
        ``(rank, prob, top)``, each ``[B]``: the final top token's rank (0 = top)
        and probability under the lens, and the lens's own top token id.

    """
    lens, mid = trace.lens, trace.require("lens_mid")
    L = trace.n_layers
    rank, prob, top = (
        [lens.final_token_rank[0, position]],
        [lens.final_token_prob[0, position]],
        [lens.top_ids[0, position, 0]],
    )
    for layer in range(L):
        for table, y in ((mid, layer), (lens, layer + 1)):
            rank.append(table.final_token_rank[y, position])
            prob.append(table.final_token_prob[y, position])
            top.append(table.top_ids[y, position, 0])
    return (
        np.asarray(rank, dtype=np.int64),
        np.asarray(prob, dtype=np.float64),
        np.asarray(top, dtype=np.int64),
    )


class LensTrack(VGroup):
    """The logit lens's rank of the answer at each row of a :class:`LogitWaterfall`.

    One dot per part, on the part's row, at the rank the answer has under the
    lens right after that part wrote (log scale, rank 1 at the right), in the
    part's colour (attention, MLP), or the highlight where the answer is top-1. The lens
    normalises each state with its own norm scale, so this is not the running
    sum of the waterfall: it is drawn apart, with its own axis.

    Args:
        rank: ``[B]`` the answer's rank under the lens after each part (0 = top).
        prob: ``[B]`` its probability there.
        rows: ``[B]`` the y of each row (``LogitWaterfall.row_y``).
        bottom, top: The track's vertical extent (the waterfall's chart).
        answer: The answer's text as drawn ("·Paris").
        vocab: The vocabulary's size (the axis's far end).
        theme: Colours.
        width: The track's width, with its tick numbers.

    Attributes:
        rank, prob: As given.
        dots: One dot per row.
        path: The line through the dots.
        header: "lens rank of ·Paris".
        axis: The tick numbers ("1", "10", ... ranks).

    """

    def __init__(
        self,
        rank: np.ndarray,
        prob: np.ndarray,
        rows: np.ndarray,
        bottom: float,
        top: float,
        answer: str,
        vocab: int,
        theme: Theme,
        width: float,
    ) -> None:
        super().__init__()
        self.theme = theme
        self.rank = np.asarray(rank, dtype=np.int64)
        self.prob = np.asarray(prob, dtype=np.float64)
        pitch = style.cap_height(SIZE) * LINE
        self.decades = max(1, math.ceil(math.log10(max(vocab, 10))))
        self.frame_box = Rectangle(width=width, height=top - bottom, stroke_width=1.0)
        self.frame_box.set_stroke(theme.faint, opacity=1.0)
        self.frame_box.move_to([width / 2, (top + bottom) / 2, 0])
        r = min(0.05, max((top - bottom) / len(rows) * 0.45, 0.025))
        self._x0, self._w = r, width - 2 * r  # dots stay inside the frame
        self.dots = VGroup()
        for k, y in enumerate(rows):
            dot = Rectangle(width=2 * r, height=2 * r, stroke_width=0, fill_opacity=1.0)
            kind = "embed" if k == 0 else ("attn" if k % 2 else "mlp")  # who wrote just before
            dot.set_fill(theme.highlight if self.rank[k] == 0 else kind_colors(theme)[kind])
            dot.move_to([self.x_of(int(self.rank[k])), y, 0])
            self.dots.add(dot)
        self.path = VGroup(
            *[
                Line(a.get_center(), b.get_center(), stroke_width=1.5)
                for a, b in zip(self.dots[:-1], self.dots[1:])
            ]
        ).set_stroke(theme.prob, opacity=0.6)
        self.axis = VGroup()
        y = bottom - 0.12 - pitch / 2
        placed: list[tuple[float, float]] = []
        for d in range(self.decades, -1, -1):
            value = 10**d
            text = label(_rank_text(value), SIZE, theme.muted)
            center_on(text, [self.x_of(value - 1), y, 0])
            text.shift(RIGHT * max(0.0, -text.get_left()[0]))
            text.shift(LEFT * max(0.0, text.get_right()[0] - width))
            box = (text.get_left()[0] - 0.1, text.get_right()[0] + 0.1)
            if any(box[0] < b and a < box[1] for a, b in placed):
                continue
            placed.append(box)
            self.axis.add(text)
        forms = [f"lens rank of {answer}", f"rank of {answer}", "lens rank"]
        fits = [f for f in forms if measure(f, SIZE) <= width]
        self.header = label(fits[0] if fits else forms[-1], SIZE, theme.prob, max_width=width)
        center_on(self.header, [self.header.width / 2, top + 0.06 + pitch / 2, 0])
        self.add(self.frame_box, self.path, self.dots, self.axis, self.header)

    def x_of(self, rank: int) -> float:
        """The x of a 0-based rank: rank 0 (the top) at the right, 10^decades at the left."""
        t = math.log10(rank + 1) / self.decades
        return self._x0 + self._w * (1.0 - min(t, 1.0))

    @classmethod
    def beside(
        cls, waterfall: LogitWaterfall, trace: Trace, position: int, width: float
    ) -> LensTrack:
        """A track for ``waterfall``'s rows (read at ``position``), ``width`` wide, left at 0."""
        rank, prob, _ = lens_rows(trace, position)
        rows = np.array([waterfall.row_y(i) for i in range(len(rank))])
        answer = shown(
            readable(trace.token_text(int(trace.require("attribution").token[position])))
        )
        area = waterfall.area
        return cls(
            rank,
            prob,
            rows,
            area.get_bottom()[1],
            area.get_top()[1],
            answer,
            trace.model.d_vocab,
            waterfall.theme,
            width,
        )

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> LensTrack:
        """The lens's rank of the answer after every part, rows as a waterfall of ``height``."""
        trace = resolve_trace(trace)
        p = resolve_position(trace, position)
        w, h = room(width, height)
        fall = LogitWaterfall.from_trace(trace, p, width=w, height=h, theme=theme)
        track = cls.beside(fall, trace, p, min(w, 3.0))
        return track.move_to([0.0, 0.0, 0.0])


def _rank_text(value: int) -> str:
    if value >= 1000:
        return f"{value // 1000}k"
    return str(value)


class TopHeads(VGroup):
    """The heads with the largest direct effect on one logit, as signed bars from zero.

    Args:
        heads: ``[L, H]`` each head's direct contribution (``AttributionTable.heads``).
        theme: Colours (red raises the logit, blue lowers it).
        width, height: The room (scene units).
        n: Heads shown at most (default: as many as fit, up to 10).

    Attributes:
        order: ``(layer, head)`` of each row, largest ``|effect|`` first.
        values: Their contributions.
        names: "L23.H4", one per row.
        bars: One rectangle per row.
        numbers: The values ("+2.82").
        header: What the rows are.
        note: The rows' sum beside every head's.

    """

    def __init__(
        self, heads: np.ndarray, theme: Theme, width: float, height: float, n: int | None = None
    ) -> None:
        super().__init__()
        self.theme = theme
        heads = np.asarray(heads, dtype=np.float64)
        L, H = heads.shape
        cap = style.cap_height(SIZE)
        fit = int((height - 4 * cap - 0.3) // (2 * cap))
        n = min(10 if n is None else n, max(fit, 1), L * H)
        pitch = min(max((height - 0.3) / (n + 2), 2 * cap), 3 * cap)  # rows fill tall rooms
        flat = np.argsort(-np.abs(heads).ravel(), kind="stable")[:n]
        self.order = [(int(i // H), int(i % H)) for i in flat]
        self.values = np.array([heads[l_, h_] for l_, h_ in self.order])
        self.names = [f"L{l_}.H{h_}" for l_, h_ in self.order]
        name_w = max(measure(t, SIZE) for t in self.names) + 0.2
        num_w = max(measure(signed(v), SIZE) for v in self.values) + 0.2
        # Zero sits where the largest negative bar ends: each side as long as its largest bar.
        low = max(float(-self.values.min()), 0.0)
        high = max(float(self.values.max()), 0.0)
        left_w = num_w if low > 0 else 0.0  # numbers of negative bars go left of them
        right_w = num_w if high > 0 else 0.0
        bar_w = min(max(width - name_w - left_w - right_w, 1.0), 8.0)
        scale = bar_w / max(low + high, 1e-9)
        zero = name_w + left_w + low * scale
        self.bars, self.name_labels, self.numbers = VGroup(), VGroup(), VGroup()
        for k, (name, value) in enumerate(zip(self.names, self.values)):
            y = -k * pitch
            w = max(abs(value) * scale, 0.02)
            color = theme.positive if value >= 0 else theme.negative
            bar = Rectangle(
                width=w, height=pitch * 0.62, stroke_width=0, fill_color=color, fill_opacity=1.0
            )
            bar.move_to([zero + np.sign(value) * w / 2, y, 0])
            bar.value = float(value)
            self.bars.add(bar)
            text = label(name, SIZE, theme.foreground)
            center_on(text, [name_w - 0.2 - text.width / 2, y, 0])
            self.name_labels.add(text)
            num = label(signed(float(value)), SIZE, theme.muted)
            if value >= 0:
                center_on(num, [bar.get_right()[0] + 0.12 + num.width / 2, y, 0])
            else:
                center_on(num, [bar.get_left()[0] - 0.12 - num.width / 2, y, 0])
            self.numbers.add(num)
        top = pitch * 0.5
        bottom = -(len(self.values) - 0.5) * pitch
        self.zero_line = Line([zero, bottom, 0], [zero, top, 0], stroke_width=1.5)
        self.zero_line.set_stroke(theme.muted, opacity=0.8)
        total_w = name_w + left_w + bar_w + right_w
        forms = [
            f"the {n} largest of {L * H} heads, by |direct effect|",
            f"{n} largest of {L * H} heads",
            f"top {n} of {L * H}",
        ]
        fits = [f for f in forms if measure(f, SIZE) <= total_w]
        self.header = label(fits[0] if fits else forms[-1], SIZE, theme.foreground)
        self.header.move_to([self.header.width / 2, top + 0.15 + pitch / 2, 0])
        shown_sum, all_sum = float(self.values.sum()), float(heads.sum())
        forms = [
            f"these {n}: {signed(shown_sum)} · all {L * H} heads: {signed(all_sum)}",
            f"these {n}: {signed(shown_sum)} · all: {signed(all_sum)}",
            f"{signed(shown_sum)} of {signed(all_sum)}",
        ]
        fits = [f for f in forms if measure(f, SIZE) <= total_w]
        self.note = label(fits[0] if fits else forms[-1], SIZE, theme.muted)
        center_on(self.note, [self.note.width / 2, bottom - 0.15 - pitch / 2, 0])
        self.shown_sum, self.all_sum = shown_sum, all_sum
        self.add(self.zero_line, self.bars, self.name_labels, self.numbers, self.header, self.note)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int | None = None,
        *,
        versus: bool = False,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        n: int | None = None,
    ) -> TopHeads:
        """The largest heads for the top token's logit at ``position`` (or the difference)."""
        trace = resolve_trace(trace)
        a = trace.require("attribution")
        p = resolve_position(trace, position)
        t = 1 if versus and a.versus is not None else 0
        w, h = room(width, height)
        return cls(a.heads[t, p], resolve_theme(theme), w, h, n)

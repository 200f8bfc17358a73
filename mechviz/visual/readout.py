"""The logit-lens readout at one position, stepping layer by layer.

:class:`LensReadout` shows what the logit lens reads from the residual stream
at one position after a given layer: a heading ("embedding", "after layer N"),
the top-k next tokens as :class:`~mechviz.visual.mobjects.ProbBars`, counters
(the final answer's rank, the lens entropy in bits, the stream's norm) and the
answer's probability by layer as a small chart. ``step_to(layer)`` returns the
animations to the next layer: the bars morph, the counters and heading change,
the chart's line grows. Every number is read from the trace (``trace.lens``,
``trace.resid.norm``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, Animation, Line, Rectangle, VGroup, VMobject

from mechviz.schema import Trace
from mechviz.tokens import shown
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.mobjects import MorphBars, ProbBars
from mechviz.visual.style import Theme
from mechviz.visual.text import Number, label, number, numbered

__all__ = ["LensReadout"]

LN2 = float(np.log(2.0))
BESIDE_WIDTH = 6.6  # a room at least this wide puts the counters and chart beside the bars
MIN_BAR = 0.8  # ...if the bars are at least this long there (scene units)
NAME_WIDTH = 1.7  # the token names' column of the bars


class LensReadout(VGroup):
    """The logit lens at one position: heading, top-k bars, counters and p(answer) by layer.

    The answer is the model's own top-1 next token at the position
    (``trace.output.top_ids[position, 0]``; at the last position, ``trace.prediction``).
    Built showing the embedding; :meth:`step_to` moves it to a layer.

    Attributes:
        position: The prompt position read (non-negative).
        answer_id: Vocabulary id of the answer.
        answer_text: The answer's readable text.
        layer: The layer shown now (``None``: the embedding).
        heading: "embedding" or "after layer N" (replaced on every step).
        bars: The top-k tokens and their lens probabilities (:class:`ProbBars`).
        counter_rows: The counters' names (``VGroup`` of labels).
        counter_values: Their values (``VGroup`` of numbers, replaced on every step).
        counters: ``VGroup(counter_rows, counter_values)``.
        chart: Title, box and line of p(answer) by layer, or ``None``.
        chart_box: The chart's frame (x: lens rows 0..L, y: probability 0..1).
        chart_line: The line so far.
        has_chart: Whether the chart fitted the room (and was asked for).

    """

    def __init__(
        self,
        view: TraceView,
        position: int,
        width: float,
        height: float,
        *,
        k: int = 4,
        chart: bool = True,
        beside: bool | None = None,
    ) -> None:
        super().__init__()
        self.view, self.trace, self.theme = view, view.trace, view.theme
        trace, theme = self.trace, self.theme
        self.position = int(position) % trace.n_positions
        self.answer_id = int(trace.output.top_ids[self.position, 0])
        self.answer_text = view.vocab_text(self.answer_id)
        self.layer: int | None = None
        self.room_width = width
        k = min(k, trace.lens.top_ids.shape[-1])
        self.counters = self._counters()
        side_w = max(self.counters.width, 2.2)
        # A wide, short room (stacked frames) puts the counters beside the bars,
        # if the bars keep a readable length there.
        if beside is None:
            bar_beside = width - side_w - 0.45 - NAME_WIDTH - 0.15 - self._value_width()
            beside = width >= BESIDE_WIDTH and bar_beside >= MIN_BAR
        bars_w = width - side_w - 0.45 if beside else min(width, 6.0)
        self.heading = label("embedding", style.BODY_TEXT, theme.foreground)
        texts, probs, colors = self.top(None, k)
        self.bars = ProbBars(
            texts,
            probs,
            theme,
            bar_width=bars_w - NAME_WIDTH - 0.15 - self._value_width(),  # the bars fill bars_w
            name_width=NAME_WIDTH,
            row_height=0.46,
            colors=colors,
            highlight=lambda t: t == self.answer_text,
        )
        self.chart_box: Rectangle | None = None
        self.chart_line: VMobject | None = None
        self.chart = self._chart(side_w if beside else None) if chart else None
        if beside:
            self._lay_out_beside(height)
        else:
            self._lay_out_below(height)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int = -1,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        k: int = 4,
        chart: bool = True,
        beside: bool | None = None,
    ) -> LensReadout:
        """The readout at ``position``, showing the embedding, sized for the room.

        Args:
            trace: A Trace or a path to one.
            position: Prompt position (negative counts from the end).
            width: Room's width in scene units (default: the frame less margins).
            height: Room's height in scene units (default: the frame less margins).
            theme: A Theme or its name (default: the current render's).
            k: Top tokens shown (at most the trace's top-k); a short room keeps 2.
            chart: Draw p(answer) by layer when it fits.
            beside: Counters and chart right of the bars (default: when the room is
                at least 6.6 units wide and the bars keep 0.8 units there), else below them.

        Returns:
            The block, centred on the origin. A short room drops the chart, then
            bars down to 2, then all counters but the rank.

        """
        w, h = room(width, height)
        view = TraceView.of(trace, theme)
        return cls(view, position, w, h, k=k, chart=chart, beside=beside)

    # --- layout ----------------------------------------------------------------------
    def _lay_out_beside(self, height: float) -> None:
        side = VGroup(self.counters, *([self.chart] if self.chart else []))
        side.arrange(DOWN, buff=0.25, aligned_edge=LEFT)
        row = VGroup(self.bars, side).arrange(RIGHT, buff=0.4, aligned_edge=UP)
        self.add(self.heading, row)
        self.arrange(DOWN, buff=0.25, aligned_edge=LEFT)
        self.has_chart = self.chart is not None and self.height <= height
        if self.chart is not None and not self.has_chart:
            side.remove(self.chart)
            self.arrange(DOWN, buff=0.25, aligned_edge=LEFT)
        if self.height > height:
            self.bars.keep_rows(2)
            row.arrange(RIGHT, buff=0.4, aligned_edge=UP)
            self.arrange(DOWN, buff=0.2, aligned_edge=LEFT)

    def _lay_out_below(self, height: float) -> None:
        self.add(self.heading, self.bars, self.counters, *([self.chart] if self.chart else []))
        self.arrange(DOWN, buff=0.28, aligned_edge=LEFT)
        self.has_chart = self.chart is not None and self.height <= height
        if self.chart is not None and not self.has_chart:
            self.remove(self.chart)  # a short room: the counters say enough
        if self.height > height:
            self.bars.keep_rows(2)
            self.arrange(DOWN, buff=0.2, aligned_edge=LEFT)
        if self.height > height:  # keep only the answer's rank
            self.counter_rows.remove(*self.counter_rows[1:])
            self.counter_values.remove(*self.counter_values[1:])
            self.arrange(DOWN, buff=0.2, aligned_edge=LEFT)

    @staticmethod
    def _value_width() -> float:
        """Width of the bars' value column (as :class:`ProbBars` reserves it)."""
        return label("0.00", style.MIN_TEXT, font=style.MONO).width + 0.12

    # --- readings --------------------------------------------------------------------
    def top(self, layer: int | None, k: int) -> tuple[list[str], np.ndarray, list]:
        """The lens's top ``k`` after ``layer`` (``None``: embedding) at this position.

        Returns:
            Token texts ``[k]``, probabilities ``[k]`` (``trace.lens.top_probs``) and
            text colours ``[k]``.

        """
        row = self.trace.lens_row(layer)
        ids = self.trace.lens.top_ids[row, self.position, :k]
        texts = [self.view.vocab_text(i) for i in ids]
        colors = [self.theme.foreground] * k
        return texts, self.trace.lens.top_probs[row, self.position, :k], colors

    def counter_values_at(self, layer: int | None) -> tuple[int, float, float]:
        """The counters after ``layer`` (``None``: embedding).

        Returns:
            The answer's rank (1 = top), the lens entropy in bits and the residual
            stream's norm (at ``{layer}_post``, or ``embed``).

        """
        trace, p = self.trace, self.position
        row = trace.lens_row(layer)
        rank = int(trace.lens.final_token_rank[row, p]) + 1
        bits = float(trace.lens.entropy[row, p]) / LN2
        norm = float(trace.resid.norm[0 if layer is None else trace.resid_post(layer), p])
        return rank, bits, norm

    # --- parts -----------------------------------------------------------------------
    def _counters(self) -> VGroup:
        theme = self.theme
        names = [f"rank of {shown(self.answer_text)}", "entropy, bits", "‖resid‖"]
        rows = VGroup(
            *[label(n, style.MIN_TEXT, theme.muted, max_width=self.room_width - 1.6) for n in names]
        ).arrange(DOWN, buff=0.14, aligned_edge=LEFT)
        self.counter_rows = rows
        self.counter_values = VGroup(*[Number("0", style.MIN_TEXT) for _ in names])
        group = VGroup(rows, self.counter_values)
        self.set_counters(None)
        return group

    def set_counters(self, layer: int | None) -> LensReadout:
        """Show the counters after ``layer`` (``None``: embedding), at once.

        The values are cached glyph numbers (:func:`mechviz.visual.text.number`),
        cheap to swap on every step.

        Returns:
            The readout itself.

        """
        theme = self.theme
        rank, bits, norm = self.counter_values_at(layer)
        texts = [f"{rank:,}", f"{bits:.1f}", f"{norm:.0f}"]
        colors = [theme.highlight if rank == 1 else theme.foreground] + [theme.foreground] * 2
        right = self.counter_rows.get_right()[0]
        for i, (text, color) in enumerate(list(zip(texts, colors))[: len(self.counter_rows)]):
            value = number(text, style.MIN_TEXT, color)  # cached glyphs: cheap per step
            value.move_to(self.counter_rows[i], aligned_edge=DOWN)
            value.set_x(right + 0.3 + value.width / 2)
            self.counter_values.submobjects[i] = value
        return self

    def _chart(self, width: float | None) -> VGroup:
        theme = self.theme
        width = width or min(self.room_width, 5.2)
        self.chart_box = Rectangle(
            width=width, height=0.8, stroke_color=theme.faint, stroke_width=1.5
        )
        title = label(
            f"p({shown(self.answer_text)}) by layer", style.MIN_TEXT, theme.muted, max_width=width
        )
        title.next_to(self.chart_box, UP, buff=0.1, aligned_edge=LEFT)
        self.chart_line = VMobject(stroke_color=theme.highlight, stroke_width=4)
        self.chart_line.set_points_as_corners([self.chart_point(None)] * 2)
        return VGroup(title, self.chart_box, self.chart_line)

    def chart_point(self, layer: int | None) -> np.ndarray:
        """Scene point of p(answer) after ``layer`` on the chart (``None``: embedding), ``[3]``."""
        trace, box = self.trace, self.chart_box
        row = trace.lens_row(layer)
        x = box.get_left()[0] + box.width * row / trace.n_layers
        prob = float(trace.lens.final_token_prob[row, self.position])
        return np.array([x, box.get_bottom()[1] + box.height * prob, 0.0])

    # --- animation -------------------------------------------------------------------
    def step_to(self, layer: int | None) -> list[Animation]:
        """Move the readout to ``layer`` (``None``: embedding); play what it returns.

        The heading and counters change at once; the bars morph
        (:class:`MorphBars`) and the chart's line grows to ``layer`` during the
        animations.

        Returns:
            The animations to play together.

        """
        k = len(self.bars.rows)
        texts, probs, colors = self.top(layer, k)
        if layer is None:
            heading = label("embedding", style.BODY_TEXT, self.theme.foreground)
        else:
            heading = numbered("after layer", str(layer), style.BODY_TEXT, self.theme.foreground)
        heading.move_to(self.heading, aligned_edge=LEFT)
        self.submobjects[self.submobjects.index(self.heading)] = heading
        self.heading = heading
        self.layer = layer
        self.set_counters(layer)
        anims: list[Animation] = [MorphBars(self.bars, texts, probs, colors)]
        if self.has_chart:
            last = -1 if layer is None else layer
            points = [self.chart_point(None)] + [self.chart_point(i) for i in range(last + 1)]
            if len(points) == 1:
                points = points * 2
            line = VMobject(stroke_color=self.theme.highlight, stroke_width=4)
            line.set_points_as_corners(points)
            anims.append(self.chart_line.animate.become(line).build())
        return anims

    def answer_tick(self, layer: int) -> Line | None:
        """A tick on the chart at ``layer`` (where the answer becomes top-1), or ``None``.

        Returns:
            A highlight-coloured line from the chart's bottom to just above the
            point of p(answer) after ``layer``; ``None`` without a chart.

        """
        if not self.has_chart:
            return None
        point = self.chart_point(layer)
        return Line(
            point + DOWN * (point[1] - self.chart_box.get_bottom()[1]),
            point + UP * 0.12,
            stroke_width=3,
            color=self.theme.highlight,
        )

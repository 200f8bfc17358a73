"""The logit-lens readout at one position, stepping layer by layer (or half a layer).

:class:`LensReadout` shows what the logit lens reads from the residual stream
at one position after a given layer: a heading ("embedding", "after layer N"),
the top-k next tokens as :class:`~mechviz.visual.mobjects.ProbBars`, counters
(the final answer's rank, the lens entropy in bits, the stream's norm) and the
answer's probability by layer as a small chart. ``step_to(layer)`` returns the
animations to the next layer: halfway through them the heading, bars, counters
and chart change together (one state, never two steps in one frame). A trace
with ``lens_mid`` also reads each layer halfway, after its attention and before
its MLP: ``step_to(layer, mid=True)``, headed
"layer N · after attention" (and "layer N · after MLP" for the layer's end).
Every number is read from the trace (``trace.lens``, ``trace.lens_mid``,
``trace.resid.norm``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, Animation, Line, Rectangle, VGroup, VMobject

from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.schema import Lens, MidLens, Trace
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.mobjects import ProbBars, SwitchAt
from mechviz.visual.style import Theme
from mechviz.visual.text import Number, baseline, label, measure, number, numbered, paragraph

__all__ = ["LensReadout", "answer_step", "lens_steps", "step_name"]

LN2 = float(np.log(2.0))
MIN_CHART = 1.8  # narrowest p(answer) chart beside the counters (scene units)
BESIDE_WIDTH = 6.6  # a room at least this wide puts the counters and chart beside the bars
MIN_BAR = 0.8  # ...if the bars are at least this long there (scene units)
NAME_WIDTH = 1.7  # the token names' column of the bars

Step = tuple[int | None, bool]  # (layer, mid): (None, False) is the embedding


def lens_steps(trace: Trace, half: bool | None = None) -> list[Step]:
    """The lens readings in stream order: the embedding, then each layer's (mid,) post.

    Args:
        trace: The trace.
        half: Read each layer after its attention too (default: when the trace
            has ``lens_mid``).

    Returns:
        ``(layer, mid)`` pairs: ``(None, False)`` is the embedding, ``(l, True)``
        layer ``l`` after attention (``{l}_mid``), ``(l, False)`` after its MLP.

    """
    half = trace.lens_mid is not None if half is None else half
    if half and trace.lens_mid is None:
        raise MechvizError("This trace has no lens_mid: trace it again to read half-layers.")
    steps: list[Step] = [(None, False)]
    for layer in range(trace.n_layers):
        steps += [(layer, True), (layer, False)] if half else [(layer, False)]
    return steps


def answer_step(trace: Trace, position: int = -1, half: bool | None = None) -> Step:
    """The first lens step from which the final answer is top-1 at every later step.

    Like :func:`mechviz.analyses.readouts.answer_row`, at the finer grain of
    :func:`lens_steps` when the trace has ``lens_mid``: a layer whose attention
    made the answer top-1 gives ``(layer, True)``.
    """
    steps = lens_steps(trace, half)
    top1 = [_rank(trace, layer, mid, position) == 0 for layer, mid in steps]
    i = len(steps) - 1  # the last layer's lens is the model's output: always top-1
    while i > 0 and top1[i - 1]:
        i -= 1
    return steps[i]


def step_name(layer: int | None, mid: bool, half: bool = True) -> str:
    """A step's name: "layer N · after attention" or "· after MLP", or "embedding".

    With ``half=False`` a layer's end is "after layer N".
    """
    if layer is None:
        return "embedding"
    if not half:
        return f"after layer {layer}"
    return f"layer {layer} · after {'attention' if mid else 'MLP'}"


def _lens(trace: Trace, mid: bool) -> Lens | MidLens:
    if not mid:
        return trace.lens
    if trace.lens_mid is None:
        raise MechvizError("This trace has no lens_mid: trace it again to read half-layers.")
    return trace.lens_mid


def _row(trace: Trace, layer: int | None, mid: bool) -> int:
    """Row of ``lens_mid`` (``mid``) or ``lens`` for the step."""
    if mid and layer is None:
        raise ValueError("the embedding has no mid step")
    return int(layer) if mid else trace.lens_row(layer)


def _rank(trace: Trace, layer: int | None, mid: bool, position: int) -> int:
    return int(_lens(trace, mid).final_token_rank[_row(trace, layer, mid), position])


class LensReadout(VGroup):
    """The logit lens at one position: heading, top-k bars, counters and p(answer) by layer.

    The answer is the model's own top-1 next token at the position
    (``trace.output.top_ids[position, 0]``; at the last position, ``trace.prediction``).
    Built showing the embedding; :meth:`step_to` moves it to a layer, or with
    ``mid=True`` to a layer's middle (after its attention, from ``trace.lens_mid``).

    Attributes:
        position: The prompt position read (non-negative).
        answer_id: Vocabulary id of the answer.
        answer_text: The answer's readable text.
        layer: The layer shown now (``None``: the embedding).
        mid: Whether it is shown after its attention only (``lens_mid``).
        half: Whether the readout steps by half-layers (the heading says which half).
        heading: "embedding", "after layer N" or, by half-layers, "layer N · after
            attention" / "layer N · after MLP" (replaced on every step).
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
        half: bool | None = None,
    ) -> None:
        super().__init__()
        self.view, self.trace, self.theme = view, view.trace, view.theme
        trace, theme = self.trace, self.theme
        self.position = int(position) % trace.n_positions
        self.answer_id = int(trace.output.top_ids[self.position, 0])
        self.answer_text = view.vocab_text(self.answer_id)
        self.layer: int | None = None
        self.mid = False
        self.half = len(lens_steps(trace, half)) > trace.n_layers + 1
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
        half: bool | None = None,
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
            half: Step by half-layers, headed "layer N · after attention" / "after MLP"
                (default: when the trace has ``lens_mid``).

        Returns:
            The block, centred on the origin. A short room drops the chart, then
            bars down to 2, then all counters but the rank.

        """
        w, h = room(width, height)
        view = TraceView.of(trace, theme)
        return cls(view, position, w, h, k=k, chart=chart, beside=beside, half=half)

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
            self.remove(self.chart)
            self._chart_beside_counters(height)  # else a short room: the counters say enough
        if self.height > height:
            self.bars.keep_rows(2)
            self.arrange(DOWN, buff=0.2, aligned_edge=LEFT)
        if self.height > height:  # keep only the answer's rank
            self.counter_rows.remove(*self.counter_rows[1:])
            self.counter_values.remove(*self.counter_values[1:])
            self.arrange(DOWN, buff=0.2, aligned_edge=LEFT)

    def _chart_beside_counters(self, height: float) -> None:
        """Put the chart right of the counters, when it keeps 1.8 units of width there."""
        chart_w = self.room_width - self.counters.width - 0.45
        if chart_w < MIN_CHART:
            self.chart = None
            return
        self.chart = self._chart(min(chart_w, 5.2))
        self.chart.next_to(self.counters, RIGHT, buff=0.45).align_to(self.counters, UP)
        self.add(self.chart)
        self.has_chart = self.height <= height + 1e-6
        if not self.has_chart:
            self.remove(self.chart)
            self.chart = None

    @staticmethod
    def _value_width() -> float:
        """Width of the bars' value column (as :class:`ProbBars` reserves it)."""
        return label("0.00", style.MIN_TEXT, font=style.MONO).width + 0.12

    # --- readings --------------------------------------------------------------------
    def top(
        self, layer: int | None, k: int, mid: bool = False
    ) -> tuple[list[str], np.ndarray, list]:
        """The lens's top ``k`` after ``layer`` (``None``: embedding) at this position.

        Args:
            layer: The layer (``None``: the embedding).
            k: How many tokens.
            mid: Read ``layer`` after its attention (``trace.lens_mid``).

        Returns:
            Token texts ``[k]``, probabilities ``[k]`` (``top_probs`` of ``trace.lens``
            or ``trace.lens_mid``) and text colours ``[k]``.

        """
        lens, row = _lens(self.trace, mid), _row(self.trace, layer, mid)
        ids = lens.top_ids[row, self.position, :k]
        texts = [self.view.vocab_text(i) for i in ids]
        colors = [self.theme.foreground] * k
        return texts, lens.top_probs[row, self.position, :k], colors

    def counter_values_at(self, layer: int | None, mid: bool = False) -> tuple[int, float, float]:
        """The counters after ``layer`` (``None``: embedding; ``mid``: after its attention).

        Returns:
            The answer's rank (1 = top), the lens entropy in bits and the residual
            stream's norm (at ``{layer}_post``, ``{layer}_mid`` or ``embed``).

        """
        trace, p = self.trace, self.position
        lens, row = _lens(trace, mid), _row(trace, layer, mid)
        rank = int(lens.final_token_rank[row, p]) + 1
        bits = float(lens.entropy[row, p]) / LN2
        if layer is None:
            boundary = 0
        else:
            boundary = trace.resid_mid(layer) if mid else trace.resid_post(layer)
        norm = float(trace.resid.norm[boundary, p])
        return rank, bits, norm

    # --- parts -----------------------------------------------------------------------
    def _counters(self) -> VGroup:
        theme = self.theme
        # The room the values need is the widest any step shows (a norm of 35,988 on
        # Gemma), kept by an invisible line: a later value never leaves the room.
        widest = max(
            number(text, style.MIN_TEXT).width
            for step in lens_steps(self.trace, self.half)
            for text in self._counter_texts(*step)
        )
        # A narrow room says less, never a cut word: the answer's name goes first.
        fit = self.room_width - widest - 0.35
        for names in (
            [f"rank of {shown(self.answer_text)}", "entropy, bits", "‖resid‖"],
            ["answer's rank", "entropy, bits", "‖resid‖"],
            ["rank", "bits", "‖resid‖"],
        ):
            if max(measure(n, style.MIN_TEXT) for n in names) <= fit:
                break
        rows = VGroup(
            *[label(n, style.MIN_TEXT, theme.muted, max_width=max(fit, 0.5)) for n in names]
        ).arrange(DOWN, buff=0.14, aligned_edge=LEFT)
        self.counter_rows = rows
        self.counter_values = VGroup(*[Number("0", style.MIN_TEXT) for _ in names])
        right = rows.get_right()[0] + 0.3
        y = rows[0].get_bottom()[1]  # on the first row: it stays when the others go
        self.counter_room = Line([right, y, 0], [right + widest, y, 0]).set_stroke(
            opacity=0.0, width=0
        )
        group = VGroup(rows, self.counter_values, self.counter_room)
        self.set_counters(None)
        return group

    def _counter_texts(self, layer: int | None, mid: bool = False) -> list[str]:
        rank, bits, norm = self.counter_values_at(layer, mid)
        return [f"{rank:,}", f"{bits:.1f}", f"{norm:.0f}"]

    def set_counters(self, layer: int | None, mid: bool = False) -> LensReadout:
        """Show the counters after ``layer`` (``None``: embedding; ``mid``: its attention).

        The values are cached glyph numbers (:func:`mechviz.visual.text.number`),
        cheap to swap on every step.

        Returns:
            The readout itself.

        """
        theme = self.theme
        rank = self.counter_values_at(layer, mid)[0]
        texts = self._counter_texts(layer, mid)
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
        title = paragraph(
            f"p({shown(self.answer_text)}) by layer",
            style.MIN_TEXT,
            theme.muted,
            max_width=width,
            max_lines=2,
        )
        title.next_to(self.chart_box, UP, buff=0.1, aligned_edge=LEFT)
        self.chart_line = VMobject(stroke_color=theme.highlight, stroke_width=4)
        self.chart_line.set_points_as_corners([self.chart_point(None)] * 2)
        return VGroup(title, self.chart_box, self.chart_line)

    def chart_point(self, layer: int | None, mid: bool = False) -> np.ndarray:
        """Scene point of p(answer) after ``layer`` on the chart, ``[3]``.

        ``None`` is the embedding (the left edge); ``mid`` reads the layer after
        its attention, half a layer left of its end.
        """
        trace, box = self.trace, self.chart_box
        lens, row = _lens(trace, mid), _row(trace, layer, mid)
        depth = 0.0 if layer is None else layer + (0.5 if mid else 1.0)
        x = box.get_left()[0] + box.width * depth / trace.n_layers
        prob = float(lens.final_token_prob[row, self.position])
        return np.array([x, box.get_bottom()[1] + box.height * prob, 0.0])

    # --- animation -------------------------------------------------------------------
    def set_step(self, layer: int | None, mid: bool = False) -> LensReadout:
        """Show the reading after ``layer`` (``None``: embedding; ``mid``: after its attention).

        Every part changes at once (heading, bars and their tokens and values,
        counters, the chart's line), so no frame shows two steps together.

        Returns:
            The readout itself.

        """
        if mid and not self.half:
            raise MechvizError("This readout steps by whole layers; build it with half=True.")
        k = len(self.bars.rows)
        texts, probs, colors = self.top(layer, k, mid)
        heading = self._heading(layer, mid)
        heading.move_to(self.heading, aligned_edge=LEFT)
        self.submobjects[self.submobjects.index(self.heading)] = heading
        self.heading = heading
        self.layer, self.mid = layer, mid
        self.set_counters(layer, mid)
        self.bars.set_values(texts, probs, colors)
        self.bars.texts, self.bars.colors = list(texts), colors
        if self.has_chart:
            steps = lens_steps(self.trace, self.half)
            points = [self.chart_point(*s) for s in steps[: steps.index((layer, mid)) + 1]]
            self.chart_line.set_points_as_corners(points * 2 if len(points) == 1 else points)
        return self

    def step_to(self, layer: int | None, mid: bool = False, at: float = 0.5) -> list[Animation]:
        """Move the readout to ``layer`` (``None``: embedding); play what it returns.

        The readout is one state: it shows the step it was at until ``at`` of the
        animation (a share of its run time), then the new step, every part on
        the same frame (:meth:`set_step`). A value between two readings is never
        drawn: it was never recorded. ``mid`` stops halfway through the layer,
        after its attention (``trace.lens_mid``; the readout must step by half-layers).

        Returns:
            The animations to play together.

        """
        if mid and not self.half:
            raise MechvizError("This readout steps by whole layers; build it with half=True.")
        return [SwitchAt(self, lambda: self.set_step(layer, mid), at)]

    def answer_tick(self, layer: int | None, mid: bool = False) -> Line | None:
        """A tick on the chart at ``layer`` (where the answer becomes top-1), or ``None``.

        Returns:
            A highlight-coloured line from the chart's bottom to just above the
            point of p(answer) after ``layer`` (``mid``: after its attention);
            ``None`` without a chart.

        """
        if not self.has_chart:
            return None
        point = self.chart_point(layer, mid)
        return Line(
            point + DOWN * (point[1] - self.chart_box.get_bottom()[1]),
            point + UP * 0.12,
            stroke_width=3,
            color=self.theme.highlight,
        )

    def _heading(self, layer: int | None, mid: bool) -> VGroup:
        """The heading for a step: digits from glyphs, the words cached (cheap per step)."""
        color = self.theme.foreground
        if layer is None:
            return label("embedding", style.BODY_TEXT, color)
        if not self.half:
            return numbered("after layer", str(layer), style.BODY_TEXT, color)
        head = numbered("layer", str(layer), style.BODY_TEXT, color)
        room = self.room_width - head.width - 0.2
        rest = label(
            f"· after {'attention' if mid else 'MLP'}", style.BODY_TEXT, color, max_width=room
        )
        rest.next_to(head, RIGHT, buff=0.2)
        rest.shift(np.array([0.0, baseline(head[0]) - baseline(rest), 0.0]))
        group = VGroup(head, rest)
        group.text = step_name(layer, mid)
        return group

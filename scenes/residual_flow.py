"""ResidualFlow: the residual stream rises through every layer; the lens reads it."""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    Group,
    Line,
    Rectangle,
    VGroup,
    VMobject,
)

from mechviz.readouts import answer_row
from mechviz.tokens import shown
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.mobjects import MorphBars, ProbBars, grid_image
from mechviz.visual.text import Number, center_on, label, numbered
from mechviz.visual.text import number as cached_number

WRITE_COLS = 28  # pixels of the write-size bars beside each stream
GAP_COLS = 4
LN2 = float(np.log(2.0))


class ResidualFlow(TraceScene):
    """Each position's stream rises layer by layer; attention and MLP add their writes."""

    beats = {
        "streams": "one residual stream per token, max-pooled, with its attention and MLP writes",
        "rise": "layer by layer: the streams fill in, the logit lens at the last token follows",
        "prediction": "where the answer appears, and where the blocks write most",
    }
    n_bars = 4  # tokens in the readout
    slow_layers = 3  # layers at each end shown one at a time; the middle fast-forwards
    slow_time = 0.6
    fast_time = 0.12
    min_column = 0.42  # narrowest stream column: room for a turned token label

    def construct(self) -> None:
        self.show_title("The residual stream, layer by layer")
        with self.beat("streams"):
            self.show_streams()
        with self.beat("rise"):
            self.rise()
        with self.beat("prediction"):
            self.show_prediction()

    # --- beats ------------------------------------------------------------------------
    def show_streams(self) -> None:
        trace = self.trace
        shown_n = self.n_columns()
        left_out = trace.n_positions - shown_n
        cut = f" (last {shown_n} of {trace.n_positions} tokens)" if left_out else ""
        self.caption(
            f"Each token's stream{cut}: {trace.model.d_model} numbers, max-pooled "
            "(blue < 0 < red). Attention and MLP add to it."
        )
        self.panel, self.readout_box = self.get_panels()
        self.positions = list(range(trace.n_positions - shown_n, trace.n_positions))
        self.stream_box = self.get_stream_box()
        streams = self.get_streams()
        self.cover = Rectangle(
            width=self.stream_box.width + 0.1,
            height=self.stream_box.height + 0.04,
            stroke_width=0,
            fill_color=self.theme.background,
            fill_opacity=1.0,
        ).move_to(self.stream_box.center)
        if self.settings.transparent:
            self.cover.set_fill(opacity=0.0)
        self.tokens = self.get_token_labels()
        self.axis = self.get_layer_axis()
        self.legend = self.get_legend()
        self.add(streams, self.cover)
        self.streams = streams
        self.play(FadeIn(self.tokens), FadeIn(self.axis), FadeIn(self.legend), run_time=0.6)
        # The whole picture first; the next beat builds it again layer by layer.
        self.play(self.cover.animate.stretch_to_fit_height(0.001, about_edge=UP), run_time=0.8)
        self.wait(0.6)

    def rise(self) -> None:
        """Reveal the streams layer by layer; the readout follows the last position."""
        trace = self.trace
        L = trace.n_layers
        last = shown(self.token_texts[-1])
        self.caption(
            f"The logit lens at {last}, layer by layer: the top {self.n_bars} next tokens "
            "and the final answer's rank."
        )
        self.readout = self.get_readout()
        height = self.stream_box.y1 - self._y_of(None)  # back to the embedding row
        self.play(
            FadeIn(self.readout),
            self.cover.animate.stretch_to_fit_height(height, about_edge=UP),
            run_time=0.5,
        )
        self.marker = Line(
            [self.stream_box.x0 - 0.05, self._y_of(None), 0],
            [self.stream_box.x1 + 0.05, self._y_of(None), 0],
            stroke_width=2,
            color=self.theme.foreground,
        )
        self.add(self.marker)
        self.answer_mark = None
        for layer in range(L):
            slow = layer < self.slow_layers or layer >= L - self.slow_layers
            y = self._y_of(layer)
            self.play(
                self.cover.animate.stretch_to_fit_height(
                    max(self.stream_box.y1 - y, 0.001), about_edge=UP
                ),
                self.marker.animate.set_y(y),
                *self.step_readout(layer),
                run_time=self.slow_time if slow else self.fast_time,
            )
            if self.answer_mark is None and trace.lens_row(layer) == answer_row(trace):
                self.answer_mark = self.get_answer_mark(layer)
                self.play(FadeIn(self.answer_mark), run_time=0.5)
        self.remove(self.cover)

    def show_prediction(self) -> None:
        trace = self.trace
        token, prob = trace.prediction
        row = answer_row(trace)
        where = "the embedding" if row == 0 else f"layer {row - 1}"
        marks, note = self.get_write_marks()
        self.caption(
            f"{shown(self.vocab_text(token))} ({prob:.2f}) is top-1 from {where} on. {note}"
        )
        self.play(FadeIn(marks), run_time=0.6)

    # --- layout -----------------------------------------------------------------------
    def n_columns(self) -> int:
        """Stream columns that fit with a readable token label each (the last ones)."""
        width = self.content.width if self.stacked else self.content.width * 0.55
        return max(1, min(self.trace.n_positions, int((width - 1.0) // self.min_column)))

    @property
    def stacked(self) -> bool:
        """Streams above the readout (portrait and square frames), else side by side."""
        return self.frame.width < 1.3 * self.frame.height  # 1:1 included: too narrow side by side

    def get_panels(self) -> tuple[Box, Box]:
        """The streams' panel and the readout's: side by side, or stacked on portrait."""
        if self.stacked:
            top, bottom = self.content.split("y", 0.5, gap=0.35)
            return top, bottom
        return self.content.split("x", 0.56, gap=0.4)

    def get_stream_box(self) -> Box:
        """Where the stream images go: the panel less the axis, legend and token labels."""
        p = self.panel
        return Box(p.x0 + 0.75, p.x1, p.y0 + self.label_height(), p.y1 - 0.5)

    def label_height(self) -> float:
        texts = [shown(self.token_texts[i]) for i in range(self.trace.n_positions)]
        longest = max(label(t, style.MIN_TEXT).width for t in texts[-self.n_columns() :])
        column = (self.panel.width - 0.75) / self.n_columns()  # before stream_box exists
        return 0.5 if longest <= column * 0.95 else min(1.6, longest + 0.2)

    def _x_of(self, i: int) -> float:
        box = self.stream_box
        return box.x0 + box.width * (i + 0.5) / len(self.positions)

    def _y_of(self, layer: int | None) -> float:
        """Scene y of the top edge of a layer's ``{l}_post`` row (``None``: embed)."""
        box = self.stream_box
        B = len(self.trace.resid.labels)
        row = 0 if layer is None else 2 * layer + 2
        return box.y0 + box.height * (row + 1) / B

    # --- builders ---------------------------------------------------------------------
    def get_streams(self) -> Group:
        """One image per position: pooled stream rows, then write-size bars."""
        trace, theme = self.trace, self.theme
        pooled = trace.resid.pooled  # [B, P, R]
        attn, mlp = trace.blocks.attn_out_norm, trace.blocks.mlp_out_norm  # [L, P]
        # Writes at the first token often dwarf the rest: scale bars to the 95th
        # percentile of the other positions and clip, as the legend says.
        rest = np.concatenate([attn[:, 1:].ravel(), mlp[:, 1:].ravel()])
        top = float(np.quantile(rest if rest.size else attn.ravel(), 0.95)) or 1.0
        box = self.stream_box
        width = box.width / len(self.positions) * 0.84
        bg = (theme.rgb(theme.background) * 255).astype(np.uint8)
        streams = Group()
        for i, p in enumerate(self.positions):
            values = pooled[:, p]
            rows = style.diverging_rgb(values, style.robust_scale(values), theme)  # [B, R, 3]
            bars = np.zeros((len(values), WRITE_COLS, 3), np.uint8) + bg
            for layer in range(trace.n_layers):
                for b, norm, color in (
                    (2 * layer + 1, attn[layer, p], theme.attention),
                    (2 * layer + 2, mlp[layer, p], theme.mlp),
                ):
                    n = min(WRITE_COLS, int(round(WRITE_COLS * float(norm) / top)))
                    bars[b, :n] = theme.rgb(color) * 255
            gap = np.zeros((len(values), GAP_COLS, 3), np.uint8) + bg
            image = grid_image(np.concatenate([rows, gap, bars], axis=1)[::-1], width, box.height)
            streams.add(image.move_to([self._x_of(i), box.center[1], 0]))
        return streams

    def get_token_labels(self) -> VGroup:
        """A label under each stream: upright when it fits the column, else turned 90°."""
        texts = [shown(self.token_texts[p]) for p in self.positions]
        column = self.stream_box.width / len(self.positions)
        upright = all(label(t, style.MIN_TEXT).width <= column * 0.95 for t in texts)
        labels = VGroup()
        for i, (p, text) in enumerate(zip(self.positions, texts)):
            color = self.token_colors(self.trace.tokens.ids[p])
            if upright:
                mob = label(text, style.MIN_TEXT, color)
                center_on(mob, [self._x_of(i), self.stream_box.y0 - 0.25, 0])
            else:
                mob = label(text, style.MIN_TEXT, color, max_width=self.label_height() - 0.15)
                mob.rotate(np.pi / 2)
                mob.move_to([self._x_of(i), self.stream_box.y0 - 0.1, 0], aligned_edge=UP)
            labels.add(mob)
        return labels

    def get_layer_axis(self) -> VGroup:
        L = self.trace.n_layers
        x = self.stream_box.x0 - 0.3
        spacing = self.stream_box.height / L
        step = max(1, int(np.ceil(0.4 / spacing)))
        step = next(s for s in (1, 2, 5, 10, 20, 50, 100) if s >= step)
        axis = VGroup()
        for layer in range(0, L, step):
            y = self._y_of(layer) - spacing / 2
            axis.add(center_on(label(str(layer), style.MIN_TEXT, self.theme.muted), [x, y, 0]))
        return axis

    def get_legend(self) -> VGroup:
        """Swatches for the two kinds of write, above the streams."""
        items = VGroup()
        for color, text in (
            (self.theme.attention, "attention write"),
            (self.theme.mlp, "MLP write"),
        ):
            swatch = Rectangle(
                width=0.35, height=0.2, stroke_width=0, fill_color=color, fill_opacity=1
            )
            items.add(
                VGroup(swatch, label(text, style.MIN_TEXT, self.theme.muted)).arrange(
                    RIGHT, buff=0.12
                )
            )
        items.arrange(RIGHT, buff=0.4)
        box = self.stream_box
        return items.move_to([box.center[0], box.y1 + 0.3, 0])

    def get_readout(self) -> VGroup:
        """Heading, top-k bars, counters and the answer's probability by layer."""
        trace, theme, box = self.trace, self.theme, self.readout_box
        token, _ = trace.prediction
        self.answer_text = self.vocab_text(token)
        k = min(self.n_bars, trace.lens.top_ids.shape[-1])
        # A wide, short panel (stacked frames) puts the counters beside the bars.
        beside = self.stacked and box.width >= 6.6
        self.counters = self.get_counters()
        side_w = max(self.counters.width, 2.2)
        width = box.width - side_w - 0.45 if beside else min(box.width, 6.0)
        self.when = label("embedding", style.BODY_TEXT, theme.foreground)
        texts, probs, colors = self.lens_top(None, k)
        self.bars = ProbBars(
            texts,
            probs,
            theme,
            bar_width=width - 2.6,
            name_width=1.7,
            row_height=0.46,
            colors=colors,
            highlight=lambda t: t == self.answer_text,
        )
        self.chart = self.get_chart(side_w if beside else None)
        if beside:
            side = VGroup(self.counters, self.chart).arrange(DOWN, buff=0.25, aligned_edge=LEFT)
            row = VGroup(self.bars, side).arrange(RIGHT, buff=0.4, aligned_edge=UP)
            parts = VGroup(self.when, row).arrange(DOWN, buff=0.25, aligned_edge=LEFT)
            self.has_chart = parts.height <= box.height
            if not self.has_chart:
                side.remove(self.chart)
                parts.arrange(DOWN, buff=0.25, aligned_edge=LEFT)
            if parts.height > box.height:
                self.bars.keep_rows(2)
                row.arrange(RIGHT, buff=0.4, aligned_edge=UP)
                parts.arrange(DOWN, buff=0.2, aligned_edge=LEFT)
            parts.move_to([box.center[0], box.y1 - 0.05 - parts.height / 2, 0])
            return parts
        parts = VGroup(self.when, self.bars, self.counters, self.chart)
        parts.arrange(DOWN, buff=0.28, aligned_edge=LEFT)
        self.has_chart = parts.height <= box.height
        if not self.has_chart:  # a short panel (square frames): the counters say enough
            parts.remove(self.chart)
        if parts.height > box.height:
            self.bars.keep_rows(2)
            parts.arrange(DOWN, buff=0.2, aligned_edge=LEFT)
        if parts.height > box.height:  # keep only the answer's rank
            self.counter_rows.remove(*self.counter_rows[1:])
            self.counter_values.remove(*self.counter_values[1:])
            parts.arrange(DOWN, buff=0.2, aligned_edge=LEFT)
        top = box.y1 - 0.05
        parts.move_to([box.center[0], top - parts.height / 2, 0])
        return parts

    def lens_top(self, layer: int | None, k: int) -> tuple[list[str], np.ndarray, list]:
        trace = self.trace
        row, p = trace.lens_row(layer), trace.n_positions - 1
        ids = trace.lens.top_ids[row, p, :k]
        texts = [self.vocab_text(i) for i in ids]
        colors = [self.theme.foreground] * k
        return texts, trace.lens.top_probs[row, p, :k], colors

    def get_counters(self) -> VGroup:
        """Live counters: the answer's rank, the lens entropy and the stream's norm."""
        theme = self.theme
        names = [f"rank of {shown(self.answer_text)}", "entropy, bits", "‖resid‖"]
        rows = VGroup(
            *[
                label(n, style.MIN_TEXT, theme.muted, max_width=self.readout_box.width - 1.6)
                for n in names
            ]
        ).arrange(DOWN, buff=0.14, aligned_edge=LEFT)
        self.counter_x = rows.get_right()[0] + 0.3
        self.counter_rows = rows
        values = VGroup(*[Number("0", style.MIN_TEXT) for _ in names])
        group = VGroup(rows, values)
        self.counter_values = values
        self.set_counters(None)
        return group

    def set_counters(self, layer: int | None) -> None:
        trace, theme = self.trace, self.theme
        row, p = trace.lens_row(layer), trace.n_positions - 1
        rank = int(trace.lens.final_token_rank[row, p]) + 1
        bits = float(trace.lens.entropy[row, p]) / LN2
        norm = float(trace.resid.norm[0 if layer is None else trace.resid_post(layer), p])
        texts = [f"{rank:,}", f"{bits:.1f}", f"{norm:.0f}"]
        colors = [
            theme.highlight if rank == 1 else theme.foreground,
            theme.foreground,
            theme.foreground,
        ]
        for i, (text, color) in enumerate(list(zip(texts, colors))[: len(self.counter_rows)]):
            number = cached_number(text, style.MIN_TEXT, color)
            number.move_to(self.counter_rows[i], aligned_edge=DOWN)
            number.set_x(self.counter_rows.get_right()[0] + 0.3 + number.width / 2)
            self.counter_values.submobjects[i] = number

    def get_chart(self, width: float | None = None) -> VGroup:
        """Axes for p(answer) by layer; the line grows as the layers rise."""
        theme = self.theme
        width = width or min(self.readout_box.width, 5.2)
        self.chart_box = Rectangle(
            width=width, height=0.8, stroke_color=theme.faint, stroke_width=1.5
        )
        title = label(
            f"p({shown(self.answer_text)}) by layer", style.MIN_TEXT, theme.muted, max_width=width
        )
        title.next_to(self.chart_box, UP, buff=0.1, aligned_edge=LEFT)
        self.chart_line = VMobject(stroke_color=theme.highlight, stroke_width=4)
        self.chart_line.set_points_as_corners([self._chart_point(None)] * 2)
        return VGroup(title, self.chart_box, self.chart_line)

    def _chart_point(self, layer: int | None) -> np.ndarray:
        trace, box = self.trace, self.chart_box
        row = trace.lens_row(layer)
        x = box.get_left()[0] + box.width * row / trace.n_layers
        prob = float(trace.lens.final_token_prob[row, trace.n_positions - 1])
        return np.array([x, box.get_bottom()[1] + box.height * prob, 0.0])

    def step_readout(self, layer: int) -> list:
        """Animations that move the readout from the previous layer to ``layer``."""
        k = len(self.bars.rows)
        texts, probs, colors = self.lens_top(layer, k)
        when = numbered("after layer", str(layer), style.BODY_TEXT, self.theme.foreground)
        when.move_to(self.when, aligned_edge=LEFT)
        parts = self.readout.submobjects
        parts[parts.index(self.when)] = when
        self.when = when
        self.set_counters(layer)
        points = [self._chart_point(None)] + [self._chart_point(i) for i in range(layer + 1)]
        line = VMobject(stroke_color=self.theme.highlight, stroke_width=4)
        line.set_points_as_corners(points)
        morph = MorphBars(self.bars, texts, probs, colors)
        return [morph, self.chart_line.animate.become(line)] if self.has_chart else [morph]

    def get_answer_mark(self, layer: int) -> VGroup:
        """A line across the streams where the answer becomes top-1 (and stays), and its tag."""
        theme, box = self.theme, self.stream_box
        y = self._y_of(layer)
        line = Line(
            [box.x0 - 0.05, y, 0], [box.x1 + 0.05, y, 0], stroke_width=4, color=theme.highlight
        )
        if not self.has_chart:
            return VGroup(line)
        point = self._chart_point(layer)
        tick = Line(
            point + DOWN * (point[1] - self.chart_box.get_bottom()[1]),
            point + UP * 0.12,
            stroke_width=3,
            color=theme.highlight,
        )
        return VGroup(line, tick)

    def get_write_marks(self) -> tuple[VGroup, str]:
        """Frame the largest attention and MLP write, the first token left out."""
        trace, theme = self.trace, self.theme
        marks = VGroup()
        columns = [i for i, p in enumerate(self.positions) if p > 0]
        if not columns:
            return marks, ""
        for name, values, color in (
            ("attention", trace.blocks.attn_out_norm, theme.attention),
            ("MLP", trace.blocks.mlp_out_norm, theme.mlp),
        ):
            sub = values[:, [self.positions[i] for i in columns]]
            layer, j = np.unravel_index(int(sub.argmax()), sub.shape)
            i = columns[j]
            b = 2 * layer + (1 if name == "attention" else 2)
            B = len(trace.resid.labels)
            box = self.stream_box
            y = box.y0 + box.height * (b + 0.5) / B
            width = box.width / len(self.positions) * 0.84
            frame = Rectangle(
                width=width + 0.08,
                height=max(box.height / B * 3, 0.14),
                stroke_color=color,
                stroke_width=4,
            ).move_to([self._x_of(i), y, 0])
            marks.add(frame)
        after = " after the first token" if self.positions[0] == 0 else ""
        return marks, f"Framed: the largest attention and MLP writes{after}."


__all__ = ["ResidualFlow"]

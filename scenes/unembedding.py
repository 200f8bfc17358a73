"""Unembedding: the last vector becomes next-token odds; then the logit lens table."""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Arrow,
    FadeIn,
    FadeOut,
    GrowFromEdge,
    Rectangle,
    RoundedRectangle,
    SurroundingRectangle,
    VGroup,
    Write,
)

from mechviz.schema import Trace
from mechviz.tokens import shown
from mechviz.visual import style
from mechviz.visual.base import TraceScene
from mechviz.visual.mobjects import ProbBars, TokenBox, grid_image, label


def table_layers(trace: Trace, max_rows: int = 13) -> list[int | None]:
    """Rows of the lens table: the embedding, then layers evenly spaced, always the last."""
    L = trace.n_layers
    picks = np.unique(np.linspace(0, L - 1, min(L, max_rows - 1)).round().astype(int))
    return [None, *[int(x) for x in picks]]


class Unembedding(TraceScene):
    """Final norm and W_U turn the last position's vector into the model's next-token odds."""

    n_bars = 8  # bars in the chart; the trace keeps top_k >= this many, or fewer bars
    max_columns = 8  # positions in the lens table (the last ones); more are unreadable

    def construct(self) -> None:
        self.show_title()
        self.show_pipeline()
        self.show_bars()
        self.show_lens_table()

    def show_title(self) -> None:
        self.title = label("From the last vector to the next token", style.TITLE_SIZE)
        self.title.to_corner(UP + LEFT, buff=0.3)
        self.play(Write(self.title), run_time=0.8)

    def show_pipeline(self) -> None:
        trace = self.trace
        p = trace.n_positions - 1
        last = len(trace.resid.labels) - 1
        values = trace.resid.pooled[last, p]
        strip = grid_image(
            style.diverging_rgb(values, style.robust_scale(values))[:, None, :], 0.35, 3.6
        ).move_to([-6.1, -0.5, 0])
        token = TokenBox(trace.tokens.text[p], style.token_color(p), style.SMALL_SIZE)
        token.next_to(strip, DOWN, buff=0.2)
        name = label(f"resid after\nlayer {trace.n_layers - 1}", style.SMALL_SIZE - 2, style.MUTED)
        name.next_to(strip, UP, buff=0.15)
        steps = VGroup()
        m = trace.model
        for text, note in (
            ("final norm", "its own scale"),
            ("W_U", f"{m.d_model} → {m.d_vocab:,}"),
            ("softmax", "logits → odds"),
        ):
            box = RoundedRectangle(
                corner_radius=0.1, width=1.7, height=1.0, stroke_color=style.MUTED, stroke_width=1.5
            )
            words = VGroup(
                label(text, style.SMALL_SIZE), label(note, style.SMALL_SIZE - 5, style.MUTED)
            ).arrange(DOWN, buff=0.08)
            words.scale_to_fit_width(min(words.width, box.width - 0.2)).move_to(box)
            steps.add(VGroup(box, words))
        steps.arrange(RIGHT, buff=0.4).next_to(strip, RIGHT, buff=0.5)
        arrows = VGroup(
            *[
                Arrow(a.get_right(), b.get_left(), buff=0.05, stroke_width=2, color=style.MUTED)
                for a, b in zip([strip, *steps[:-1]], steps)
            ]
        )
        self.play(FadeIn(strip), FadeIn(token), FadeIn(name), run_time=0.6)
        for step, arrow in zip(steps, arrows):
            self.play(FadeIn(arrow), FadeIn(step), run_time=0.5)
        self.pipeline = VGroup(steps, arrows, token, name)
        self.strip = strip

    def show_bars(self) -> None:
        trace = self.trace
        k = min(self.n_bars, trace.output.top_ids.shape[-1])
        ids, probs = trace.output.top_ids[-1, :k], trace.output.top_probs[-1, :k]
        bars = ProbBars(
            [trace.token_text(i) for i in ids],
            probs,
            bar_width=2.2,
            font_size=style.SMALL_SIZE,
            row_height=0.5,
        )
        bars.next_to(self.pipeline[0], RIGHT, buff=1.1).shift(UP * 0.2)
        if bars.get_right()[0] > 6.8:
            bars.shift(LEFT * (bars.get_right()[0] - 6.8))
        arrow = Arrow(
            self.pipeline[0][-1].get_right(),
            bars.get_left() + LEFT * 0.05,
            buff=0.08,
            stroke_width=2,
            color=style.MUTED,
        )
        heading = label(
            f"next token after {shown(trace.tokens.text[-1])}", style.SMALL_SIZE, style.MUTED
        )
        heading.next_to(bars, UP, buff=0.25)
        self.play(FadeIn(arrow), FadeIn(heading), run_time=0.4)
        self.play(
            *[GrowFromEdge(row[1], LEFT) for row in bars.rows],
            *[FadeIn(row[0]) for row in bars.rows],
            *[FadeIn(row[2]) for row in bars.rows],
            run_time=1.2,
        )
        self.wait(1.2)
        self.chart = VGroup(bars, arrow, heading)

    def show_lens_table(self) -> None:
        """Read every layer the same way: the logit lens, top-1 token per position."""
        self.play(FadeOut(self.chart), FadeOut(self.pipeline), FadeOut(self.strip), run_time=0.5)
        heading = label(
            "The logit lens: the same readout after every layer", style.TEXT_SIZE, style.MUTED
        ).next_to(self.title, DOWN, aligned_edge=LEFT)
        legend = label(
            "top-1 token; cell colour = its probability (dark 0 → yellow 1)",
            style.SMALL_SIZE - 2,
            style.MUTED,
        ).next_to(heading, DOWN, aligned_edge=LEFT)
        self.play(FadeIn(heading), FadeIn(legend), run_time=0.4)
        table, cells = self.get_table()
        self.play(FadeIn(table[0]), run_time=0.4)  # header row
        for row in table[1:]:
            self.play(FadeIn(row, shift=UP * 0.05), run_time=0.25)
        token, prob = self.trace.prediction
        final = cells[-1][-1]
        frame = SurroundingRectangle(final, color=style.HIGHLIGHT, buff=0.03, stroke_width=3)
        note = label(
            f"last layer = the model's output: {shown(self.trace.token_text(token))} ({prob:.2f})",
            style.SMALL_SIZE,
            style.HIGHLIGHT,
        )
        note.scale_to_fit_width(min(note.width, 12)).to_edge(DOWN, buff=0.2)
        self.play(FadeIn(frame), FadeIn(note), run_time=0.6)
        self.wait(1.5)

    def get_table(self) -> tuple[VGroup, list[list[Rectangle]]]:
        trace = self.trace
        first = max(0, trace.n_positions - self.max_columns)
        positions = range(first, trace.n_positions)
        P = len(positions)
        layers = table_layers(trace)
        cell_w = min(2.0, 11.0 / P)
        cell_h = min(0.36, 5.2 / (len(layers) + 1))
        font = style.SMALL_SIZE - 2 if cell_h >= 0.34 else style.SMALL_SIZE - 4
        x0 = -5.6 + 1.0
        y0 = 1.45
        header = VGroup(label("layer", font, style.MUTED).move_to([x0 - 0.6, y0, 0]))
        if first:
            note = label(f"last {P} of {trace.n_positions} positions", font, style.MUTED)
            header.add(note.move_to([x0 + cell_w * P / 2, y0 + 0.4, 0]))
        for c, p in enumerate(positions):
            head = label(shown(trace.tokens.text[p]), font, style.token_color(p))
            head.scale_to_fit_width(min(head.width, cell_w * 0.92))
            header.add(head.move_to([x0 + cell_w * (c + 0.5), y0, 0]))
        rows, cells = [header], []
        for r, layer in enumerate(layers):
            y = y0 - cell_h * (r + 1)
            row = VGroup(
                label("embed" if layer is None else str(layer), font, style.MUTED).move_to(
                    [x0 - 0.6, y, 0]
                )
            )
            row_cells = []
            for c, p in enumerate(positions):
                b = trace.lens_row(layer)
                prob = float(trace.lens.top_probs[b, p, 0])
                box = Rectangle(
                    width=cell_w * 0.96,
                    height=cell_h * 0.9,
                    stroke_width=0,
                    fill_color=style.prob_color(prob),
                    fill_opacity=1.0,
                )
                box.move_to([x0 + cell_w * (c + 0.5), y, 0])
                text = label(
                    shown(trace.token_text(trace.lens.top_ids[b, p, 0])),
                    font,
                    style.BACKGROUND if prob > 0.25 else style.FOREGROUND,
                )
                text.scale_to_fit_width(min(text.width, cell_w * 0.85)).move_to(box)
                row.add(box, text)
                row_cells.append(box)
            rows.append(row)
            cells.append(row_cells)
        return VGroup(*rows), cells


__all__ = ["Unembedding", "table_layers"]

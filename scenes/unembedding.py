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
    Group,
    Line,
    Mobject,
    Rectangle,
    RoundedRectangle,
    SurroundingRectangle,
    VGroup,
)

from mechviz.readouts import answer_row, row_name, table_rows
from mechviz.tokens import shown
from mechviz.visual import style
from mechviz.visual.base import TraceScene
from mechviz.visual.mobjects import MorphBars, ProbBars, TokenBox, grid_image
from mechviz.visual.text import center_on, label

CELL_HEIGHT = 0.46  # a lens-table row: room for MIN_TEXT with a margin
MIN_CELL_WIDTH = 1.55  # a lens-table column: a short token at MIN_TEXT


class Unembedding(TraceScene):
    """Final norm and W_U turn the last position's vector into the model's next-token odds."""

    beats = {
        "pipeline": "the last vector through the final norm, W_U and softmax",
        "bars": "the model's next-token odds as bars",
        "lens": "the logit-lens table: the same readout after every layer",
    }
    n_bars = 6  # bars in the chart (fewer when the frame is short of room)

    def construct(self) -> None:
        self.show_title("From the last vector to the next token")
        with self.beat("pipeline"):
            self.show_pipeline()
        with self.beat("bars"):
            self.show_bars()
        with self.beat("lens"):
            self.show_lens_table()

    # --- beats ------------------------------------------------------------------------
    def show_pipeline(self) -> None:
        m = self.trace.model
        self.caption(
            f"The last vector → final norm → W_U ({m.d_model} → {m.d_vocab:,} logits) → "
            "softmax: the next-token odds."
        )
        self.pipeline = self.get_pipeline()
        for part in self.pipeline:
            self.play(FadeIn(part), run_time=0.45)
        self.wait(0.6)

    def show_bars(self) -> None:
        trace = self.trace
        self.play(
            self.pipeline.animate.scale(0.6).to_edge(LEFT, buff=0.1).set_opacity(0.0), run_time=0.4
        )
        self.remove(self.pipeline)
        token, prob = trace.prediction
        self.caption(
            f"The model's next-token odds after {shown(self.token_texts[-1])}: "
            f"{shown(self.vocab_text(token))} ({prob:.2f}) is its answer."
        )
        k = min(self.n_bars, trace.output.top_ids.shape[-1], int(self.content.height // 0.62))
        ids, probs = trace.output.top_ids[-1, :k], trace.output.top_probs[-1, :k]
        texts = [self.vocab_text(i) for i in ids]
        width = min(self.content.width, 10.0)
        bars = ProbBars(
            texts,
            np.zeros(k),
            self.theme,
            bar_width=width - 3.6,
            name_width=2.2,
            row_height=min(0.62, self.content.height / k),
        )
        bars.move_to(self.content.center)
        self.add(bars)
        self.play(MorphBars(bars, texts, probs), run_time=1.4)
        self.wait(1.0)
        self.chart = bars

    def show_lens_table(self) -> None:
        """Read every layer the same way: the logit lens, top-1 token per position."""
        trace = self.trace
        token, prob = trace.prediction
        rows = self.get_rows()
        self.play(FadeOut(self.chart), run_time=0.4)
        shown_layers = len(rows) - 1
        left_out = trace.n_layers - (shown_layers - (0 in rows))
        skipped = f"; ─ = {left_out} layers left out" if left_out > 0 else ""
        self.caption(
            f"Logit lens: each layer's top-1, shaded by probability{skipped}; "
            f"★ {shown(self.vocab_text(token))} top-1 from here on."
        )
        table, cells = self.get_table(rows)
        self.play(FadeIn(table[0]), run_time=0.4)  # header row
        for row in table[1:]:
            self.play(FadeIn(row), run_time=0.2)
        frame = SurroundingRectangle(
            cells[-1][-1], color=self.theme.highlight, buff=0.03, stroke_width=4
        )
        self.play(FadeIn(frame), run_time=0.5)
        self.table = table

    # --- builders ---------------------------------------------------------------------
    def get_pipeline(self) -> Group:
        """Boxes: the last vector, final norm, W_U, softmax; a row, or a column on portrait."""
        trace, m = self.trace, self.trace.model
        p = trace.n_positions - 1
        values = trace.resid.pooled[-1, p]
        strip = grid_image(
            style.diverging_rgb(values, style.robust_scale(values), self.theme)[None, :, :],
            1.9,
            0.3,
        )
        token = TokenBox(
            self.token_texts[p],
            self.token_colors(trace.tokens.ids[p]),
            style.MIN_TEXT,
            self.theme,
            max_width=2.0,
        )
        first = Group(strip, token.next_to(strip, DOWN, buff=0.15))
        steps = [first]
        for text, note in (
            ("final norm", "its own scale"),
            ("W_U", f"{m.d_model} → {m.d_vocab:,}"),
            ("softmax", "logits → odds"),
        ):
            words = VGroup(
                label(text, style.BODY_TEXT, self.theme.foreground),
                label(note, style.MIN_TEXT, self.theme.muted),
            ).arrange(DOWN, buff=0.12)
            box = RoundedRectangle(
                corner_radius=0.1,
                width=max(2.1, words.width + 0.3),
                height=1.3,
                stroke_color=self.theme.muted,
                stroke_width=1.5,
            )
            steps.append(VGroup(box, words.move_to(box)))
        box = self.content
        row_width = sum(step.width for step in steps) + 0.75 * 3
        column_height = sum(step.height for step in steps) + 0.55 * 3
        if row_width <= box.width:
            Group(*steps).arrange(RIGHT, buff=0.75)
        elif column_height <= box.height:
            Group(*steps).arrange(DOWN, buff=0.55)
        else:  # a U: the vector -> norm, down to W_U, back to softmax
            Group(steps[0], steps[1]).arrange(RIGHT, buff=0.9)
            steps[2].next_to(steps[1], DOWN, buff=0.6)
            steps[3].next_to(steps[2], LEFT, buff=0.9)
        Group(*steps).move_to(box.center)
        arrows = [_arrow(a, b, self.theme.muted) for a, b in zip(steps, steps[1:])]
        out = Group(steps[0])
        for arrow, step in zip(arrows, steps[1:]):
            out.add(VGroup(arrow, step))
        return out

    def get_rows(self) -> list[int]:
        capacity = int((self.content.height - 0.2) // CELL_HEIGHT) - 1  # minus the header
        return table_rows(self.trace, capacity, self.settings.layers)

    def get_table(self, rows: list[int]) -> tuple[VGroup, list[list[Rectangle]]]:
        """Header of token columns, then one row per lens row; skipped layers marked."""
        trace, theme = self.trace, self.theme
        label_w = 1.2
        n_cols = max(
            1, min(trace.n_positions, int((self.content.width - label_w) // MIN_CELL_WIDTH))
        )
        first = trace.n_positions - n_cols
        positions = range(first, trace.n_positions)
        cell_w = min(2.2, (self.content.width - label_w) / n_cols)
        cell_h = min(0.6, (self.content.height - 0.2) / (len(rows) + 1 + (first > 0)))
        x0 = self.content.center[0] - (label_w + cell_w * n_cols) / 2 + label_w
        y0 = self.content.y1 - cell_h / 2
        header = VGroup()
        if first:
            note = label(
                f"last {n_cols} of {trace.n_positions} positions", style.MIN_TEXT, theme.muted
            )
            header.add(center_on(note, [x0 + cell_w * n_cols / 2, y0, 0]))
            y0 -= cell_h
        header.add(
            center_on(label("layer", style.MIN_TEXT, theme.muted), [x0 - label_w / 2, y0, 0])
        )
        for c, p in enumerate(positions):
            head = label(
                shown(self.token_texts[p]),
                style.MIN_TEXT,
                self.token_colors(trace.tokens.ids[p]),
                max_width=cell_w * 0.92,
            )
            header.add(center_on(head, [x0 + cell_w * (c + 0.5), y0, 0]))
        answer = answer_row(trace)
        out, cells = [header], []
        for r, row in enumerate(rows):
            y = y0 - cell_h * (r + 1)
            group = VGroup()
            name = row_name(row) + (" ★" if row == answer else "")
            color = theme.highlight if row == answer else theme.muted
            group.add(center_on(label(name, style.MIN_TEXT, color), [x0 - label_w / 2, y, 0]))
            if r > 0 and row - rows[r - 1] > 1:  # layers left out above this row
                y_line = y + cell_h / 2
                group.add(
                    Line(
                        [x0 - label_w, y_line, 0],
                        [x0 + cell_w * n_cols, y_line, 0],
                        stroke_width=3,
                        color=theme.muted,
                    )
                )
            row_cells = []
            for c, p in enumerate(positions):
                prob = float(trace.lens.top_probs[row, p, 0])
                fill = style.prob_color(prob, theme)
                box = Rectangle(
                    width=cell_w * 0.96,
                    height=cell_h * 0.84,
                    stroke_width=0,
                    fill_color=fill,
                    fill_opacity=1.0,
                )
                box.move_to([x0 + cell_w * (c + 0.5), y, 0])
                text = label(
                    shown(self.vocab_text(trace.lens.top_ids[row, p, 0])),
                    style.MIN_TEXT,
                    theme.text_on(fill),
                    max_width=cell_w * 0.9,
                )
                group.add(box, center_on(text, box.get_center()))
                row_cells.append(box)
            out.append(group)
            cells.append(row_cells)
        return VGroup(*out), cells


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


__all__ = ["Unembedding"]

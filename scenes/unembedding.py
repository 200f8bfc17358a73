"""Unembedding: the last vector becomes next-token odds; then the logit lens table."""

from __future__ import annotations

import numpy as np
from manim import LEFT, FadeIn, FadeOut

from mechviz.model.tokens import shown
from mechviz.visual.base import TraceScene
from mechviz.visual.lens import LensTable, UnembedPipeline
from mechviz.visual.mobjects import MorphBars, ProbBars


class Unembedding(TraceScene):
    """Final norm and W_U turn the last position's vector into the model's next-token odds."""

    shows_lens = True  # its tokens' marks go into the legend

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
        token, _ = self.trace.prediction
        room = self.content
        table = self.get_table(self.settings.layers)
        self.play(FadeOut(self.chart), run_time=0.4)
        skipped = f"; {table.layers_note}" if table.left_out > 0 else ""
        self.caption(
            f"Logit lens: each layer's top-1, shaded by probability{skipped}; "
            f"★ {shown(self.vocab_text(token))} top-1 from here on."
        )
        if self.content != room:  # a tall caption took room: the same rows, shorter
            table = self.get_table([row - 1 for row in table.lens_rows if row > 0])
        self.play(FadeIn(table.header), run_time=0.4)
        for row in table.rows:
            self.play(FadeIn(row), run_time=0.2)
        self.play(FadeIn(table.frame_cell(-1, -1)), run_time=0.5)
        self.table = table

    # --- builders ---------------------------------------------------------------------
    def get_pipeline(self) -> UnembedPipeline:
        """The last vector, final norm, W_U, softmax: a row, or a column on portrait."""
        box = self.content
        pipeline = UnembedPipeline.from_trace(
            self.trace, -1, width=box.width, height=box.height, theme=self.theme
        )
        return pipeline.move_to(box.center)

    def get_table(self, layers: list[int] | tuple[int, ...] | None) -> LensTable:
        """The lens table in the content box, top-aligned, with rows after ``layers``."""
        box = self.content
        table = LensTable.from_trace(
            self.trace,
            layers,
            width=box.width,
            height=box.height,
            theme=self.theme,
            note_layers=False,  # the caption says what is left out
        )
        return table.shift([box.center[0], box.y1, 0] - table.extent.get_top())


__all__ = ["Unembedding"]

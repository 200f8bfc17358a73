"""ResidualFlow: the residual stream rises through every layer; the lens reads it."""

from __future__ import annotations

from manim import FadeIn, VGroup

from mechviz.readouts import answer_row
from mechviz.tokens import shown
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.readout import LensReadout
from mechviz.visual.residual import ResidualStreams


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
        shown_n = min(
            trace.n_positions, ResidualStreams.columns(self.get_panels()[0].width, self.min_column)
        )
        cut = (
            f" (last {shown_n} of {trace.n_positions} tokens)"
            if shown_n < trace.n_positions
            else ""
        )
        self.caption(
            f"Each token's stream{cut}: {trace.model.d_model} numbers, max-pooled "
            "(blue < 0 < red). Attention and MLP add to it."
        )
        self.panel, self.readout_box = self.get_panels()  # after the caption: it may rise
        p = self.panel
        self.streams = ResidualStreams.from_trace(
            trace,
            width=p.width,
            height=p.height,
            theme=self.theme,
            min_column=self.min_column,
            note=False,  # the caption says what is left out
        ).move_to(p.center)
        self.add(self.streams.images, self.streams.get_cover(self.settings.transparent))
        s = self.streams
        self.play(FadeIn(s.token_labels), FadeIn(s.axis), FadeIn(s.legend), run_time=0.6)
        # The whole picture first; the next beat builds it again layer by layer.
        self.play(*s.reveal_to(trace.n_layers - 1), run_time=0.8)
        self.wait(0.6)

    def rise(self) -> None:
        """Reveal the streams layer by layer; the readout follows the last position."""
        trace, streams, box = self.trace, self.streams, self.readout_box
        L = trace.n_layers
        self.caption(
            f"The logit lens at {shown(self.token_texts[-1])}, layer by layer: the top "
            f"{self.n_bars} next tokens and the final answer's rank."
        )
        readout = LensReadout.from_trace(
            trace, -1, width=box.width, height=box.height, theme=self.theme, k=self.n_bars
        )
        readout.move_to([box.center[0], box.y1 - 0.05 - readout.height / 2, 0])
        self.readout = readout
        self.play(FadeIn(readout), *streams.reveal_to(None), run_time=0.5)
        self.add(streams.get_marker())
        self.answer_mark = None
        for layer in range(L):
            slow = layer < self.slow_layers or layer >= L - self.slow_layers
            self.play(
                *streams.reveal_to(layer),
                *readout.step_to(layer),
                run_time=self.slow_time if slow else self.fast_time,
            )
            if self.answer_mark is None and trace.lens_row(layer) == answer_row(trace):
                line = streams.layer_line(layer, self.theme.highlight, stroke_width=4)
                tick = readout.answer_tick(layer)
                self.answer_mark = VGroup(line, *([tick] if tick is not None else []))
                self.play(FadeIn(self.answer_mark), run_time=0.5)
        self.remove(streams.cover)

    def show_prediction(self) -> None:
        trace = self.trace
        token, prob = trace.prediction
        row = answer_row(trace)
        where = "the embedding" if row == 0 else f"layer {row - 1}"
        marks = self.streams.get_write_marks()
        after = " after the first token" if self.streams.positions[0] == 0 else ""
        note = f"Framed: the largest attention and MLP writes{after}." if len(marks) else ""
        self.caption(
            f"{shown(self.vocab_text(token))} ({prob:.2f}) is top-1 from {where} on. {note}"
        )
        self.play(FadeIn(marks), run_time=0.6)

    # --- layout -----------------------------------------------------------------------
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


__all__ = ["ResidualFlow"]

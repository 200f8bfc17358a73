"""ResidualFlow: the residual stream rises through every layer; the lens reads it."""

from __future__ import annotations

from manim import UP, Animation, FadeIn, Line, VGroup, config

from mechviz.tokens import shown
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.readout import LensReadout, answer_step, lens_steps
from mechviz.visual.residual import ResidualStreams


class ResidualFlow(TraceScene):
    """Each position's stream rises layer by layer; attention and MLP add their writes."""

    beats = {
        "streams": "one residual stream per token, max-pooled, with its attention and MLP writes",
        "rise": "layer by layer (attention, then MLP): the streams fill in, the lens follows",
        "prediction": "where the answer appears, and where the blocks write most",
    }
    n_bars = 4  # tokens in the readout
    slow_layers = 3  # layers at each end shown one at a time; the middle fast-forwards
    slow_time = 0.6  # seconds per layer (shared by its two half-steps when the trace has lens_mid)
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
        """Reveal the streams layer by layer; the readout follows the last position.

        With ``lens_mid`` each layer is two half-steps (after attention, after the
        MLP) in the time of one, so a viewer sees which sub-block moved the answer.
        """
        trace, streams, box = self.trace, self.streams, self.readout_box
        L = trace.n_layers
        steps = lens_steps(trace)[1:]  # the embedding is shown first
        half = len(steps) > L
        how = "after each attention and MLP" if half else "layer by layer"
        self.caption(
            f"The logit lens at {shown(self.token_texts[-1])}, {how}: the top "
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
        first = answer_step(trace)
        share = len(steps) / L  # half-steps share their layer's time
        frame = 1 / config.frame_rate
        for layer, mid in steps:
            slow = layer < self.slow_layers or layer >= L - self.slow_layers
            self.play(
                *self.reveal_to(layer, mid),
                *readout.step_to(layer, mid),
                # At least one frame: a shorter play is stretched to it anyway, with a warning.
                run_time=max((self.slow_time if slow else self.fast_time) / share, frame),
            )
            if self.answer_mark is None and (layer, mid) == first:
                tick = readout.answer_tick(layer, mid)
                line = self.boundary_line(layer, mid)
                self.answer_mark = VGroup(line, *([tick] if tick is not None else []))
                self.play(FadeIn(self.answer_mark), run_time=0.5)
        self.remove(streams.cover)

    def show_prediction(self) -> None:
        trace = self.trace
        token, prob = trace.prediction
        layer, mid = answer_step(trace)
        if layer is None:
            where = "the embedding"
        elif len(lens_steps(trace)) > trace.n_layers + 1:  # half-steps: name the sub-block
            where = f"layer {layer}'s {'attention' if mid else 'MLP'}"
        else:
            where = f"layer {layer}"
        marks = self.streams.get_write_marks()
        after = " after the first token" if self.streams.positions[0] == 0 else ""
        note = f"Framed: the largest attention and MLP writes{after}." if len(marks) else ""
        self.caption(
            f"{shown(self.vocab_text(token))} ({prob:.2f}) is top-1 from {where} on. {note}"
        )
        self.play(FadeIn(marks), run_time=0.6)

    # --- the streams by half-layers -------------------------------------------------
    def boundary_y(self, layer: int | None, mid: bool) -> float:
        """Scene y of the top of the stream row after ``layer`` (``mid``: its ``{l}_mid``)."""
        if not mid:
            return self.streams.y_of(layer)
        _, _, y0, y1 = self.streams.box
        B = len(self.trace.resid.labels)
        return y0 + (y1 - y0) * (self.trace.resid_mid(layer) + 1) / B

    def reveal_to(self, layer: int | None, mid: bool) -> list[Animation]:
        """The streams uncovered up to ``layer``, or up to its ``{l}_mid`` row (``mid``)."""
        streams = self.streams
        if not mid:
            return streams.reveal_to(layer)
        y = self.boundary_y(layer, mid)
        anims: list[Animation] = []
        if streams.cover is not None:
            height = max(streams.box[3] - y, 0.001)
            anims.append(streams.cover.animate.stretch_to_fit_height(height, about_edge=UP).build())
        if streams.marker is not None:
            anims.append(streams.marker.animate.set_y(y).build())
        return anims

    def boundary_line(self, layer: int | None, mid: bool) -> Line:
        """The answer's mark across the streams, at the top of that step's row."""
        line = self.streams.layer_line(layer, self.theme.highlight, stroke_width=4)
        return line.set_y(self.boundary_y(layer, mid))

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

"""ResidualFlow: the residual stream rises through every layer; the lens reads it."""

from __future__ import annotations

from collections.abc import Sequence

from manim import UP, Animation, FadeIn, Line, VGroup, smooth

from mechviz.model.tokens import shown
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.readout import LensReadout, answer_step, lens_steps
from mechviz.visual.residual import ResidualStreams, WriteBars, outsized_streams
from mechviz.visual.text import spans


class ResidualFlow(TraceScene):
    """Each position's stream rises layer by layer; attention and MLP add their writes."""

    shows_lens = True  # its tokens' marks go into the legend

    beats = {
        "streams": "one residual stream per token, max-pooled, with its attention and MLP writes",
        "rise": "layer by layer (attention, then MLP): the streams fill in, the lens follows",
        "prediction": "where the answer appears, and where the blocks write most",
    }
    n_bars = 4  # tokens in the readout
    slow_layers = 3  # layers at each end shown one at a time; the middle fast-forwards
    slow_time = 0.8  # seconds per slow layer (shared by its two half-steps with lens_mid)
    fast_time = 0.27  # seconds per other layer: 4 frames at 15 fps, 2 of them for the reading
    dim = 0.72  # opacity of the veil over the layers the rise has not reached yet
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
            trace.n_positions, ResidualStreams.columns(self.panel_width(), self.min_column)
        )
        cut = f" (last {shown_n} of {trace.n_positions})" if shown_n < trace.n_positions else ""
        self.caption(
            self.streams_caption(cut, range(trace.n_positions - shown_n, trace.n_positions))
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

    def streams_caption(self, cut: str, positions: Sequence[int]) -> str:
        """What the columns are, what is left out, and a column drawn on an outsized scale."""
        d = self.trace.model.d_model
        text = f"Each token's stream{cut}: {d} numbers, max-pooled (blue < 0 < red)"
        faint = [
            f"{shown(self.token_texts[p])}'s scale is {ratio:.0f}× (faint early layers)"
            for p, ratio in outsized_streams(self.trace, positions)
        ]
        return text + ("; " + "; ".join(faint) if faint else "; attention and MLP add to it") + "."

    def rise(self) -> None:
        """Reveal the streams layer by layer; the readout follows the last position.

        With ``lens_mid`` a layer is two half-steps (after attention, after the
        MLP), so a viewer sees which sub-block moved the answer. The layers at
        both ends, the answer's and those of the framed writes (:meth:`slow_layers_of`)
        go at ``slow_time`` a layer; the others at ``fast_time``, a whole layer a
        step (the caption says which). Each step moves the marker to its boundary
        in the first half of its time; then the readout reads it, every part at
        once, and holds.
        """
        trace, streams, box = self.trace, self.streams, self.readout_box
        slow = self.slow_layers_of()
        steps = self.rise_steps(slow)
        readout = LensReadout.from_trace(
            trace, -1, width=box.width, height=box.height, theme=self.theme, k=self.n_bars
        )
        self.caption(self.rise_caption(slow, len(readout.bars.rows), readout.has_chart))
        readout.move_to([box.center[0], box.y1 - 0.05 - readout.height / 2, 0])
        self.readout = readout
        # The picture stays: the layers not reached yet are dimmed, not wiped.
        cover = streams.cover
        dim = 0.0 if self.settings.transparent else self.dim
        y = streams.y_of(None)
        cover.set_fill(opacity=0.0)
        cover.stretch_to_fit_height(max(streams.box[3] - y, 0.001), about_edge=UP)
        self.play(FadeIn(readout), cover.animate.set_fill(opacity=dim), run_time=0.5)
        self.add(streams.get_marker())
        self.answer_mark = None
        first = answer_step(trace)
        half = self.half_steps
        for layer, mid in steps:
            per_layer = self.slow_time if layer in slow else self.fast_time
            run_time = per_layer / 2 if half and layer in slow else per_layer
            reveal = self.reveal_to(layer, mid)
            for anim in reveal:
                anim.rate_func = _arrive_by_half
            self.play(*reveal, *readout.step_to(layer, mid, at=0.5), run_time=run_time)
            if self.answer_mark is None and (layer, mid) == first:
                tick = readout.answer_tick(layer, mid)
                line = self.boundary_line(layer, mid)
                self.answer_mark = VGroup(line, *([tick] if tick is not None else []))
                self.play(FadeIn(self.answer_mark), run_time=0.5)
        self.remove(streams.cover)

    @property
    def half_steps(self) -> bool:
        """Whether the trace reads each layer after its attention too (``lens_mid``)."""
        return len(lens_steps(self.trace)) > self.trace.n_layers + 1

    def slow_layers_of(self) -> list[int]:
        """The layers shown slowly: both ends, the answer's, and those of the framed writes."""
        L = self.trace.n_layers
        layers = set(range(min(self.slow_layers, L))) | set(range(max(L - self.slow_layers, 0), L))
        answer, _ = answer_step(self.trace)
        if answer is not None:
            layers.add(answer)
        layers |= {layer for _, layer, _ in WriteBars.largest(self.trace, self.streams.positions)}
        return sorted(layers)

    def rise_steps(self, slow: list[int]) -> list[tuple[int, bool]]:
        """The readout's steps: both halves of the slow layers, whole layers elsewhere."""
        steps = lens_steps(self.trace)[1:]  # the embedding is shown first
        return [(layer, mid) for layer, mid in steps if not mid or layer in slow]

    def rise_caption(self, slow: list[int], bars: int | None = None, chart: bool = False) -> str:
        """The caption of the rise: which layers it reads half by half, and what the readout shows.

        ``bars``: the top tokens the readout has room for (default ``n_bars``);
        ``chart``: whether it draws the answer's probability by layer.
        """
        answer = shown(self.token_texts[-1])
        top = f"top\u00a0{bars or self.n_bars}"  # "top 4" never broken across lines
        what = (
            f"{top}, answer's rank, p by layer."
            if chart
            else f"{top} next tokens, the answer's rank."
        )
        if not self.half_steps:
            return f"Logit lens at {answer}, layer by layer: {what}"
        fast = [layer for layer in range(self.trace.n_layers) if layer not in slow]
        if not fast:
            return f"Logit lens at {answer}, after each attention and MLP: {what}"
        return f"Logit lens at {answer} after each attention and MLP ({spans(fast)} whole): {what}"

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
        """Streams above the readout on portrait frames, else side by side.

        A square (or 4:5) frame stacked leaves the streams about a unit of height once the
        title, the caption and the turned token labels have theirs (on Gemma's six
        tokens, a line): side by side they keep the whole height.
        """
        return self.frame.width < 0.7 * self.frame.height

    def panel_width(self) -> float:
        """The streams' panel width (what :meth:`get_panels` gives, without laying out)."""
        return self.content.width if self.stacked else self._side_by_side()[0].width

    def _side_by_side(self) -> tuple[Box, Box]:
        square = self.frame.width < 1.3 * self.frame.height
        return self.content.split("x", 0.5 if square else 0.56, gap=0.4)

    def get_panels(self) -> tuple[Box, Box]:
        """The streams' panel and the readout's: side by side, or stacked on portrait.

        Stacked, the readout gets the height it takes in at most half the room
        (it drops its chart, then bars, to fit), and the streams get the rest.
        """
        if not self.stacked:
            return self._side_by_side()
        c, gap = self.content, 0.35
        probe = LensReadout.from_trace(
            self.trace,
            -1,
            width=c.width,
            height=(c.height - gap) / 2,
            theme=self.theme,
            k=self.n_bars,
        )
        share = 1.0 - (probe.height + 0.1) / (c.height - gap)
        return c.split("y", max(share, 0.5), gap=gap)


def _arrive_by_half(t: float) -> float:
    """Smooth motion done by the middle of the animation, then still (the reading's half)."""
    return smooth(min(1.0, 2.0 * t))


__all__ = ["ResidualFlow"]

"""LogitAttribution: what each layer's attention and MLP add to the answer's logit."""

from __future__ import annotations

import numpy as np
from manim import DOWN, LEFT, RIGHT, Animation, Line, Mobject, VGroup, smooth

from mechviz.model.tokens import readable, shown
from mechviz.visual.attribution import (
    LEADER_GAP,
    SIZE,
    LensTrack,
    LogitWaterfall,
    PartLegend,
    TopHeads,
    lens_rows,
    resolve_position,
    signed,
)
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.text import block_height, label, measure


class LogitAttribution(TraceScene):
    """The top token's logit at one position, split into what each part of the model wrote.

    Read from the trace's ``attribution``: a waterfall of the parts, the
    stream's running sum beside the logit lens, the versus token, the heads.
    The position is the settings' ``query`` (default: the last).
    """

    beats = {
        "waterfall": "every part's direct contribution, bottom to top, summing to the logit",
        "stack": "the running sum layer by layer, beside the lens's rank of the answer",
        "versus": "the same split for the logit difference with the versus token",
        "heads": "the attention heads with the largest direct effect, by name",
    }
    n_stops = 6  # stops of the "stack" beat: n_stops - 3 evenly spaced, the 3 largest parts
    # (and where the lens moved most); fewer when they coincide
    stop_time = 0.9  # seconds per stop

    def construct(self) -> None:
        self.table = self.trace.require("attribution")  # one sentence if it is missing
        self.trace.require("lens_mid")
        self.position = resolve_position(self.trace, self.settings.query)
        self.answer = self.token(int(self.table.token[self.position]))
        self.marker = self.readout = None  # the stack's marker line and readout, once drawn
        self.show_title(f"Who writes the {self.answer} logit")
        with self.beat("waterfall"):
            self.show_waterfall()
        with self.beat("stack"):
            self.show_stack()
        with self.beat("versus"):
            self.show_versus()
        with self.beat("heads"):
            self.show_heads()

    def token(self, token_id: int) -> str:
        """A vocabulary token as drawn ("·Paris")."""
        return shown(readable(self.trace.token_text(token_id)))

    # --- layout -----------------------------------------------------------------------
    def get_rooms(self) -> tuple[Box, Box]:
        """The header's room at the top (legend, readout) and the chart's below it."""
        box = self.content
        if not hasattr(self, "_header_lines"):  # the legend's rows at this width, once
            rows = [PartLegend(self.theme, box.width, t).rows for t in ("logit", "difference")]
            self._header_lines = 2 if self.portrait else max(rows)
        header_h = block_height(self._header_lines, SIZE) + 0.1
        return box.split("y", header_h / box.height, gap=0.3) if box.height > 0 else (box, box)

    def get_waterfall(self, versus: bool = False) -> LogitWaterfall:
        """The waterfall for the settings' position, in the chart's room."""
        _, chart = self.get_rooms()
        fall = LogitWaterfall.from_trace(
            self.trace,
            self.position,
            versus=versus,
            width=chart.width,
            height=chart.height,
            theme=self.theme,
        )
        return fall.move_to(chart.center)

    def get_legend(self, total: str = "logit") -> PartLegend:
        """The colours' legend, top left of the header's room."""
        header, _ = self.get_rooms()
        legend = PartLegend(self.theme, header.width, total)
        return legend.move_to([header.x0 + legend.width / 2, header.y1 - legend.height / 2, 0])

    # --- beats ------------------------------------------------------------------------
    def show_waterfall(self) -> None:
        after = shown(self.token_texts[self.position])
        self.caption(
            f"Each bar: what one part wrote into the logit of {self.answer}, next after {after} "
            "(final norm's scale frozen). The bars add up."
        )
        self.fall = self.get_waterfall()
        self.legend = self.get_legend()
        group = VGroup(self.legend, self.fall)
        self.swap(None, group, run_time=0.8)
        self.wait(1.5)
        self.figure = group

    def show_stack(self) -> None:
        fall = self.fall
        self.caption(
            f"The sum grows part by part. Right: {self.answer}'s rank under the lens "
            "(each state's own norm)."
        )
        self.track = self.get_track(fall)
        rows = len(fall.values) - 1  # the parts' rows (embed .. last MLP)
        fall.bars.set_fill(opacity=0.25)
        self.track.dots.set_fill(opacity=0.0)
        self.track.path.set_stroke(opacity=0.0)
        self.add(self.track)
        self.play(
            Opacity.fade_out(fall.labels, fall.leaders, fall.unit, self.legend),
            Opacity.fade_in(self.track.frame_box, self.track.axis, self.track.header),
            run_time=0.5,
        )
        self.remove(self.legend)
        fall.remove(fall.labels, fall.leaders, fall.unit)
        self.stops = self.stack_stops(rows)
        self.readouts: list[VGroup] = []  # every readout shown, in order (tests read them)
        shown_to = -1
        for stop in self.stops:
            lit = range(shown_to + 1, stop + 1)
            marker, readout = self.get_marker(stop), self.get_readout(stop)
            old = [m for m in (self.marker, self.readout) if m is not None]
            self.add(marker, readout)
            # One play per stop: the change takes its first 60%, then the picture holds.
            self.play(
                self.light(lit),
                Opacity.fade_out(*old),
                Opacity.fade_in(marker, readout),
                run_time=self.stop_time,
                rate_func=lambda t: smooth(min(t / 0.6, 1.0)),
            )
            self.remove(*old)
            self.marker, self.readout = marker, readout
            self.readouts.append(readout)
            shown_to = stop
        self.play(self.light(range(shown_to + 1, len(fall.bars))), run_time=0.4)
        self.wait(1.0)

    def light(self, rows: range) -> Opacity:
        """Bars (and the track's dots and path) of ``rows`` go from dim to full."""
        fall, track = self.fall, self.track
        n = len(track.dots)
        fills = [fall.bars[i] for i in rows] + [track.dots[i] for i in rows if i < n]
        strokes = [track.path[i - 1] for i in rows if 0 < i < n]
        return Opacity(
            [
                (m, m.get_fill_opacity(), 1.0, m.get_stroke_opacity(), m.get_stroke_opacity())
                for m in fills
            ]
            + [(m, 0.0, 0.0, m.get_stroke_opacity(), 0.6) for m in strokes]
        )

    def show_versus(self) -> None:
        a, p = self.table, self.position
        old = VGroup(*self.stack_pieces())
        if a.versus is None:
            self.caption(
                "No versus token was recorded; add one with "
                "`mechviz analyze TRACE --attribution --versus WORD`."
            )
            self.wait(1.0)
            return
        other = self.token(int(a.versus))
        diff = float(a.logit[1, p])
        self.caption(
            f"{self.answer} vs {other}: the same parts, split for the difference of "
            f"their logits, {diff:.2f}."
        )
        self.versus_fall = self.get_waterfall(versus=True)
        self.legend = self.get_legend("difference")
        new = VGroup(self.legend, self.versus_fall)
        self.swap(old, new, run_time=0.8)
        self.figure = new
        self.wait(1.5)

    def show_heads(self) -> None:
        a, p = self.table, self.position
        heads = a.heads[0, p]
        box = self.content
        self.heads = TopHeads(heads, self.theme, box.width, box.height)
        self.heads.move_to(box.center)
        named = ", ".join(
            f"{n} {signed(float(v))}" for n, v in zip(self.heads.names[:2], self.heads.values)
        )
        self.caption(
            f"Each head writes through its slice of W_O. Largest for {self.answer}: {named}."
        )
        old = self.figure if self.table.versus is not None else VGroup(*self.stack_pieces())
        self.swap(old, self.heads, run_time=0.8)
        self.wait(1.5)

    # --- builders ---------------------------------------------------------------------
    def stack_pieces(self) -> list[Mobject]:
        """What the "stack" beat leaves on screen: the waterfall, the track, marker, readout."""
        pieces = (self.fall, getattr(self, "track", None), self.marker, self.readout)
        return [m for m in pieces if m is not None]

    def get_track(self, fall: LogitWaterfall) -> LensTrack:
        """The lens's rank of the answer at the waterfall's rows, where its labels stood."""
        x0 = fall.area.get_right()[0] + LEADER_GAP
        width = max(min(self.content.x1 - x0, 4.0), 1.0)
        track = LensTrack.beside(fall, self.trace, self.position, width)
        track.shift([x0, 0, 0])
        return track

    def stack_stops(self, rows: int) -> list[int]:
        """The half-steps the stack stops at.

        Evenly spaced ones, the three parts that wrote most, and the half-step
        after which the lens's rank of the answer improved most (in log rank).
        """
        values = self.fall.values[:rows]
        even = np.linspace(0, rows - 1, max(self.n_stops - 3, 2)).round().astype(int)
        largest = np.argsort(-np.abs(values[1:]), kind="stable")[:3] + 1
        rank = self.track.rank.astype(np.float64)
        moved = int(np.argmax(np.diff(-np.log10(rank + 1)))) + 1 if rows > 1 else 0
        return sorted({int(i) for i in even} | {int(i) for i in largest} | {moved})

    def get_marker(self, row: int) -> Line:
        """A line across the chart and the track at ``row``."""
        fall, y = self.fall, self.fall.row_y(row)
        x0 = fall.area.get_left()[0]
        x1 = self.track.frame_box.get_right()[0]
        line = Line([x0, y, 0], [x1, y, 0], stroke_width=1.5)
        return line.set_stroke(self.theme.foreground, opacity=0.6)

    def get_readout(self, row: int) -> VGroup:
        """Two lines: the part, the running sum; the lens's rank and top token there."""
        fall = self.fall
        rank, prob, top = lens_rows(self.trace, self.position)
        header, _ = self.get_rooms()
        name = "the embedding" if row == 0 else fall.names[row]
        total, r, pr = fall.running[row + 1], int(rank[row]) + 1, float(prob[row])
        first = f"after {name}: running sum {total:.2f}"
        second = f"lens: {self.answer} rank {r:,} ({pr:.0%}), top {self.token(int(top[row]))}"
        if not self.portrait and measure(first, SIZE) + measure(second, SIZE) + 0.5 > header.width:
            first = f"after {name}: sum {total:.2f}"  # one line: the short form
            second = f"lens rank {r:,} ({pr:.0%})"
        lines = [
            label(first, SIZE, self.theme.foreground, max_width=header.width),
            label(second, SIZE, self.theme.prob, max_width=header.width),
        ]
        if self.portrait:
            group = VGroup(*lines).arrange(DOWN, buff=0.14, aligned_edge=LEFT)
        else:
            group = VGroup(*lines).arrange(RIGHT, buff=0.5)
        group.move_to([header.x0 + group.width / 2, header.y1 - group.height / 2, 0])
        group.row = row
        group.texts = (first, second)
        return group


class Opacity(Animation):
    """Pieces go from one fill and stroke opacity to another, in place (no copies, unlike Fade).

    ``steps`` holds ``(mobject, fill_from, fill_to, stroke_from, stroke_to)``
    for each piece with points.
    """

    def __init__(self, steps: list[tuple[Mobject, float, float, float, float]]) -> None:
        self.steps = steps
        super().__init__(VGroup(*[s[0] for s in steps]))

    @classmethod
    def fade_out(cls, *mobjects: Mobject) -> Opacity:
        """Every piece of ``mobjects`` to fully transparent."""
        return cls([(m, *_opacities(m, 0.0)) for m in _leaves(mobjects)])

    @classmethod
    def fade_in(cls, *mobjects: Mobject) -> Opacity:
        """Every piece of ``mobjects`` from transparent to its opacity now."""
        steps = [(m, *_opacities(m, 0.0)) for m in _leaves(mobjects)]
        steps = [(m, f1, f0, s1, s0) for m, f0, f1, s0, s1 in steps]
        for m, f0, _, s0, _ in steps:
            m.set_fill(opacity=f0).set_stroke(opacity=s0)
        return cls(steps)

    def create_starting_mobject(self) -> VGroup:
        """An empty group: the start is in ``steps``."""
        return VGroup()

    def interpolate_mobject(self, alpha: float) -> None:
        a = self.rate_func(alpha)
        for mob, f0, f1, s0, s1 in self.steps:
            if f0 != f1:
                mob.set_fill(opacity=(1 - a) * f0 + a * f1)
            if s0 != s1:
                mob.set_stroke(opacity=(1 - a) * s0 + a * s1)


def _leaves(mobjects: tuple[Mobject, ...]) -> list[Mobject]:
    return [m for mob in mobjects for m in mob.family_members_with_points()]


def _opacities(mob: Mobject, to: float) -> tuple[float, float, float, float]:
    fill, stroke = mob.get_fill_opacity(), mob.get_stroke_opacity()
    return fill, to * fill, stroke, to * stroke


__all__ = ["LogitAttribution", "Opacity"]

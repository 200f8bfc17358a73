"""Blocks of learned readouts: the tuned lens beside the logit lens, and SAE features.

* :class:`LensPair`: the logit lens and the tuned lens at one position, side by
  side (stacked in a narrow room), each its top-k bars and the answer's rank,
  stepping together layer by layer (``trace.lens`` and ``trace.tuned_lens``);
* :class:`LensCurves`: the held-out bits per byte of both lenses by layer, with
  the model's own figure as a reference line (``trace.tuned_lens.eval_*``);
* :class:`FeatureSum`: one position's residual vector as a sum of its most active
  sparse-autoencoder features, the shared bias and the remainder ("dark matter"),
  a bar per term whose length is the term's norm (``trace.features``);
* :class:`FeatureCard`: one feature's card: what it fires on (a context from the
  training text with the activating token marked) and the tokens it promotes.

Every number drawn is read from the trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, Animation, DashedLine, Line, Rectangle, VGroup, VMobject

from mechviz.analyses.readouts import row_name
from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.schema import Features, Trace
from mechviz.visual import style
from mechviz.visual.ablation import Reading
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.mobjects import ProbBars, SwitchAt
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure, number, numbered, paragraph

__all__ = [
    "FeatureCard",
    "FeatureSum",
    "LensCurves",
    "LensPair",
    "dark_matter_share",
    "tuned_reading",
]

STACK_WIDTH = 8.0  # a narrower room stacks the two lenses of LensPair (scene units)
ROW = 0.44  # a MIN_TEXT row with its margin (scene units)
NOTE = "Bars are lengths of vectors that point different ways: they do not add up."


def tuned_reading(trace: Trace, name: str = "tuned lens") -> Reading:
    """The tuned lens of the last position as a :class:`~mechviz.visual.ablation.Reading`.

    Its lens rows are ``trace.tuned_lens``'s, its output the model's own, so
    :class:`~mechviz.visual.ablation.LensCompare` can set it beside the logit lens
    (``Reading.after(trace, "logit lens")``).
    """
    t = trace.require("tuned_lens")  # one sentence saying how to record one
    logit = Reading.after(trace, name)
    return Reading(
        name,
        t.top_ids[:, -1],
        t.top_probs[:, -1],
        logit.output_ids,
        logit.output_probs,
        logit.vocab,
    )


def dark_matter_share(features: Features, position: int) -> float:
    """The error's norm as a share of the residual's at ``position`` (0..1, or more)."""
    return float(features.error_norm[position]) / max(float(features.resid_norm[position]), 1e-30)


# --- the two lenses, stepping ----------------------------------------------------------


class LensPair(VGroup):
    """The logit lens and the tuned lens at one position, stepping layer by layer.

    Both read the same residual after the same layer; the tuned lens first moves
    it through that layer's trained affine map. Each panel: its name, the top-k
    tokens as :class:`ProbBars` (the model's answer in the highlight colour) and the
    answer's rank. A heading above says which layer is read.

    Attributes:
        position: The prompt position read.
        answer_id: The model's top-1 next token there.
        row: The lens row shown (0 the embedding, ``l + 1`` after layer ``l``).
        heading: "embedding" or "after layer N" (replaced on every step).
        names: The two panels' names.
        bars: The two :class:`ProbBars` (logit lens, tuned lens).
        ranks: The two "rank of ·X: n" lines (replaced on every step).
        stacked: Whether the panels are one above the other.

    """

    def __init__(
        self, view: TraceView, position: int, width: float, height: float, k: int = 4
    ) -> None:
        super().__init__()
        trace, theme = view.trace, view.theme
        self.view, self.trace, self.theme = view, trace, theme
        self.tuned = trace.require("tuned_lens")
        self.position = int(position) % trace.n_positions
        self.answer_id = int(trace.output.top_ids[self.position, 0])
        self.answer_text = view.vocab_text(self.answer_id)
        head_h = style.cap_height(style.BODY_TEXT) * 1.6 + 0.3
        # Stacked in a narrow room, unless that leaves under 3 bars each (a square frame).
        stacked_need = head_h + 2 * (3 * ProbBars.min_row + 2 * ROW + 0.3) + 0.4
        self.stacked = width < STACK_WIDTH and (height >= stacked_need or width < 6.0)
        panel_w = width if self.stacked else (width - 0.8) / 2
        per_panel = (height - head_h) / (2 if self.stacked else 1) - 2 * ROW - 0.3
        k = max(2, min(k, trace.lens.top_ids.shape[-1], int(per_panel // ProbBars.min_row)))
        self.k = k
        value_w = measure("0.00", style.MIN_TEXT, style.MONO) + 0.12
        name_w = min(2.2, max(1.3, 0.32 * panel_w))
        self.row = 0
        self.heading = label("embedding", style.BODY_TEXT, theme.foreground)
        self.names, self.bars, self.ranks = VGroup(), VGroup(), VGroup()
        panels = []
        for name in ("logit lens", "tuned lens"):
            head = label(name, style.BODY_TEXT, theme.highlight if name[0] == "t" else theme.muted)
            texts, probs = self.top(name == "tuned lens", 0)
            bars = ProbBars(
                texts,
                probs,
                theme,
                bar_width=max(panel_w - name_w - 0.15 - value_w, 0.5),
                name_width=name_w,
                row_height=min(0.56, max(ProbBars.min_row, per_panel / k)),
                highlight=lambda t: t == self.answer_text,
            )
            rank = self._rank_line(name == "tuned lens", 0, panel_w)
            panel = VGroup(head, bars, rank).arrange(DOWN, buff=0.2, aligned_edge=LEFT)
            self.names.add(head)
            self.bars.add(bars)
            self.ranks.add(rank)
            panels.append(panel)
        self.panels = VGroup(*panels)
        self._arrange()
        while VGroup(self.heading, self.panels).height > height and self.k > 2:  # fewer bars
            self.k -= 1
            for bars, panel in zip(self.bars, self.panels):
                bars.keep_rows(self.k)
                panel.arrange(DOWN, buff=0.2, aligned_edge=LEFT)
            self._arrange()
        self.add(self.heading, self.panels)
        self.move_to([0.0, 0.0, 0.0])

    def _arrange(self) -> None:
        if self.stacked:
            self.panels.arrange(DOWN, buff=0.4, aligned_edge=LEFT)
        else:
            self.panels.arrange(RIGHT, buff=0.8, aligned_edge=UP)
        self.heading.next_to(self.panels, UP, buff=0.3).align_to(self.panels, LEFT)

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
    ) -> LensPair:
        """Both lenses at ``position`` (negative from the end), showing the embedding.

        Args:
            trace: A trace with a ``tuned_lens`` section, or the path of one.
            position: Prompt position whose next token is read.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            k: Bars per lens at most (fewer when the room is short; 2 at least).

        Returns:
            The block, centred on the origin; panels stacked when the room is
            under 8 units wide and tall enough for 3 bars each, else side by side.

        """
        w, h = room(width, height)
        return cls(TraceView.of(trace, theme), position, w, h, k)

    def top(self, tuned: bool, row: int) -> tuple[list[str], np.ndarray]:
        """One lens's top ``k`` token texts and probabilities at lens ``row``."""
        lens = self.tuned if tuned else self.trace.lens
        ids = lens.top_ids[row, self.position, : self.k]
        return [self.view.vocab_text(i) for i in ids], lens.top_probs[row, self.position, : self.k]

    def rank(self, tuned: bool, row: int) -> int:
        """The answer's rank (1 = top) in one lens at lens ``row``."""
        lens = self.tuned if tuned else self.trace.lens
        return int(lens.final_token_rank[row, self.position]) + 1

    def _rank_line(
        self, tuned: bool, row: int, width: float | None = None, words: object = None
    ) -> VGroup:
        """The line "rank of ·X: n" of one lens at lens ``row`` (``words``: keep these)."""
        rank = self.rank(tuned, row)
        color = self.theme.highlight if rank == 1 else self.theme.foreground
        if words is None:
            # A narrow panel says less: the bars' highlight names the answer.
            digits = measure("00,000", style.MIN_TEXT, style.MONO) + 0.2
            for text in (f"rank of {shown(self.answer_text)}:", "answer's rank:", "rank:"):
                if width is None or measure(text, style.MIN_TEXT) + digits <= width:
                    break
            words = label(text, style.MIN_TEXT, self.theme.muted)
        value = number(f"{rank:,}", style.MIN_TEXT, color)
        value.next_to(words, RIGHT, buff=0.2)
        value.align_to(words, DOWN)
        group = VGroup(words, value)
        group.text = f"rank {rank}"
        group.value = rank
        return group

    def set_row(self, row: int) -> LensPair:
        """Show both lenses at lens ``row`` now: heading, ranks and bars together."""
        heading = (
            label("embedding", style.BODY_TEXT, self.theme.foreground)
            if row == 0
            else numbered("after layer", str(row - 1), style.BODY_TEXT, self.theme.foreground)
        )
        heading.move_to(self.heading, aligned_edge=LEFT)
        self.submobjects[self.submobjects.index(self.heading)] = heading
        self.heading = heading
        self.row = row
        for i, tuned in enumerate((False, True)):
            old = self.ranks[i]
            new = self._rank_line(tuned, row, words=old[0])  # only the number changes
            self.ranks.submobjects[i] = new
            panel = self.panels[i]
            panel.submobjects[panel.submobjects.index(old)] = new
            texts, probs = self.top(tuned, row)
            self.bars[i].set_values(texts, probs)
            self.bars[i].texts, self.bars[i].colors = list(texts), None
        return self

    def step_to(self, row: int, at: float = 0.5) -> list[Animation]:
        """Move both lenses to lens ``row`` (0 the embedding); play what it returns.

        At ``at`` of the animation the heading, ranks and both lenses' bars
        change together (:class:`~mechviz.visual.mobjects.SwitchAt`).
        """
        return [SwitchAt(self, lambda: self.set_row(row), at)]


# --- the held-out curves -----------------------------------------------------------------


class LensCurves(VGroup):
    """Held-out bits per byte of the logit lens and the tuned lens, by layer.

    x: lens rows (the embedding, then after each layer); y: cross-entropy against
    the true next token in bits per byte (``eval_bpb_logit``, ``eval_bpb_tuned``),
    with the model's own figure (``eval_bpb_model``) as a dashed line. A legend
    above names the three lines.

    Attributes:
        box: The plot's frame.
        logit_line, tuned_line: The two curves (VMobject).
        model_line: The dashed reference line.
        legend: VGroup of (swatch, words) entries.
        y_max: The value at the top of the box (bits per byte).
        clipped: Whether the embedding row is above the box (its values are noted
            in the box's top-left corner).

    """

    def __init__(self, trace: Trace, theme: Theme, width: float, height: float) -> None:
        super().__init__()
        t = trace.require("tuned_lens")
        self.trace, self.theme, self.tuned = trace, theme, t
        logit = np.asarray(t.eval_bpb_logit, dtype=float)
        tuned = np.asarray(t.eval_bpb_tuned, dtype=float)
        later = np.concatenate([logit[1:], tuned[1:], [t.eval_bpb_model]])
        top = float(np.nanmax(later))
        whole = float(np.nanmax(np.concatenate([logit, tuned])))
        # The embedding row can cost many times more than any layer; clipped, it is
        # named at the top of the box instead of flattening every other row.
        self.clipped = whole > 1.5 * top
        self.y_max = _nice_ceiling(top if self.clipped else whole)
        entries = [
            ("logit lens", theme.muted, False),
            ("tuned lens", theme.highlight, False),
            (f"model itself ({t.eval_bpb_model:.2f})", theme.foreground, True),
        ]
        self.legend = VGroup(*(self._entry(*e) for e in entries))
        # One row when it fits; else two columns; else one entry a line.
        self.legend.arrange(RIGHT, buff=0.5)
        if self.legend.width > width:
            self.legend.arrange_in_grid(cols=2, buff=(0.5, 0.15), cell_alignment=LEFT)
        if self.legend.width > width:
            self.legend.arrange(DOWN, buff=0.15, aligned_edge=LEFT)
        axis_title = label("bits per byte, held out", style.MIN_TEXT, theme.muted)
        tick_w = measure(f"{self.y_max:g}", style.MIN_TEXT) + 0.2
        box_h = height - self.legend.height - axis_title.height - 0.3 - 0.3 - 0.75
        box_h -= 0.45 if self.clipped else 0.0  # the note may take a line of its own
        box_w = width - tick_w
        if box_h < 1.0:
            raise MechvizError("The room is too short for the bits-per-byte curves.")
        self.box = Rectangle(width=box_w, height=box_h, stroke_color=theme.faint, stroke_width=1.5)
        self.box.move_to([tick_w / 2, 0, 0])
        self.n_rows = len(logit)
        self.logit_line = self._curve(logit, theme.muted)
        self.tuned_line = self._curve(tuned, theme.highlight)
        y = self._point(0, t.eval_bpb_model)[1]
        self.model_line = DashedLine(
            [self.box.get_left()[0], y, 0],
            [self.box.get_right()[0], y, 0],
            color=theme.foreground,
            stroke_width=2,
            dash_length=0.12,
        )
        self.ticks = self._ticks()
        axis_title.next_to(self.box, UP, buff=0.2).align_to(self.box, LEFT)
        if self.clipped:  # on the axis title's line, right: the embedding's values
            note = label(f"↑ embed {logit[0]:.0f}, {tuned[0]:.0f}", style.MIN_TEXT, theme.muted)
            note.next_to(self.box, UP, buff=0.2).align_to(self.box, RIGHT)
            center_on(note, [note.get_x(), axis_title.get_y(), 0])
            if note.get_left()[0] < axis_title.get_right()[0] + 0.3:
                note.next_to(axis_title, UP, buff=0.15).align_to(self.box, LEFT)
                axis_title = VGroup(note, axis_title)
            else:
                self.ticks.add(note)
        self.legend.next_to(axis_title, UP, buff=0.3).align_to(self.box, LEFT)
        self.axis_title = axis_title
        self.frame_parts = VGroup(self.legend, axis_title, self.box, self.ticks, self.model_line)
        self.add(self.frame_parts, self.logit_line, self.tuned_line)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> LensCurves:
        """The curves of ``trace.tuned_lens``'s held-out figures, sized for the room."""
        view = TraceView.of(trace, theme)
        w, h = room(width, height)
        return cls(view.trace, view.theme, w, h)

    def _point(self, row: float, value: float) -> np.ndarray:
        box = self.box
        x = box.get_left()[0] + box.width * row / max(self.n_rows - 1, 1)
        y = box.get_bottom()[1] + box.height * min(value, self.y_max) / self.y_max
        return np.array([x, y, 0.0])

    def _curve(self, values: np.ndarray, color: object) -> VMobject:
        line = VMobject(stroke_color=color, stroke_width=5)
        line.set_points_as_corners([self._point(i, float(v)) for i, v in enumerate(values)])
        return line

    def _entry(self, text: str, color: object, dashed: bool) -> VGroup:
        if dashed:
            swatch = DashedLine(LEFT * 0.25, RIGHT * 0.25, color=color, dash_length=0.1)
        else:
            swatch = Line(LEFT * 0.25, RIGHT * 0.25, color=color, stroke_width=5)
        words = label(text, style.MIN_TEXT, self.theme.foreground)
        center_on(words, [swatch.get_right()[0] + 0.15 + words.width / 2, 0, 0])
        return VGroup(swatch, words)

    def _ticks(self) -> VGroup:
        theme, box = self.theme, self.box
        out = VGroup()
        for value in (0.0, self.y_max):
            text = label(f"{value:g}", style.MIN_TEXT, theme.muted)
            y = self._point(0, value)[1]
            center_on(text, [box.get_left()[0] - 0.12 - text.width / 2, y, 0])
            out.add(text)
        last = self.n_rows - 1
        names = [(0, row_name(0)), (last, f"layer {last - 1}")]
        if last >= 4:
            names.insert(1, (last // 2, f"{last // 2 - 1}"))
        for row, text in names:
            word = label(text, style.MIN_TEXT, theme.muted)
            x = self._point(row, 0)[0]
            x = min(max(x, box.get_left()[0] + word.width / 2), box.get_right()[0] - word.width / 2)
            out.add(center_on(word, [x, box.get_bottom()[1] - 0.3, 0]))
        return out


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value``."""
    if value <= 0 or not np.isfinite(value):
        return 1.0
    power = 10 ** np.floor(np.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


# --- SAE features --------------------------------------------------------------------------


class FeatureSum(VGroup):
    """One position's residual vector as the sum of its top features, the bias and the rest.

    Rows, top to bottom: the residual ``x`` itself (its norm), the ``n`` most
    active features (``#id`` and activation; an activation is the length of the
    feature's vector), a line for the other active features, the shared bias
    ``b_dec`` and the error (what the features leave out, "dark matter") with its
    share of ``x``'s norm. Each bar's length is that term's norm on one scale;
    feature directions are not orthogonal, so the lengths do not add up to ``x``'s,
    and a note under the rows says so. The error's bar is hollow, in the muted
    colour: what the features leave out (blue means negative elsewhere).

    Attributes:
        position: The prompt position.
        shown_ids: The features drawn, most active first.
        shown_acts: Their activations.
        active: How many features are active there (at most ``k``).
        rows: ``VGroup`` of rows, each ``VGroup(name, bar, value, ...)``; named in
            ``row_names`` (``"x"``, feature ids as strings, ``"others"``, ``"bias"``,
            ``"error"``).
        share: The error's share of ``x``'s norm.
        scale: Scene units per residual unit.
        note: The line under the rows (the lengths do not add up), or None.

    """

    def __init__(
        self,
        view: TraceView,
        position: int,
        width: float,
        height: float,
        n: int = 5,
        note: bool = True,
    ) -> None:
        super().__init__()
        trace, theme = view.trace, view.theme
        f = trace.require("features")
        self.view, self.trace, self.theme, self.features = view, trace, theme, f
        p = int(position) % trace.n_positions
        self.position = p
        acts = np.asarray(f.acts[p], dtype=float)
        self.active = int((acts > 0).sum())
        fixed = 4  # x, others, bias, error
        self.note = paragraph(NOTE, style.MIN_TEXT, theme.muted, max_width=width - 0.1, max_lines=3)
        if note:
            height -= self.note.height + 0.2
        n = max(1, min(n, self.active, int(height // ROW) - fixed))
        self.shown_ids = [int(i) for i in f.ids[p, :n]]
        self.shown_acts = [float(a) for a in acts[:n]]
        self.share = dark_matter_share(f, p)
        name_w = max(measure(f"#{max(self.shown_ids, default=0)}", style.MIN_TEXT), 1.4) + 0.2
        value_w = measure("000.0", style.MIN_TEXT, style.MONO) + 0.2
        notes = {
            "x": f"after layer {f.layer}",
            "bias": "shared",
            "error": f"dark matter {self.share:.0%}",
        }
        lengths = {
            "x": float(f.resid_norm[p]),
            "bias": float(f.bias_norm),
            "error": float(f.error_norm[p]),
        }
        # One scale for every bar: the longest that keeps each row's value and note inside.
        room_for = {
            key: width - name_w - value_w - (label(notes[key], style.MIN_TEXT).width + 0.45)
            for key in lengths
        }
        self.scale = min(
            [max(room_for[key], 0.2) / max(v, 1e-9) for key, v in lengths.items()]
            + [(width - name_w - value_w) / max(a, 1e-9) for a in self.shown_acts]
        )
        bar_w = max(lengths.values()) * self.scale
        self.row_h = min(0.6, height / (n + fixed))
        self.name_w, self.bar_w, self.value_w = name_w, bar_w, value_w
        self.rows, self.row_names = VGroup(), []
        rest = self.active - n
        others = float(acts[n:].sum())
        specs = [("x", "‖x‖", lengths["x"], theme.foreground, notes["x"])]
        specs += [
            (str(i), f"#{i}", a, theme.prob, "") for i, a in zip(self.shown_ids, self.shown_acts)
        ]
        specs += [
            ("others", f"+{rest} more", None, theme.muted, f"(Σ act {others:.1f})" if rest else ""),
            ("bias", "b_dec", lengths["bias"], theme.muted, notes["bias"]),
            ("error", "error", lengths["error"], theme.muted, notes["error"]),
        ]
        for i, (key, name, value, color, tag) in enumerate(specs):
            self.rows.add(self._row(i, name, value, color, tag))
            self.row_names.append(key)
        self.add(self.rows)
        if note:
            self.add(self.note.next_to(self.rows, DOWN, buff=0.2).align_to(self.rows, LEFT))
        else:
            self.note = None
        self.move_to([0.0, 0.0, 0.0])

    @staticmethod
    def least_height(width: float) -> float:
        """The height the block needs ``width`` wide: one feature's row, the others, the note."""
        note = paragraph(NOTE, style.MIN_TEXT, max_width=width - 0.1, max_lines=3)
        return 5 * ROW + note.height + 0.2

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int = -1,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        n: int = 5,
        note: bool = True,
    ) -> FeatureSum:
        """The sum at ``position`` (negative from the end), with ``n`` features at most.

        Args:
            trace: A trace with a ``features`` section, or the path of one.
            position: Prompt position.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            n: Features drawn at most (fewer when the room is short or fewer are active).
            note: Say under the rows that the lengths do not add up (:data:`NOTE`);
                ``False`` leaves it to the caller (a scene's caption).

        Returns:
            The block, centred on the origin.

        """
        w, h = room(width, height)
        return cls(TraceView.of(trace, theme), position, w, h, n, note)

    def _row(self, i: int, name: str, value: float | None, color: object, note: str) -> VGroup:
        theme, y = self.theme, -i * self.row_h
        words = label(name, style.MIN_TEXT, theme.foreground if i else theme.highlight)
        center_on(words, [words.width / 2, y, 0])
        x0 = self.name_w
        parts = [words]
        if value is not None:
            length = max(value * self.scale, 0.02)
            hollow = name == "error"  # what the features leave out: an outline
            bar = Rectangle(
                width=length,
                height=self.row_h * 0.6,
                stroke_width=2 if hollow else 0,
                stroke_color=color,
                fill_color=color,
                fill_opacity=0.0 if hollow else 0.95,
            ).move_to([x0 + length / 2, y, 0])
            digits = number(f"{value:.1f}", style.MIN_TEXT, theme.foreground)
            center_on(digits, [x0 + length + 0.15 + digits.width / 2, y, 0])
            parts += [bar, digits]
            end = digits.get_right()[0]
        else:
            end = x0
        if note:
            tag = label(note, style.MIN_TEXT, theme.muted)
            center_on(tag, [end + 0.25 + tag.width / 2, y, 0])
            parts.append(tag)
        row = VGroup(*parts)
        row.value = value
        return row

    def row(self, key: str) -> VGroup:
        """The row named ``key`` (``"x"``, a feature id as a string, ``"bias"``, ``"error"``)."""
        return self.rows[self.row_names.index(key)]


class FeatureCard(VGroup):
    """One feature's card: its id and frequency, a context it fires on, the tokens it promotes.

    The context is the feature's top-activating window from the training text
    (``card_contexts``), cut around the activating token (``card_marked``), which
    is drawn in the highlight colour; "promotes" lists the first tokens of
    ``card_promoted`` (through ``W_U``).

    Attributes:
        feature: The feature id.
        title: "#id · fires on x% of tokens".
        context: The context line (a VGroup of token labels; ``marked`` is the activating one).
        marked: The activating token's label (or ``None`` when the card has no context).
        promoted: The "promotes" line.

    """

    def __init__(self, view: TraceView, feature: int, width: float) -> None:
        super().__init__()
        trace, theme = view.trace, view.theme
        f = trace.require("features")
        hits = np.nonzero(np.asarray(f.card_ids) == int(feature))[0]
        if not len(hits):
            raise MechvizError(f"This trace keeps no card for feature {feature}.")
        c = int(hits[0])
        self.feature = int(feature)
        freq = float(f.card_frequency[c])
        self.title = label(
            f"#{feature} · fires on {_percent(freq)} of tokens",
            style.MIN_TEXT,
            theme.foreground,
            max_width=width,
        )
        self.context, self.marked = self._context(view, f, c, width)
        promoted = [shown(view.vocab_text(int(t))) for t in f.card_promoted[c] if t >= 0]
        line = "promotes: " + "  ".join(promoted[:4])
        self.promoted = label(line, style.MIN_TEXT, theme.muted, max_width=width)
        self.add(self.title, self.context, self.promoted)
        self.arrange(DOWN, buff=0.2, aligned_edge=LEFT)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        feature: int,
        *,
        width: float | None = None,
        theme: Theme | str | None = None,
    ) -> FeatureCard:
        """The card of ``feature`` (one of ``trace.features.card_ids``), fitted to ``width``."""
        w, _ = room(width, None)
        return cls(TraceView.of(trace, theme), feature, w)

    @staticmethod
    def _context(view: TraceView, f: Features, c: int, width: float) -> tuple[VGroup, object]:
        """The top context's tokens around the marked one, as wide as fits ``width``."""
        theme = view.theme
        ids = [int(t) for t in f.card_contexts[c, 0]]
        mark = int(f.card_marked[c, 0])
        if float(f.card_acts[c, 0]) <= 0 or not (0 <= mark < len(ids)) or ids[mark] < 0:
            words = label("(no context kept)", style.MIN_TEXT, theme.muted)
            return VGroup(words), None
        texts = {i: view.vocab_text(t).replace("\n", "⏎") for i, t in enumerate(ids) if t >= 0}
        lo = hi = mark
        used = measure(texts[mark], style.MIN_TEXT) + 0.3

        def grow(i: int) -> bool:
            nonlocal used
            if i not in texts:
                return False
            cost = measure(texts[i], style.MIN_TEXT) + 0.05
            if used + cost > width - 0.4:
                return False
            used += cost
            return True

        moved = True
        while moved:
            moved = False
            if grow(lo - 1):
                lo, moved = lo - 1, True
            if grow(hi + 1):
                hi, moved = hi + 1, True
        text = "".join(texts[i] for i in range(lo, hi + 1))
        before = "".join(texts[i] for i in range(lo, mark))
        after = "".join(texts[i] for i in range(mark + 1, hi + 1))
        parts = VGroup()
        # Inside a line the token keeps its own space, unless it is nothing but
        # white space (a blank token would draw nothing): then its marker shows.
        plain = bool(before) and bool(texts[mark].strip())
        marked = label(texts[mark] if plain else shown(texts[mark]), style.MIN_TEXT)
        marked.set_color(theme.background)
        box = Rectangle(
            width=marked.width + 0.16,
            height=style.cap_height(style.MIN_TEXT) * 1.9,
            stroke_width=0,
            fill_color=theme.highlight,
            fill_opacity=1.0,
        )
        x = 0.0
        if before.strip():
            left = label(before, style.MIN_TEXT, theme.foreground)
            center_on(left, [left.width / 2, 0, 0])
            parts.add(left)
            x = left.width + 0.12
        box.move_to([x + box.width / 2, 0, 0])
        center_on(marked, box.get_center())
        marked.set_color(theme.text_on(theme.highlight))
        parts.add(box, marked)
        x = box.get_right()[0] + 0.12
        if after.strip():
            right = label(after, style.MIN_TEXT, theme.foreground)
            center_on(right, [x + right.width / 2, 0, 0])
            parts.add(right)
        parts.text = text
        return parts, marked


def _percent(share: float) -> str:
    if share >= 0.01:
        return f"{share:.0%}"
    if share >= 0.001:
        return f"{share:.1%}"
    return "<0.1%"

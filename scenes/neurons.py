"""Neurons: which MLP neurons fire on which tokens, from early to late layers (after Neuroscope)."""

from __future__ import annotations

import math

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, VGroup

from mechviz.errors import MechvizError
from mechviz.tracing.neurons import Selection, select
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.neurons import ActivationLegend, LayerCounts, NeuronRow, format_threshold
from mechviz.visual.text import block_height, label

ROW_BUFF = 0.22  # between neuron rows (scene units)


class Neurons(TraceScene):
    """Per layer, the MLP neurons past a threshold, each as the prompt tinted by its activation.

    The rule (a neuron is selected when its activation is above ``above`` on
    one token at least, or below ``below``) and its thresholds come from the
    trace (``trace.neurons``), or from the settings' ``above``, ``below`` and
    ``relative`` when they have them.
    """

    beats = {
        "rule": "the selection rule, and how many neurons of d_mlp pass in each layer",
        "layers": "early to late layers: the most extreme selected neurons, tokens coloured",
        "contrast": "the first and last layer side by side, and what the recorded values show",
    }
    n_rows = 8  # neurons shown per layer at most, most extreme first (tall frames fit 8)
    n_pages = 6  # layers visited in "layers", evenly spaced from the first to the last
    page_time = 1.4  # seconds each layer stays on screen

    def construct(self) -> None:
        self.selection = self.get_selection()  # one sentence if the trace has no `neurons`
        self.show_title("Which MLP neurons fire on which tokens")
        with self.beat("rule"):
            self.show_rule()
        with self.beat("layers"):
            self.show_layers()
        with self.beat("contrast"):
            self.show_contrast()

    # --- beats ------------------------------------------------------------------------
    def show_rule(self) -> None:
        s = self.selection
        self.caption(
            f"Selected: {self.rule_text()} on some token"
            + (" (σ: the layer's std)" if s.relative else "")
            + f"; {int(s.count.min()):,} to {int(s.count.max()):,} of {s.d_mlp:,} per layer."
        )
        box = self.content
        legend = ActivationLegend.for_selection(s, self.theme, box.width)
        height = min(box.height - legend.height - 0.5, 5.0 if self.portrait else 3.6)
        chart = LayerCounts(s.count, s.d_mlp, self.theme, min(box.width, 11.0), height)
        group = VGroup(chart, legend).arrange(DOWN, buff=0.5).move_to(box.center)
        self.swap(None, group, run_time=0.6)
        self.wait(1.2)
        self.overview = group

    def show_layers(self) -> None:
        self.caption(
            "Each row is one neuron: the prompt once, each token coloured by the "
            "neuron's activation there."
        )
        strip, rows_box = self.get_strip()
        self.swap(self.overview, strip, run_time=0.5)
        page = None
        self.pages: list[VGroup] = []  # every page shown, in order (tests read them)
        for layer in self.page_layers():
            self.counts.mark(layer)
            new = self.get_page(layer, rows_box)
            self.swap(page, new, run_time=0.5)
            self.wait(self.page_time)
            self.pages.append(new)
            page = new
        self.page = page

    def show_contrast(self) -> None:
        first, last = 0, self.trace.n_layers - 1
        early, late = self.thirds()
        above_e, below_e = self.shares(early)
        above_l, below_l = self.shares(late)
        self.caption(
            f"Top {self.trace.neurons.ids.shape[1]} per layer: {self.threshold_text('above')}"
            f" on {above_e:.0%} of tokens in layers {_span(early)}, {above_l:.0%} in "
            f"{_span(late)}; {self.threshold_text('below')} on {below_e:.0%}, {below_l:.0%}."
        )
        box = self.rows_box
        axis = "y" if self.frame.width < 1.3 * self.frame.height else "x"  # 1:1 stacks too
        left, right = box.split(axis, 0.5, gap=0.5)
        pair = VGroup(self.get_page(first, left), self.get_page(last, right))
        form = max(page.form for page in pair)
        if any(page.form != form for page in pair):  # both headers in the same words
            pair = VGroup(self.get_page(first, left, form), self.get_page(last, right, form))
        self.counts.mark(last)
        self.swap(self.page, pair, run_time=0.5)
        self.pages += list(pair)
        self.wait(1.5)

    # --- builders ---------------------------------------------------------------------
    def get_selection(self) -> Selection:
        """The selection rule of the settings (if they name one), else the trace's."""
        self.trace.require("neurons")
        settings = self.settings
        return select(
            self.trace,
            getattr(settings, "above", None),
            getattr(settings, "below", None),
            getattr(settings, "relative", None),
        )

    def rule_text(self) -> str:
        """The rule in words: "above 3 or below 0" ("above 3σ" for relative thresholds)."""
        return f"{self.threshold_text('above')} or {self.threshold_text('below')}"

    def threshold_text(self, side: str) -> str:
        """One threshold in words: "above 3", "below 0", "above 3σ" (0 needs no unit)."""
        value = getattr(self.selection, side)
        unit = "σ" if self.selection.relative and value != 0 else ""
        return f"{side} {format_threshold(value)}{unit}"

    def page_layers(self) -> list[int]:
        """The layers "layers" visits: the settings' ``layers``, else evenly spaced."""
        L = self.trace.n_layers
        chosen = self.settings.layers
        if chosen:
            bad = [layer for layer in chosen if not 0 <= layer < L]
            if bad:
                raise MechvizError(
                    f"Layer {bad[0]} is out of range; this model has layers 0 to {L - 1}."
                )
            return list(chosen)
        n = min(self.n_pages, L)
        return sorted({int(round(x)) for x in np.linspace(0, L - 1, n)})

    def get_strip(self) -> tuple[VGroup, Box]:
        """The counts chart and the legend at the top of the room; the room left for rows."""
        box, s = self.content, self.selection
        if self.portrait:
            legend = ActivationLegend.for_selection(s, self.theme, box.width)
            chart = LayerCounts(s.count, s.d_mlp, self.theme, box.width, 1.5)
            strip = VGroup(chart, legend).arrange(DOWN, buff=0.25, aligned_edge=LEFT)
        else:
            legend = ActivationLegend.for_selection(s, self.theme, 4.5)  # 2 x 2
            chart = LayerCounts(s.count, s.d_mlp, self.theme, box.width - legend.width - 0.6, 1.5)
            strip = VGroup(chart, legend).arrange(RIGHT, buff=0.6, aligned_edge=UP)
        strip.move_to([box.center[0], box.y1 - strip.height / 2, 0])
        self.counts = chart
        self.rows_box = Box(box.x0, box.x1, box.y0, strip.get_bottom()[1] - 0.35)
        return strip, self.rows_box

    def get_page(self, layer: int, box: Box, form: int = 0) -> VGroup:
        """Layer ``layer``'s header and its most extreme selected neurons, top of ``box``.

        The header is the first of :meth:`header_texts` from ``form`` on that fits.
        """
        s, trace = self.selection, self.trace
        room = box.height - block_height(1, style.BODY_TEXT) - ROW_BUFF
        rows: list[NeuronRow] = []
        used = 0.0
        for neuron, values in zip(s.ids[layer][: self.n_rows], s.values[layer]):
            row = NeuronRow.for_selection(
                trace, s, layer, int(neuron), values, self.theme, box.width, room
            )
            if rows and used + ROW_BUFF + row.height > room:
                break
            used += row.height + (ROW_BUFF if rows else 0.0)
            rows.append(row)
        texts = self.header_texts(layer, len(rows))
        fits = [k for k, t in enumerate(texts) if k >= form and label(t).width <= box.width]
        page_form = fits[0] if fits else len(texts) - 1
        header = label(
            texts[page_form],
            style.BODY_TEXT,
            self.theme.foreground,
            max_width=box.width,
        )
        page = VGroup(header, *rows).arrange(DOWN, buff=ROW_BUFF, aligned_edge=LEFT)
        page.move_to([box.x0 + page.width / 2, box.y1 - page.height / 2, 0])
        page.layer, page.rows, page.header, page.form = layer, rows, header, page_form
        return page

    def header_texts(self, layer: int, shown: int) -> list[str]:
        """The page's header, longest first: "Layer 12 · showing 5 of 1,204 selected", ..."""
        count = int(self.selection.count[layer])
        if count == 0:
            return [
                f"Layer {layer} · none of {self.selection.d_mlp:,} selected",
                f"L{layer} · none",
            ]
        return [
            f"Layer {layer} · showing {shown} of {count:,} selected",
            f"Layer {layer} · {shown} of {count:,} selected",
            f"L{layer} · {shown} of {count:,}",
        ]

    def thirds(self) -> tuple[list[int], list[int]]:
        """The first and the last third of the layers (at least one layer each)."""
        L = self.trace.n_layers
        third = max(1, math.ceil(L / 3))
        return list(range(min(third, L))), list(range(max(L - third, 0), L))

    def shares(self, layers: list[int]) -> tuple[float, float]:
        """Mean share of tokens above ``hi`` and below ``lo``, per stored selected neuron.

        Returns:
            ``(above, below)`` over every stored selected neuron of ``layers``
            (each neuron weighs the same); ``nan`` if they store none.

        """
        s = self.selection
        above, below = [], []
        for layer in layers:
            values = np.asarray(s.values[layer], dtype=np.float64)
            above += list((values > s.hi[layer]).mean(axis=-1))
            below += list((values < s.lo[layer]).mean(axis=-1))
        if not above:
            return float("nan"), float("nan")
        return float(np.mean(above)), float(np.mean(below))


def _span(layers: list[int]) -> str:
    return f"{layers[0]}–{layers[-1]}" if len(layers) > 1 else str(layers[0])


__all__ = ["Neurons"]

"""Neuroscope-style neuron views: one neuron's prompt coloured by activation, counts per layer.

:class:`NeuronRow` writes the prompt once for one MLP neuron, each token on a
tile coloured by the neuron's activation there (the seed's classes, from
:func:`mechviz.tracing.neurons.activation_class`: red above ``above + 0.5``, orange
from ``above`` to ``above + 0.5``, grey from ``below`` to ``above``, blue below
``below``), with the neuron's name ("L12 N345") and its peak activation.
:class:`LayerCounts` is the small bar chart of how many neurons of ``d_mlp``
each layer selects; :class:`ActivationLegend` names the four colours with
their thresholds. Every number is read from ``trace.neurons``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, Rectangle, RoundedRectangle, VGroup

from mechviz.errors import MechvizError
from mechviz.model.tokens import readable_tokens, shown
from mechviz.tracing.neurons import CLASSES, Selection, activation_class, select
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.blocks import resolve_theme, resolve_trace, room
from mechviz.visual.style import Theme
from mechviz.visual.text import _clone, center_on, label, measure, number

__all__ = ["ActivationLegend", "LayerCounts", "NeuronRow", "class_colors", "peak_value"]

TILE_PAD = 0.06  # text to tile edge, each side (scene units)
TILE_BUFF = 0.05  # between tiles
LINE_BUFF = 0.1  # between wrapped lines of one row
GAP = 0.12  # name to tokens, tokens to peak
MIN_TOKEN_ROOM = 5.0  # narrower than this beside the name: the name goes above the tokens


def class_colors(theme: Theme) -> dict[str, object]:
    """The tile colour of each activation class in ``theme`` (the seed's red, orange, grey, blue).

    Returns:
        ``{"high": red, "mid": orange, "low": grey, "neg": blue}``.

    """
    return {
        "high": theme.positive,
        "mid": theme.attention,
        "low": theme.faint,
        "neg": theme.negative,
    }


def peak_value(trace: Trace, layer: int, neuron: int) -> float:
    """The neuron's most extreme recorded activation (``neurons.peak``), sign kept."""
    high, low = (float(v) for v in trace.require("neurons").peak[layer, neuron])
    return high if abs(high) >= abs(low) else low


def format_value(value: float) -> str:
    """An activation as drawn: signed, 2 decimals under 10, 1 under 100, else none."""
    size = abs(value)
    digits = 2 if size < 10 else 1 if size < 100 else 0
    return f"{value:+.{digits}f}"


def format_threshold(value: float) -> str:
    """A threshold as drawn in the legend and captions ("3", "3.5", "0.25")."""
    return f"{value:.3g}"


def _stored_row(trace: Trace, layer: int, neuron: int) -> np.ndarray:
    """The recorded activations of a stored neuron at every position, ``[P]``."""
    n = trace.require("neurons")
    if not 0 <= layer < n.ids.shape[0]:
        raise MechvizError(f"Layer {layer} is out of range; the model has {n.ids.shape[0]}.")
    where = np.nonzero(n.ids[layer] == neuron)[0]
    if where.size == 0:
        raise MechvizError(
            f"Neuron {neuron} of layer {layer} is not stored in this trace (it keeps the "
            f"{n.ids.shape[1]} most extreme selected neurons of each layer)."
        )
    return np.asarray(n.values[layer, where[0]], dtype=np.float64)


class NeuronRow(VGroup):
    """One neuron: its name, the prompt with each token tinted by its activation, its peak.

    Args:
        texts: The prompt's tokens (readable text; drawn through ``shown``).
        values: The neuron's activation at each token, ``[P]``.
        hi: Upper threshold in activation units (the layer's ``Selection.hi``).
        lo: Lower threshold (``Selection.lo``).
        margin: The orange band's width above ``hi`` (``Selection.margin``).
        layer: The neuron's layer.
        neuron: Its index in the layer's ``d_mlp``.
        peak: Its most extreme activation over the prompt (``neurons.peak``).
        theme: Colours.
        width: The row's widest (scene units); tokens wrap onto more lines.
        height: The row's tallest; lines that do not fit are left out and a
            "+n" tile says how many tokens.
        font_size: Manim font size of every text (at least ``style.MIN_TEXT``).
        name_width: Width of the name column (default: fits "L99 N99999").

    Attributes:
        tiles: One ``VGroup(box, text)`` per token drawn, in prompt order.
        classes: Each drawn token's activation class (``"high"``, ``"mid"``, ``"low"``, ``"neg"``).
        values: The activations of the drawn tokens.
        name: "L12 N345" (the words and the digits, two texts).
        peak_label: The peak value, coloured by its class.
        more: The "+n" label when tokens were left out, else ``None``.

    """

    def __init__(
        self,
        texts: Sequence[str],
        values: np.ndarray,
        hi: float,
        lo: float,
        margin: float,
        layer: int,
        neuron: int,
        peak: float,
        theme: Theme,
        width: float,
        height: float = float("inf"),
        font_size: float = style.MIN_TEXT,
        name_width: float | None = None,
    ) -> None:
        super().__init__()
        self.theme, self.layer, self.neuron = theme, int(layer), int(neuron)
        self.hi, self.lo, self.margin = float(hi), float(lo), float(margin)
        colors = class_colors(theme)
        self.name = self._name(font_size)
        peak_kind = activation_class(peak, hi, lo, margin)
        ink = theme.foreground if peak_kind == "low" else colors[peak_kind]
        self.peak_label = number(format_value(peak), font_size, ink, font=style.FONT)
        name_w = name_width if name_width is not None else _name_width(font_size)
        peak_w = label("+0.00", font_size).width  # format_value writes at most 5 characters
        room_beside = width - name_w - peak_w - 2 * GAP
        cap = style.cap_height(font_size)
        tile_h = cap * 2.3
        values = np.asarray(values, dtype=np.float64)
        self.classes = [activation_class(float(v), hi, lo, margin) for v in values[: len(texts)]]
        texts = list(texts)[: len(self.classes)]

        def tiles(room_w: float) -> list[VGroup]:
            return [
                self._tile(t, k, colors[k], font_size, tile_h, room_w)
                for t, k in zip(texts, self.classes)
            ]

        self.tiles = tiles(max(room_beside, 1.0))
        # Beside the name when the whole prompt fits there on one line, or the room is wide.
        beside = room_beside >= min(MIN_TOKEN_ROOM, _width(self.tiles))
        if not beside:
            self.tiles = tiles(width)
        token_w = room_beside if beside else width
        lines_room = height if beside else height - tile_h - LINE_BUFF
        self.more = None
        lines = self._flow(token_w, tile_h, lines_room, font_size)
        body = VGroup(*lines).arrange(DOWN, buff=LINE_BUFF, aligned_edge=LEFT)
        self.values = values[: len(self.tiles)]
        self.add(*self.tiles, *([self.more] if self.more is not None else []))
        if beside:
            body.shift(RIGHT * (name_w + GAP) - body.get_left())
            y = lines[0].get_center()[1]
        else:
            body.shift(-body.get_left())
            y = body.get_top()[1] + LINE_BUFF + tile_h / 2
        self.name.shift(np.array([-self.name.get_left()[0], y, 0.0]))  # built on y = 0
        center_on(self.peak_label, [0.0, y, 0.0])
        self.peak_label.shift(RIGHT * (width - self.peak_label.get_right()[0]))
        self.add(self.name, self.peak_label)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        layer: int,
        neuron: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        above: float | None = None,
        below: float | None = None,
        relative: bool | None = None,
        font_size: float = style.MIN_TEXT,
    ) -> NeuronRow:
        """One stored neuron of ``layer``, its tokens coloured under the selection rule.

        Args:
            trace: A trace with a ``neurons`` section, or the path of one.
            layer: The layer.
            neuron: The neuron's index in ``d_mlp`` (default: the layer's most
                extreme stored neuron); it must be one the trace stores.
            width: Room's width (scene units; default: the frame less margins).
            height: Room's height (default: the frame less margins); tokens that do
                not fit are counted on a "+n" tile.
            theme: A theme or its name (default: the current render's).
            above: Upper threshold (default: the trace's rule).
            below: Lower threshold (default: the trace's rule).
            relative: Thresholds in units of the layer's std (default: the trace's).
            font_size: Manim font size (at least ``style.MIN_TEXT``).

        Returns:
            The row, centred on the origin.

        Raises:
            MechvizError: The trace has no ``neurons`` section, the layer is out of
                range, the neuron is not stored, or ``above <= below``.

        """
        trace = resolve_trace(trace)
        theme = resolve_theme(theme)
        selection = select(trace, above, below, relative)
        if neuron is None:
            stored = trace.require("neurons").ids[layer]
            if stored[0] < 0:
                raise MechvizError(f"Layer {layer} stores no selected neuron in this trace.")
            neuron = int(stored[0])
        values = _stored_row(trace, layer, neuron)
        w, h = room(width, height)
        return cls.for_selection(
            trace, selection, layer, neuron, values, theme, w, h, font_size=font_size
        )

    @classmethod
    def for_selection(
        cls,
        trace: Trace,
        selection: Selection,
        layer: int,
        neuron: int,
        values: np.ndarray,
        theme: Theme,
        width: float,
        height: float = float("inf"),
        font_size: float = style.MIN_TEXT,
    ) -> NeuronRow:
        """A row from a :class:`Selection` already made (scenes build many rows from one)."""
        return cls(
            readable_tokens(trace.tokens.text),
            values,
            float(selection.hi[layer]),
            float(selection.lo[layer]),
            float(selection.margin[layer]),
            layer,
            neuron,
            peak_value(trace, layer, neuron),
            theme,
            width,
            height,
            font_size,
        )

    # --- parts -----------------------------------------------------------------------
    def _name(self, size: float) -> VGroup:
        words = label(f"L{self.layer} N", size, self.theme.foreground)
        digits = number(str(self.neuron), size, self.theme.foreground, font=style.FONT)
        digits.next_to(words, RIGHT, buff=0.03)
        center_on(digits, [digits.get_center()[0], 0, 0])
        center_on(words, [words.get_center()[0], 0, 0])
        group = VGroup(words, digits)
        group.text = f"L{self.layer} N{self.neuron}"
        return group

    def _tile(
        self, text: str, kind: str, color: object, size: float, tile_h: float, room_w: float
    ) -> VGroup:
        fill = color
        ink = self.theme.text_on(fill)  # type: ignore[arg-type]
        mob = label(shown(text), size, ink, max_width=max(room_w - 2 * TILE_PAD, 0.4))
        box = tile_box(mob.width + 2 * TILE_PAD, tile_h, fill)
        center_on(mob, box.get_center())
        tile = VGroup(box, mob)
        tile.kind = kind
        return tile

    def _flow(self, width: float, tile_h: float, height: float, size: float) -> list[VGroup]:
        """Tiles in lines no wider than ``width``, as many lines as fit ``height``."""
        lines: list[list[VGroup]] = [[]]
        used = 0.0
        for tile in self.tiles:
            if lines[-1] and used + TILE_BUFF + tile.width > width:
                lines.append([])
                used = 0.0
            used += tile.width + (TILE_BUFF if lines[-1] else 0.0)
            lines[-1].append(tile)
        fit = max(1, int((height + LINE_BUFF) // (tile_h + LINE_BUFF)))
        if len(lines) > fit:
            lines = lines[:fit]
            kept = sum(len(line) for line in lines)
            more = label(f"+{len(self.tiles) - kept + 9}", size, self.theme.muted)
            last = lines[-1]  # room for the "+n" note at the end of the last line
            while len(last) > 1 and _width(last) + 0.12 + more.width > width:
                last.pop()
            kept = sum(len(line) for line in lines)
            more = label(f"+{len(self.tiles) - kept}", size, self.theme.muted)
            self.tiles = self.tiles[:kept]
            self.classes = self.classes[:kept]
            self.more = more
        groups = [VGroup(*line).arrange(RIGHT, buff=TILE_BUFF) for line in lines]
        if self.more is not None:
            center_on(self.more, groups[-1].get_right() + RIGHT * (0.12 + self.more.width / 2))
            groups[-1] = VGroup(*groups[-1], self.more)
        return groups


_TILES: dict[float, RoundedRectangle] = {}


def tile_box(width: float, height: float, color: object) -> RoundedRectangle:
    """A filled rounded rectangle centred on the origin, cheaply.

    Manim builds a ``RoundedRectangle`` in ~13 ms (arcs, then rounding); a
    prompt of 20 tokens in 5 rows needs 100. This copies one of width 1 per
    height and moves its right half and left half apart, so corners stay round.
    """
    key = round(float(height), 4)
    template = _TILES.get(key)
    if template is None:
        template = RoundedRectangle(
            corner_radius=0.05, width=1.0, height=height, stroke_width=0, fill_opacity=1.0
        )
        _TILES[key] = template
    box = _clone(template)
    points = box.points
    spread = max(width, 0.12) / 2 - 0.5
    points[:, 0] += np.where(points[:, 0] > 0, spread, -spread)
    box.set_fill(color, opacity=1.0)
    return box


def _width(tiles: Sequence[VGroup]) -> float:
    return sum(t.width for t in tiles) + TILE_BUFF * max(len(tiles) - 1, 0)


def _name_width(size: float) -> float:
    """Width of the name column: "L99 N9999" in the mono font."""
    return label("L99 N", size).width + label("9999", size).width + 0.03


class LayerCounts(VGroup):
    """How many neurons of ``d_mlp`` each layer selects, as a bar per layer; one layer marked.

    Args:
        count: ``[L]`` neurons selected per layer (``Selection.count``).
        d_mlp: Neurons per layer (the bars' full height).
        theme: Colours.
        width: The chart's width (scene units).
        height: The chart's height, with its title and axis labels.

    Attributes:
        count: The counts drawn.
        d_mlp: The bars' full scale.
        title: "selected of 1,536, per layer".
        bars: One rectangle per layer, height ``count / d_mlp`` of the area.
        area: The bars' frame (full height = ``d_mlp``).
        axis: The first and last layer's numbers under the bars.
        marker: The frame around the marked layer's column (hidden until :meth:`mark`).
        layer: The marked layer, or ``None``.

    """

    def __init__(
        self, count: np.ndarray, d_mlp: int, theme: Theme, width: float, height: float
    ) -> None:
        super().__init__()
        self.theme = theme
        self.count = np.asarray(count, dtype=np.int64)
        self.d_mlp = int(d_mlp)
        self.layer: int | None = None
        L = len(self.count)
        size = style.MIN_TEXT
        cap = style.cap_height(size)
        titles = [f"neurons selected per layer, of {self.d_mlp:,}", f"selected, of {self.d_mlp:,}"]
        fits = [t for t in titles if measure(t, size) <= width]
        self.title = label(fits[0] if fits else titles[-1], size, theme.muted, max_width=width)
        area_h = max(height - 2 * cap - 0.55, 0.3)
        self.area = Rectangle(
            width=width, height=area_h, stroke_color=theme.faint, stroke_width=1.5
        )
        self.area.next_to(self.title, DOWN, buff=0.18, aligned_edge=LEFT)
        step = width / L
        gap = min(step * 0.2, 0.04)
        bottom, left = self.area.get_bottom()[1], self.area.get_left()[0]
        self.bars = VGroup()
        for layer, value in enumerate(self.count):
            h = max(area_h * value / max(self.d_mlp, 1), 1e-3)
            bar = Rectangle(
                width=max(step - gap, 0.01),
                height=h,
                stroke_width=0,
                fill_color=theme.muted,
                fill_opacity=0.85 if value else 0.0,
            )
            bar.move_to([left + step * (layer + 0.5), bottom + h / 2, 0])
            self.bars.add(bar)
        first = number("0", size, theme.muted)
        last = number(str(L - 1), size, theme.muted)
        y = bottom - 0.14 - cap / 2
        center_on(first, [self.bars[0].get_center()[0], y, 0])
        center_on(last, [self.bars[-1].get_center()[0], y, 0])
        first.shift(RIGHT * max(0.0, left - first.get_left()[0]))
        last.shift(LEFT * max(0.0, last.get_right()[0] - self.area.get_right()[0]))
        word = label("layer", size, theme.muted)
        center_on(word, [self.area.get_center()[0], y, 0])
        self.axis = VGroup(first, word, last) if L > 1 else VGroup(first, word)
        if L > 1 and word.get_left()[0] - first.get_right()[0] < 0.1:
            self.axis = VGroup(first, last)
        self.marker = Rectangle(
            width=step + 0.04, height=area_h + 0.1, stroke_color=theme.highlight, stroke_width=3
        ).set_stroke(opacity=0.0)
        self.marker.move_to(self.bars[0].get_center()).set_y(self.area.get_center()[1])
        self.add(self.area, self.bars, self.title, self.axis, self.marker)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        layer: int | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        above: float | None = None,
        below: float | None = None,
        relative: bool | None = None,
    ) -> LayerCounts:
        """The per-layer counts of a trace's selection, ``layer`` marked.

        Args:
            trace: A trace with a ``neurons`` section, or the path of one.
            layer: The layer to mark (default: none).
            width: Room's width (scene units; default: the frame less margins).
            height: Room's height (default: the frame less margins, at most 3 units).
            theme: A theme or its name (default: the current render's).
            above: Upper threshold (default: the trace's rule; counts re-counted from ``peak``).
            below: Lower threshold (default: the trace's rule).
            relative: Thresholds in units of each layer's std (default: the trace's).

        Returns:
            The chart, centred on the origin.

        """
        trace = resolve_trace(trace)
        selection = select(trace, above, below, relative)
        w, h = room(width, height)
        chart = cls(selection.count, selection.d_mlp, resolve_theme(theme), w, min(h, 3.0))
        return chart.mark(layer) if layer is not None else chart

    def mark(self, layer: int | None) -> LayerCounts:
        """Mark ``layer`` (its bar in the highlight colour, its column framed); ``None`` clears.

        Returns:
            The chart itself.

        """
        for bar in self.bars:
            bar.set_fill(self.theme.muted)
        self.layer = layer
        if layer is None:
            self.marker.set_stroke(opacity=0.0)
            return self
        self.bars[layer].set_fill(self.theme.highlight)
        self.marker.set_x(self.bars[layer].get_center()[0]).set_stroke(opacity=1.0)
        return self


class ActivationLegend(VGroup):
    """The four colours of the activation classes and their thresholds.

    Args:
        above: Upper threshold as the rule gives it.
        below: Lower threshold.
        margin: The orange band's width, in the same units.
        relative: Thresholds in units of each layer's std (labels end in "σ").
        theme: Colours.
        width: The widest (scene units): one row, or two when one does not fit.

    Attributes:
        swatches: One square per class, in :data:`mechviz.tracing.neurons.CLASSES` order.
        labels: The thresholds of each class ("> 3.5", "3 – 3.5", "0 – 3", "< 0").

    """

    def __init__(
        self,
        above: float,
        below: float,
        margin: float,
        relative: bool,
        theme: Theme,
        width: float,
    ) -> None:
        super().__init__()

        def shown_value(value: float) -> str:  # "3σ" in units of the std; 0 is 0 in any unit
            text = format_threshold(value)
            return f"{text}σ" if relative and value != 0 else text

        a, b, top = (shown_value(v) for v in (above, below, above + margin))
        texts = {
            "high": f"> {top}",
            "mid": f"{a} – {top}",
            "low": f"{b} – {a}",
            "neg": f"< {b}",
        }
        colors = class_colors(theme)
        size = style.MIN_TEXT
        side = style.cap_height(size) * 1.6
        self.swatches, self.labels = VGroup(), VGroup()
        items = []
        for kind in CLASSES:
            swatch = RoundedRectangle(
                corner_radius=0.04,
                width=side,
                height=side,
                stroke_width=0,
                fill_color=colors[kind],
                fill_opacity=1.0,
            )
            text = label(texts[kind], size, theme.foreground)
            center_on(text, swatch.get_right() + RIGHT * (0.12 + text.width / 2))
            self.swatches.add(swatch)
            self.labels.add(text)
            items.append(VGroup(swatch, text))
        row = VGroup(*items).arrange(RIGHT, buff=0.35)
        if row.width > width:
            top_row = VGroup(*items[:2]).arrange(RIGHT, buff=0.35)
            low_row = VGroup(*items[2:]).arrange(RIGHT, buff=0.35)
            VGroup(top_row, low_row).arrange(DOWN, buff=0.16, aligned_edge=LEFT)
        self.add(*items)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        above: float | None = None,
        below: float | None = None,
        relative: bool | None = None,
    ) -> ActivationLegend:
        """The legend of a trace's selection rule (or of the thresholds given).

        Args:
            trace: A trace with a ``neurons`` section, or the path of one.
            width: Room's width (default: the frame less margins).
            height: Room's height (unused: the legend is one or two lines).
            theme: A theme or its name (default: the current render's).
            above: Upper threshold (default: the trace's rule).
            below: Lower threshold (default: the trace's rule).
            relative: Thresholds in units of each layer's std (default: the trace's).

        Returns:
            The legend, centred on the origin.

        """
        selection = select(resolve_trace(trace), above, below, relative)
        w, _ = room(width, height)
        return cls.for_selection(selection, resolve_theme(theme), w)

    @classmethod
    def for_selection(cls, selection: Selection, theme: Theme, width: float) -> ActivationLegend:
        """The legend of a :class:`Selection` already made."""
        from mechviz.tracing.neurons import MARGIN

        return cls(selection.above, selection.below, MARGIN, selection.relative, theme, width)

"""Activation patching as building blocks: the maps on one layer axis, their scale, the sites.

A trace's ``patching`` section (:class:`mechviz.tracing.schema.Patching`) holds, for each
site of the corrupt run, how much patching in the clean run's activation there
brings back the logit difference ``answer - wrong``: 1 is the clean run, 0 the
corrupt run. :class:`PatchingMaps` draws the three kinds of site as heatmaps that
share one vertical layer axis (the embedding at the bottom): the residual stream
(layer boundary x position), the heads (layer x head) and the MLPs (layer).
Colours run blue (-1) through the neutral (0) to red (+1) and stop there; a value
beyond keeps its number (:class:`PatchingLegend` says so). :func:`strongest_sites`
picks the sites a summary names; :class:`SiteList` lists them with their values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, Group, Rectangle, VGroup

from mechviz.analyses.readouts import row_name
from mechviz.errors import MechvizError
from mechviz.model.tokens import readable_tokens, shown
from mechviz.tracing.schema import Patching, Trace
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.mobjects import Heatmap, grid_image
from mechviz.visual.style import Theme
from mechviz.visual.text import block_height, center_on, label, measure, paragraph

KINDS = ("resid", "heads", "mlp")
TITLES = {"resid": "stream", "heads": "heads", "mlp": "MLP"}
SCALE = 1.0  # the colour runs -1 .. 1 and stops there; the numbers keep their value
LABEL_PITCH = 0.34  # rows closer than this get a label every few rows (MIN_TEXT + margin)
MIN_COL = 0.24  # a column narrower than this cannot hold a digit or a turned label
MAX_COL = 1.2  # wider cells add nothing but emptiness
MAX_PITCH = 0.5
PANEL_GAP = 0.3
TITLE_H = 0.42  # one line of MIN_TEXT and a margin
MAX_TURNED = 2.1  # the longest turned column label (scene units)
RUN_FLOOR = 0.5  # a stream site "restores" when it brings back at least half


def fmt(value: float) -> str:
    """A patching value as it is written on screen: two decimals, a true minus sign."""
    return f"{value:.2f}".replace("-", "−")


def section(trace: Trace) -> Patching:
    """The trace's ``patching`` section, or one sentence saying how to make one."""
    return trace.require("patching")


def column_texts(trace: Trace) -> list[str]:
    """Each position's label: the clean token, or ``clean/corrupt`` where the prompts differ."""
    p = section(trace)
    clean = readable_tokens(trace.tokens.text)
    corrupt = readable_tokens([trace.token_text(int(i)) for i in p.corrupt_ids])
    return [
        shown(a) if a == b else f"{shown(a)}/{shown(b).lstrip('·')}" for a, b in zip(clean, corrupt)
    ]


def differing(trace: Trace) -> list[int]:
    """Positions where the clean and the corrupt prompt have different tokens."""
    p = section(trace)
    return [i for i, (a, b) in enumerate(zip(trace.tokens.ids, p.corrupt_ids)) if int(a) != int(b)]


def kind_values(trace: Trace, kind: str) -> np.ndarray:
    """A kind's values as a matrix: ``resid [Y, P]``, ``heads [L, H]``, ``mlp [L, 1]``."""
    p = section(trace)
    if kind == "resid":
        return np.asarray(p.resid, dtype=np.float64)
    if kind == "heads":
        return np.asarray(p.heads, dtype=np.float64)
    if kind == "mlp":
        return np.asarray(p.mlp, dtype=np.float64)[:, None]
    raise MechvizError(f"Unknown patching site {kind!r}; choose one of {', '.join(KINDS)}.")


def patch_rgb(values: np.ndarray, theme: Theme) -> np.ndarray:
    """The colours of ``values`` (uint8 RGB): the diverging map over ``[-1, 1]``, clipped."""
    return style.diverging_rgb(np.asarray(values, dtype=np.float64), SCALE, theme)


# --- the sites a summary names ----------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A patched site (or a run of stream sites) and its recorded value.

    Attributes:
        kind: ``"resid"``, ``"heads"`` or ``"mlp"``.
        name: What the site is called on screen ("head 23.4", "MLP 0", "·is, 23–29").
        value: Its value (for a run of stream rows: the largest).
        text: The value as written ("0.93"; for a run "0.99–1.00").
        col: Column (position, head; 0 for an MLP).
        first: First row slot (0 = embed, ``l + 1`` = layer ``l``).
        last: Last row slot (the same as ``first`` for one site).

    """

    kind: str
    name: str
    value: float
    text: str
    col: int
    first: int
    last: int


def stream_runs(trace: Trace, floor: float = RUN_FLOOR) -> list[Site]:
    """Per position, the runs of consecutive stream rows whose value is at least ``floor``."""
    values = kind_values(trace, "resid")
    names = column_texts(trace)
    sites = []
    for col in range(values.shape[1]):
        rows = values[:, col] >= floor
        start = None
        for y in range(len(rows) + 1):
            if y < len(rows) and rows[y]:
                start = y if start is None else start
                continue
            if start is not None:
                run = values[start:y, col]
                span = row_name(start) if y - 1 == start else f"{row_name(start)}–{row_name(y - 1)}"
                lo, hi = fmt(float(run.min())), fmt(float(run.max()))
                sites.append(
                    Site(
                        "resid",
                        f"{names[col]}, {span}",
                        float(run.max()),
                        lo if lo == hi else f"{lo}–{hi}",
                        col,
                        start,
                        y - 1,
                    )
                )
                start = None
    return sites


def strongest_sites(trace: Trace, per_kind: int = 3, against: float = -0.1) -> list[Site]:
    """The sites a summary names, in this order.

    The stream's runs of rows at or above 0.5 (:func:`stream_runs`); the
    ``per_kind`` heads and MLPs that restore most (largest values, whatever
    they are); then the head and the MLP that push hardest the other way, when
    below ``against``. The first site of each kind is its strongest.
    """
    sites = stream_runs(trace)
    negatives = []
    for kind in ("heads", "mlp"):
        values = kind_values(trace, kind)
        flat = values.ravel()
        order = np.argsort(-flat, kind="stable")[:per_kind]
        for k in order:
            sites.append(_one(kind, int(k), values.shape[1], float(flat[k])))
        low = int(np.argmin(flat))
        if flat[low] < against:
            negatives.append(_one(kind, low, values.shape[1], float(flat[low])))
    return sites + negatives


def _one(kind: str, index: int, n_cols: int, value: float) -> Site:
    layer, col = divmod(index, n_cols)
    name = f"head {layer}.{col}" if kind == "heads" else f"MLP {layer}"
    return Site(kind, name, value, fmt(value), col, layer + 1, layer + 1)


# --- the maps ---------------------------------------------------------------------------


@dataclass
class MapsLayout:
    """Geometry of :class:`PatchingMaps` (scene units).

    Attributes:
        kinds: The panels, left to right.
        widths: Each panel's width.
        cols: Each panel's column count.
        pitch: One row slot's height.
        label_w: The row-label column's width (with its gap).
        col_h: The column-label band's height.
        upright: Each panel's column labels upright (else turned 90 degrees).
        step: A row label every ``step`` slots.
        note_h: The room of the note under the maps.
        room_w: The width of the room (the note may use all of it).

    """

    kinds: tuple[str, ...]
    widths: dict[str, float]
    cols: dict[str, int]
    pitch: float
    label_w: float
    col_h: float
    upright: dict[str, bool]
    step: int
    note_h: float
    room_w: float = 0.0

    @property
    def fits(self) -> bool:
        """Every column wide enough for its label."""
        return all(self.widths[k] / self.cols[k] >= MIN_COL - 1e-9 for k in self.kinds)


class PatchingMaps(Group):
    """The patching heatmaps side by side on one layer axis, the embedding at the bottom.

    Row slot 0 is the embedding (the stream only), slot ``l + 1`` is layer ``l``:
    the stream after it (``l_post``), its heads and its MLP. Columns: the prompt's
    positions (``clean/corrupt`` where the two prompts differ), the heads, one
    MLP column. Every row is drawn; when rows are too thin for a label each,
    every ``step``-th is labelled and :attr:`note` says so.

    Attributes:
        view: The trace view.
        layout: The geometry (:class:`MapsLayout`).
        kinds: The panels, left to right.
        grids: kind -> :class:`~mechviz.visual.mobjects.Heatmap` (image rows top to bottom).
        values: kind -> the values drawn, ``[rows, cols]`` in the image's order.
        titles: kind -> the panel's title (Text).
        col_labels: kind -> its column labels (VGroup).
        panels: kind -> a Group of its grid, title and column labels.
        row_labels: The row labels (Text), bottom to top.
        labelled: The row slots labelled, increasing.
        axis: The row labels and the ``layer`` heading (a VGroup).
        note: "labels every 3rd layer" when rows are left unlabelled, else ``None``.

    """

    def __init__(self, view: TraceView, layout: MapsLayout) -> None:
        super().__init__()
        self.view, self.layout, self.kinds = view, layout, layout.kinds
        trace = view.trace
        self.n_slots = trace.n_layers + 1
        self.first_slot = 0 if "resid" in self.kinds else 1  # the embedding is the stream's
        texts = column_texts(trace)
        swapped = set(differing(trace))
        grid_h = layout.pitch * (self.n_slots - self.first_slot)
        top = (layout.col_h + TITLE_H + grid_h + layout.note_h) / 2 - layout.col_h - TITLE_H
        total_w = layout.label_w + sum(layout.widths[k] for k in self.kinds)
        total_w += PANEL_GAP * (len(self.kinds) - 1)
        x = -total_w / 2 + layout.label_w
        self._x_grids = x
        self.grids, self.values, self.titles, self.col_labels, self.panels = {}, {}, {}, {}, {}
        theme = view.theme
        for kind in self.kinds:
            values = kind_values(trace, kind)[::-1]  # the highest slot on top
            w = layout.widths[kind]
            grid = Heatmap(patch_rgb(values, theme), w, layout.pitch * len(values), theme)
            grid.move_to([x + w / 2, top - grid.height / 2, 0])  # every grid reaches the top
            if kind == "resid":
                heads = texts
                colors = [
                    theme.highlight if p in swapped else view.token_color(p)
                    for p in range(len(texts))
                ]
            elif kind == "heads":
                heads = [str(h) for h in range(values.shape[1])]
                colors = [theme.muted] * len(heads)
            else:
                heads, colors = [], []
            labels = self._col_labels(grid, heads, colors, layout.upright[kind], layout.col_h)
            title = label(TITLES[kind], style.MIN_TEXT, theme.foreground, max_width=max(w, 0.5))
            center_on(title, [x + w / 2, top + layout.col_h + TITLE_H / 2, 0])
            self.grids[kind], self.values[kind] = grid, values
            self.titles[kind], self.col_labels[kind] = title, labels
            self.panels[kind] = Group(grid, title, labels)
            self.add(self.panels[kind])
            x += w + PANEL_GAP
        self.axis = self._row_axis()
        self.note = None
        if layout.step > 1:
            self.note = label(
                f"every {_ordinal(layout.step)} layer labelled",
                style.MIN_TEXT,
                theme.muted,
                max_width=max(total_w, layout.room_w),
            )
            center_on(self.note, [0, top - grid_h - 0.38, 0])
            self.axis.add(self.note)
        self.add(self.axis)

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        kinds: Sequence[str] = KINDS,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> PatchingMaps:
        """The maps of ``kinds`` (default: stream, heads, MLPs) sized for ``width`` x ``height``.

        Raises:
            MechvizError: The trace has no ``patching`` section, or an unknown kind.

        """
        view = TraceView.of(trace, theme)
        w, h = room(width, height)
        return cls(view, cls.fit(view.trace, kinds, w, h))

    @staticmethod
    def fit(trace: Trace, kinds: Sequence[str], width: float, height: float) -> MapsLayout:
        """The geometry of ``kinds`` side by side in ``width`` x ``height``."""
        kinds = tuple(kinds)
        for kind in kinds:
            kind_values(trace, kind)  # an unknown kind: one sentence
        L = trace.n_layers
        cols = {k: kind_values(trace, k).shape[1] for k in kinds}
        names = ["embed"] * ("resid" in kinds) + [str(layer) for layer in range(L)]
        label_w = max(measure(n, style.MIN_TEXT) for n in [*names, "layer"]) + 0.15
        avail = width - label_w - PANEL_GAP * (len(kinds) - 1)
        minimum = {k: measure(TITLES[k], style.MIN_TEXT) + 0.05 for k in kinds}
        cell = MAX_COL
        for _ in range(len(kinds) + 1):  # panels held at their title's width drop out
            fixed = [k for k in kinds if cols[k] * cell < minimum[k]]
            free = sum(cols[k] for k in kinds if k not in fixed)
            rest = avail - sum(minimum[k] for k in fixed)
            cell = min(MAX_COL, rest / free) if free else MAX_COL
        widths = {k: max(cols[k] * cell, minimum[k]) for k in kinds}
        texts = {
            "resid": column_texts(trace),
            "heads": [str(h) for h in range(cols.get("heads", 0))],
        }
        upright, col_h = {}, 0.0
        for kind in kinds:
            longest = max((measure(t, style.MIN_TEXT) for t in texts.get(kind, [])), default=0.0)
            upright[kind] = longest <= widths[kind] / cols[kind] * 0.92
            if kind in texts:
                col_h = max(col_h, 0.4 if upright[kind] else min(MAX_TURNED, longest) + 0.12)
        slots = L + 1 if "resid" in kinds else L
        note_h = 0.0
        pitch = min(MAX_PITCH, (height - col_h - TITLE_H) / slots)
        if pitch < LABEL_PITCH:
            note_h = 0.6
            pitch = min(MAX_PITCH, (height - col_h - TITLE_H - note_h) / slots)
        step = max(1, math.ceil(LABEL_PITCH / max(pitch, 1e-6)))
        return MapsLayout(kinds, widths, cols, pitch, label_w, col_h, upright, step, note_h, width)

    # --- what a storyboard reads ----------------------------------------------------------
    @property
    def top(self) -> float:
        """The height of the grids' top edge (every grid reaches the last layer)."""
        return float(self.grids[self.kinds[0]].frame.get_top()[1])

    def slot_y(self, slot: int) -> float:
        """The centre height of row slot ``slot`` (0 = embed, ``l + 1`` = layer ``l``)."""
        return self.top - (self.n_slots - slot - 0.5) * self.layout.pitch

    def cell_center(self, kind: str, slot: int, col: int) -> np.ndarray:
        """The centre of one cell, a point ``[3]``."""
        grid = self.grids[kind]
        return np.array([grid.cell_center(0, col)[0], self.slot_y(slot), 0.0])

    def frame_cells(
        self, kind: str, col: int, first: int, last: int | None = None, color: object = None
    ) -> Rectangle:
        """A frame around slots ``first`` to ``last`` of one column (not added to anything)."""
        last = first if last is None else last
        grid = self.grids[kind]
        pitch = self.layout.pitch
        height = (last - first + 1) * pitch
        frame = Rectangle(
            width=grid.cell + 0.06,
            height=height + 0.06,
            stroke_width=3,
            stroke_color=color if color is not None else self.view.theme.highlight,
        )
        y = (self.slot_y(first) + self.slot_y(last)) / 2
        return frame.move_to([grid.cell_center(0, col)[0], y, 0])

    def frame_site(self, site: Site, color: object = None) -> Rectangle:
        """A frame around ``site`` (a run of stream rows: around the run)."""
        return self.frame_cells(site.kind, site.col, site.first, site.last, color)

    def veil(self, kind: str | None = None) -> Rectangle:
        """A rectangle of the background's colour over a panel's grid (default: all grids).

        Shrunk towards the top, it reveals the rows from the embedding up.
        """
        grids = [self.grids[kind]] if kind else list(self.grids.values())
        left = min(g.get_left()[0] for g in grids) - 0.05
        right = max(g.get_right()[0] for g in grids) + 0.05
        if kind is None or kind == self.kinds[0]:
            left = min(left, self.axis.get_left()[0] - 0.05)
        top = max(g.get_top()[1] for g in grids) + 0.05
        bottom = self.top - (self.n_slots - self.first_slot) * self.layout.pitch - 0.05
        veil = Rectangle(
            width=right - left,
            height=top - bottom,
            stroke_width=0,
            fill_color=self.view.theme.background,
            fill_opacity=1.0,
        )
        return veil.move_to([(left + right) / 2, (top + bottom) / 2, 0])

    def name_rows(self, slots: Sequence[int], color: object = None) -> tuple[VGroup, VGroup]:
        """Axis labels for row ``slots`` (framed sites' layers), and the labels they displace.

        With every few rows labelled, a framed row between two labels reads as its
        neighbour's layer (head 23.4 beside the label 24): each of ``slots`` gets
        its own label, in ``color`` (default: the highlight), and the regular
        labels closer than a label's height to one of them give way. ``embed``
        never does: a slot too close to it keeps no label of its own (the list
        beside the maps names it).

        Returns:
            ``(names, displaced)``: the new labels (not added to anything) and the
            regular row labels they replace on screen.

        """
        color = color if color is not None else self.view.theme.highlight
        right = float(self.heading.get_right()[0])  # the axis' right edge, wherever it moved
        room = LABEL_PITCH - 0.02
        wanted = sorted(set(int(s) for s in slots if self.first_slot <= s < self.n_slots))
        if self.first_slot == 0:  # "embed" stays: the stream's first row has no other name
            wanted = [s for s in wanted if s == 0 or abs(self.slot_y(s) - self.slot_y(0)) >= room]
        names = VGroup()
        for slot in wanted:
            mob = label(row_name(slot), style.MIN_TEXT, color)
            center_on(mob, [0, self.slot_y(slot), 0])
            mob.shift(RIGHT * (right - mob.get_right()[0]))
            names.add(mob)
        displaced = VGroup(
            *(
                mob
                for slot, mob in zip(self.labelled, self.row_labels)
                if any(abs(self.slot_y(slot) - self.slot_y(s)) < room for s in wanted)
            )
        )
        return names, displaced

    # --- builders -------------------------------------------------------------------------
    def _col_labels(
        self, grid: Heatmap, texts: list[str], colors: list, upright: bool, col_h: float
    ) -> VGroup:
        labels = VGroup()
        for j, (text, color) in enumerate(zip(texts, colors)):
            x = grid.cell_center(0, j)[0]
            if upright:
                mob = label(text, style.MIN_TEXT, color)
                center_on(mob, [x, grid.get_top()[1] + 0.26, 0])
            else:
                mob = label(text, style.MIN_TEXT, color, max_width=col_h - 0.12)
                mob.rotate(np.pi / 2)
                mob.next_to(grid, UP, buff=0.1).set_x(x)
            labels.add(mob)
        return labels

    def _row_axis(self) -> VGroup:
        theme, layout = self.view.theme, self.layout
        top, low = self.n_slots - 1, self.first_slot
        chosen = list(range(top, low - 1, -layout.step))
        if low not in chosen:  # the lowest row is always named; its neighbour gives way
            if chosen[-1] - low < layout.step:
                chosen.pop()
            chosen.append(low)
        self.labelled = sorted(chosen)
        self.row_labels = VGroup()
        right = self._x_grids - 0.15
        for slot in self.labelled:
            mob = label(row_name(slot), style.MIN_TEXT, theme.muted)
            center_on(mob, [0, self.slot_y(slot), 0])
            mob.shift(RIGHT * (right - mob.get_right()[0]))
            self.row_labels.add(mob)
        heading = label("layer", style.MIN_TEXT, theme.muted)
        center_on(heading, [0, self.top + 0.36, 0])
        heading.shift(RIGHT * (right - heading.get_right()[0]))
        self.heading = heading
        return VGroup(self.row_labels, heading)


def _ordinal(n: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(n, f"{n}th")


# --- the scale and the list -------------------------------------------------------------


class PatchingLegend(Group):
    """The colour scale from -1 to 1 and what its values mean, in words.

    Attributes:
        bar: The colour bar (an image), ``-1`` at the left.
        ticks: ``−1``, ``0``, ``1`` under the bar.
        lines: The meaning of 1 and 0 (naming the answer and the wrong token), and
            that colours stop at -1 and 1 while numbers keep their value.
        clipped: How many sites lie outside ``[-1, 1]``.

    """

    def __init__(self, trace: Trace, theme: Theme, width: float) -> None:
        super().__init__()
        p = section(trace)
        answer = shown(TraceView(trace, theme).vocab_text(p.answer))
        wrong = shown(TraceView(trace, theme).vocab_text(p.wrong))
        bar_w = min(width, 3.2)
        self.bar = grid_image(patch_rgb(np.linspace(-1, 1, 65)[None, :], theme), bar_w, 0.24)
        frame = Rectangle(width=bar_w, height=0.24, stroke_color=theme.muted, stroke_width=1)
        frame.move_to(self.bar)
        self.ticks = VGroup()
        for text, at in (("−1", -0.5), ("0", 0.0), ("1", 0.5)):
            tick = label(text, style.MIN_TEXT, theme.muted)
            tick.next_to(frame, DOWN, buff=0.1).set_x(at * bar_w)
            self.ticks.add(tick)
        every = np.concatenate([kind_values(trace, k).ravel() for k in KINDS])
        self.clipped = int((np.abs(every) > SCALE).sum())
        texts = [f"1 = restores the clean run ({answer} over {wrong})", "0 = the corrupt run"]
        if self.clipped:
            many = "s" if self.clipped != 1 else ""
            texts.append(f"{self.clipped} site{many} beyond ±1: colour clipped, number kept")
        self.lines = VGroup(
            *(
                paragraph(t, style.MIN_TEXT, theme.foreground, max_width=width, max_lines=6)
                for t in texts
            )
        )
        self.lines.arrange(DOWN, buff=0.14, aligned_edge=LEFT)
        top = Group(self.bar, frame, self.ticks)
        self.lines.next_to(top, DOWN, buff=0.2)
        self.lines.align_to(top, LEFT) if bar_w >= self.lines.width else None
        self.add(top, self.lines)
        self.move_to([0.0, 0.0, 0.0])

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
    ) -> PatchingLegend:
        """The legend of ``trace``'s patching values, at most ``width`` wide."""
        view = TraceView.of(trace, theme)
        w, _ = room(width, height)
        return cls(view.trace, view.theme, w)


class SiteList(VGroup):
    """Named sites with their values, a swatch of each value's colour before it.

    Sites that do not fit ``height`` are left out, but never the first (strongest)
    of a kind before every kind has its first; ``prefer``: kinds whose first comes
    before the others' (the maps on screen).

    Attributes:
        sites: The sites listed, in order.
        rows: One VGroup per site: swatch, name, value.
        names: The names (Text).
        numbers: The values as written (Text).
        left_out: Sites that did not fit.

    """

    pitch = 0.4  # one line of MIN_TEXT and a margin

    def __init__(
        self,
        sites: Sequence[Site],
        theme: Theme,
        width: float,
        height: float,
        prefer: Sequence[str] = (),
    ) -> None:
        super().__init__()
        lines = [self._lines(s, width) for s in sites]
        kinds = [s.kind for s in sites]
        chosen = _keep_firsts(list(range(len(sites))), kinds, lines, height, prefer)
        self.sites = [sites[i] for i in chosen]
        self.left_out = len(sites) - len(chosen)
        self.rows, self.names, self.numbers = [], [], []
        y = 0.0
        for i in chosen:
            site = sites[i]
            color = style.signed_color(max(-1.0, min(1.0, site.value)), SCALE, theme)
            swatch = Rectangle(
                width=0.26,
                height=0.26,
                stroke_color=theme.muted,
                stroke_width=1,
                fill_color=color,
                fill_opacity=1.0,
            ).move_to([0.13, y, 0])
            name = label(site.name, style.MIN_TEXT, theme.foreground, max_width=width - 0.4)
            center_on(name, [0, y, 0])
            name.shift(RIGHT * (0.4 - name.get_left()[0]))
            number = label(site.text, style.MIN_TEXT, theme.foreground, font=style.MONO)
            center_on(number, [0, y - (lines[i] - 1) * self.pitch, 0])
            number.shift(RIGHT * (width - number.get_right()[0]))
            row = VGroup(swatch, name, number)
            self.rows.append(row)
            self.names.append(name)
            self.numbers.append(number)
            self.add(row)
            y -= lines[i] * self.pitch
        self.move_to([0.0, 0.0, 0.0])

    @staticmethod
    def _lines(site: Site, width: float) -> int:
        """1 when the name and the value share a line in ``width``, else 2."""
        need = 0.4 + measure(site.name, style.MIN_TEXT) + 0.3
        need += measure(site.text, style.MIN_TEXT, style.MONO)
        return 1 if need <= width else 2

    @staticmethod
    def height_of(sites: Sequence[Site], width: float) -> float:
        """The height the list of all ``sites`` takes at ``width``."""
        n = sum(SiteList._lines(s, width) for s in sites)
        return max(0, n - 1) * SiteList.pitch + block_height(1, style.MIN_TEXT)


def _keep_firsts(
    index: list[int], kinds: list[str], lines: list[int], height: float, prefer: Sequence[str] = ()
) -> list[int]:
    """The sites (indices) that fit ``height``: every kind's first (strongest), then in order.

    The firsts of the ``prefer`` kinds (those on screen) come before the others'.
    """
    fit = int((height - block_height(1, style.MIN_TEXT) + 0.05) // SiteList.pitch) + 1
    firsts: dict[str, int] = {}
    for i in index:
        firsts.setdefault(kinds[i], i)
    keep: list[int] = []
    used = 0
    order = sorted(firsts.values(), key=lambda i: kinds[i] not in prefer)
    for i in order + index:
        if i in keep or used + lines[i] > fit:
            continue
        keep.append(i)
        used += lines[i]
    return sorted(keep)


__all__ = [
    "KINDS",
    "MapsLayout",
    "PatchingLegend",
    "PatchingMaps",
    "Site",
    "SiteList",
    "column_texts",
    "differing",
    "fmt",
    "kind_values",
    "patch_rgb",
    "stream_runs",
    "strongest_sites",
]

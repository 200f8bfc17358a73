"""Attention: one head's query-by-key pattern as a grid, then as arcs, then all heads."""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    UP,
    ArcBetweenPoints,
    FadeIn,
    Group,
    Line,
    Rectangle,
    SurroundingRectangle,
    VGroup,
)

from mechviz.errors import MechvizError
from mechviz.heads import peaked, scores
from mechviz.schema import Trace
from mechviz.tokens import shown
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.mobjects import Heatmap, TokenBox, window
from mechviz.visual.text import Number, center_on, label, measure

MIN_CELL = 0.36  # a grid row or column: room for a token label at MIN_TEXT
ARC_ROW = 0.46  # a token box in the arcs column
MIN_ARC_WEIGHT = 0.05  # keys drawn as arcs: at least this weight ...
MAX_ARC_KEYS = 6  # ... and at most this many, strongest first


def head_scores(trace: Trace) -> np.ndarray:
    """Peakedness of every head, ``[L, H]`` (see :func:`mechviz.heads.peaked`)."""
    return peaked(trace)[0]


def criterion(trace: Trace) -> str:
    """The criterion the default head is chosen by: direct effect, or peaked on old traces."""
    return "direct" if trace.heads is not None else "peaked"


def choose_head(trace: Trace, layer: int | None = None, head: int | None = None) -> tuple[int, int]:
    """The (layer, head) to show: the given ones, else the best by :func:`criterion`.

    With only ``layer``: the best head of that layer; with only ``head``: the
    best layer for that head.
    """
    L, H = trace.model.n_layers, trace.model.n_heads
    if layer is not None and not 0 <= layer < L:
        raise MechvizError(f"Layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if head is not None and not 0 <= head < H:
        raise MechvizError(f"Head {head} is out of range; this model has heads 0 to {H - 1}.")
    values, _ = scores(trace, criterion(trace))
    if layer is None and head is None:
        layer, head = np.unravel_index(int(values.argmax()), values.shape)
    elif layer is None:
        layer = int(values[:, head].argmax())
    elif head is None:
        head = int(values[layer].argmax())
    return int(layer), int(head)


def n_splits(positions: list[int]) -> int:
    """How many runs of left-out positions lie between sorted ``positions``."""
    return sum(1 for a, b in zip(positions, positions[1:]) if b - a > 1)


class Attention(TraceScene):
    """Where one head looks: the pattern grid, arcs from one query, every head of the layer."""

    beats = {
        "grid": "the chosen head's query-by-key attention pattern",
        "arcs": "one query's arcs to the keys it reads, width by weight",
        "heads": "every head of the layer as a small grid; the chosen one framed",
    }

    def construct(self) -> None:
        trace = self.trace
        self.layer, self.head = choose_head(trace, self.settings.layer, self.settings.head)
        self.pattern = trace.attention.pattern[self.layer, self.head]
        P = self.pattern.shape[0]
        q = self.settings.query
        q = P - 1 if q is None else q
        if not -P <= q < P:
            raise MechvizError(
                f"Query {q} is out of range; this prompt has positions 0 to {P - 1}."
            )
        self.query = q % P
        self.show_title(f"Attention: layer {self.layer}, head {self.head}")
        with self.beat("grid"):
            self.show_grid()
        with self.beat("arcs"):
            self.show_arcs()
        with self.beat("heads"):
            self.show_all_heads()

    # --- words ------------------------------------------------------------------------
    def why_chosen(self) -> str:
        trace, layer, head = self.trace, self.settings.layer, self.settings.head
        if layer is not None and head is not None:
            return "chosen by hand"
        name = criterion(trace)
        values, _ = scores(trace, name)
        value = float(values[self.layer, self.head])
        where = "the head"
        if layer is not None:
            where = f"the head of layer {layer}"
        elif head is not None:
            where = f"the layer where head {head} has"
        if name == "direct":
            answer = shown(self.vocab_text(trace.heads.answer))
            has = "" if head is not None and layer is None else " with"
            return (
                f"chosen as {where}{has} the largest direct effect on {answer} "
                f"({value:+.2f} logits)"
            )
        if layer is not None:
            phrase = f"the most peaked head of layer {layer}"
        elif head is not None:
            phrase = f"head {head}'s most peaked layer"
        else:
            phrase = "the most peaked head"
        return f"no direct effects in schema v{trace.schema_version}; {phrase} ({value:.2f})"

    # --- beats ------------------------------------------------------------------------
    def show_grid(self) -> None:
        self.caption(f"Layer {self.layer}, head {self.head}, {self.why_chosen()}.")
        frame = self.frame
        if frame.width >= 1.3 * frame.height:  # wide: grid and arcs side by side
            self.layout = "side"
            self.grid_box, self.arc_box = self.content.split("x", 0.56, gap=0.5)
        elif frame.height >= 1.5 * frame.width:  # tall: grid above the arcs
            self.layout = "stack"
            self.grid_box, self.arc_box = self.content.split("y", 0.6, gap=0.4)
        else:  # square-ish: each alone, as big as it gets
            self.layout = "alone"
            self.grid_box = self.arc_box = self.content
        self.grid = self.get_grid(self.grid_box)
        self.swap(None, self.grid, run_time=0.8)
        self.wait(0.6)

    def show_arcs(self) -> None:
        q = self.query
        keys = self.strongest_keys(q)
        read = ", ".join(
            f"{shown(self.token_texts[k])} ({self.pattern[q, k]:.2f})" for k in keys[:3]
        )
        more = " …" if len(keys) > 3 else ""
        self.caption(
            f"From {shown(self.token_texts[q])} (position {q}), this head reads {read}{more}; "
            "arc width is the weight."
        )
        if self.layout == "alone":
            self.swap(self.grid, None, run_time=0.4)
            self.grid = Group()
            self.arc_box = self.content
        arcs = self.get_arcs(self.arc_box)
        parts = [FadeIn(arcs[0]), FadeIn(arcs[1])]
        if self.layout != "alone" and q in self.grid_positions:
            i = self.grid_positions.index(q)
            heat = self.heatmap
            row = Rectangle(
                width=heat.frame.width,
                height=heat.cell_height,
                stroke_color=self.theme.highlight,
                stroke_width=4,
            )
            row.move_to([heat.frame.get_center()[0], heat.cell_center(i, 0)[1], 0])
            parts.append(FadeIn(row))
            self.grid.add(row)
        self.play(*parts, run_time=0.6)
        self.play(FadeIn(arcs[2]), run_time=0.9)
        self.arcs = arcs
        self.wait(0.8)

    def show_all_heads(self) -> None:
        H = self.trace.model.n_heads
        self.swap(Group(self.grid, self.arcs), None, run_time=0.4)
        self.caption(f"All {H} heads of layer {self.layer}; the framed one is head {self.head}.")
        panels, frame = self.get_heads(self.content)
        self.swap(None, Group(*panels), run_time=1.0)
        self.play(FadeIn(frame), run_time=0.5)
        self.wait(1.0)

    # --- choices ----------------------------------------------------------------------
    def strongest_keys(self, q: int) -> list[int]:
        """Keys (not the query itself) with weight >= MIN_ARC_WEIGHT, strongest first."""
        w = self.pattern[q, : q + 1]
        order = [int(k) for k in np.argsort(-w, kind="stable") if k != q]
        keys = [k for k in order if w[k] >= MIN_ARC_WEIGHT][:MAX_ARC_KEYS]
        return keys or order[:1]

    # --- builders ---------------------------------------------------------------------
    def get_grid(self, box: Box) -> Group:
        """The pattern as a heatmap with token labels, axis names and (if they fit) numbers."""
        trace, theme, P = self.trace, self.theme, self.pattern.shape[0]
        texts = [shown(t) for t in self.token_texts]
        colors = [self.token_colors(i) for i in trace.tokens.ids]
        axis_w, key_h, note_h = 0.45, 0.45, 0.45
        row_w = min(max(measure(t, style.MIN_TEXT) for t in texts) + 0.05, 1.8, box.width * 0.28)
        avail_w = box.width - axis_w - row_w - 0.15
        col_h = 0.4
        for _ in range(3):  # the column labels' height depends on the cell size
            avail_h = box.height - key_h - col_h - 0.1
            n = max(1, min(P, int(min(avail_w, avail_h - note_h) // MIN_CELL)))
            note = n < P
            cell = min(1.4, avail_w / n, (avail_h - (note_h if note else 0)) / n)
            positions = self.grid_window(n)
            longest = max(measure(texts[p], style.MIN_TEXT) for p in positions) + 0.05
            new_h = 0.4 if longest <= cell * 0.95 else min(1.6, longest + 0.15, box.height * 0.3)
            if abs(new_h - col_h) < 1e-6:
                break
            col_h = new_h
        self.grid_positions = positions
        sub = self.pattern[np.ix_(positions, positions)]
        heat = Heatmap(
            style.sequential_rgb(sub, high=theme.attention, theme=theme), cell * n, cell * n, theme
        )
        self.heatmap = heat
        rows = heat.get_row_labels(
            [texts[p] for p in positions], [colors[p] for p in positions], max_width=row_w
        )
        cols = heat.get_col_labels(
            [texts[p] for p in positions], [colors[p] for p in positions], max_height=col_h - 0.1
        )
        gaps = VGroup()
        for i in range(1, n):
            if positions[i] - positions[i - 1] > 1:  # positions left out: a split in the grid
                x = heat.frame.get_left()[0] + heat.cell * i
                y = heat.frame.get_top()[1] - heat.cell_height * i
                gaps.add(
                    Line(
                        [x, heat.frame.get_top()[1], 0],
                        [x, heat.frame.get_bottom()[1], 0],
                        stroke_width=4,
                        color=theme.background,
                    )
                )
                gaps.add(
                    Line(
                        [heat.frame.get_left()[0], y, 0],
                        [heat.frame.get_right()[0], y, 0],
                        stroke_width=4,
                        color=theme.background,
                    )
                )
        numbers = heat.get_numbers(sub, lower_only=True)
        query = label("query →", style.MIN_TEXT, theme.muted).rotate(-np.pi / 2)
        query.next_to(rows, LEFT, buff=0.12).set_y(heat.frame.get_center()[1])
        key = label("key →", style.MIN_TEXT, theme.muted)
        key.next_to(cols, UP, buff=0.1).set_x(heat.frame.get_center()[0])
        out = Group(heat, gaps, numbers, rows, cols, query, key)
        if note:
            words = label(f"{n} of {P} tokens", style.MIN_TEXT, theme.muted, max_width=box.width)
            words.next_to(heat.frame, DOWN, buff=0.15)
            out.add(words)
        out.move_to(box.center)
        return out

    def grid_window(self, n: int) -> list[int]:
        """``n`` positions: the query, its strongest keys, the first token, then the last ones."""
        P = self.pattern.shape[0]
        keep = [self.query, *self.strongest_keys(self.query), 0]
        return window(P, keep, n)

    def get_arcs(self, box: Box) -> tuple[VGroup, VGroup, VGroup]:
        """Token boxes in a column (gaps as …), weights at their left, arcs at their right."""
        trace, theme, q = self.trace, self.theme, self.query
        keys = self.strongest_keys(q)
        capacity = max(2, min(12, int(box.height // ARC_ROW)))
        chosen = [q, 0, *keys]
        while True:
            positions = sorted(set(chosen))
            if len(positions) + n_splits(positions) <= capacity or len(chosen) <= 2:
                break
            chosen.pop()  # drop the weakest key
        for p in range(q - 1, 0, -1):  # room left: the tokens just before the query
            trial = sorted(set(positions) | {p})
            if p not in positions and len(trial) + n_splits(trial) <= capacity:
                positions = trial
        rows: list[int | None] = []
        for p in positions:
            if rows and rows[-1] is not None and p - rows[-1] > 1:
                rows.append(None)
            rows.append(p)
        row_h = min(0.85, box.height / len(rows))
        size = style.BODY_TEXT if row_h >= 0.6 else style.MIN_TEXT
        num_w = 0.95 if size == style.BODY_TEXT else 0.8
        box_w = min(2.4, box.width * 0.4)
        arc_w = min(2.5, box.width - num_w - box_w - 0.2)
        tokens, numbers, arcs = VGroup(), VGroup(), VGroup()
        boxes: dict[int, TokenBox] = {}
        top = row_h * len(rows) / 2
        for r, p in enumerate(rows):
            y = top - row_h * (r + 0.5)
            if p is None:
                dots = label("…", size, theme.muted)
                tokens.add(center_on(dots, [num_w + 0.3, y, 0]))
                continue
            token = TokenBox(
                self.token_texts[p],
                self.token_colors(trace.tokens.ids[p]),
                size,
                theme,
                max_width=box_w,
                height=row_h * 0.8,
            )
            token.move_to([num_w + 0.1 + token.width / 2, y, 0])
            boxes[p] = token
            tokens.add(token)
            weight = float(self.pattern[q, p])
            if weight >= 0.01 or p == q:
                color = theme.foreground if weight >= MIN_ARC_WEIGHT else theme.muted
                number = Number(f"{weight:.2f}", size, color)
                numbers.add(center_on(number, [num_w / 2, y, 0]))
        focus = SurroundingRectangle(boxes[q], color=theme.highlight, buff=0.05, stroke_width=4)
        tokens.add(focus)
        right = max(b.get_right()[0] for b in boxes.values()) + 0.1
        end = np.array([right, boxes[q].get_center()[1], 0])
        for p in positions:
            weight = float(self.pattern[q, p])
            if p == q or weight < 0.01:
                continue
            start = np.array([right, boxes[p].get_center()[1], 0])
            chord = float(np.hypot(*(end - start)[:2]))
            bulge = min(max(chord / 2, 0.5), arc_w - 0.1)
            angle = 4 * np.arctan(2 * max(bulge, 0.1) / chord)
            arc = ArcBetweenPoints(
                end, start, angle=angle, color=theme.attention, stroke_width=1 + 12 * weight
            )
            arcs.add(arc.set_stroke(opacity=0.3 + 0.7 * weight))
        group = VGroup(tokens, numbers, arcs)
        group.move_to(box.center)
        return group

    def get_heads(self, box: Box) -> tuple[Group, Rectangle]:
        """Every head of the layer as a small grid, as big as the box allows; one framed."""
        trace, theme, H = self.trace, self.theme, self.trace.model.n_heads
        name_h, gap = 0.42, 0.3
        name_w = label(f"head {H - 1}", style.MIN_TEXT).width + 0.15
        best = (0.0, 1, H)
        for cols in range(1, H + 1):
            rows = -(-H // cols)
            if (name_w + gap) * cols - gap > box.width:
                break
            size = min(
                (box.width - gap * (cols - 1)) / cols,
                (box.height - rows * name_h - gap * (rows - 1)) / rows,
            )
            if size > best[0]:
                best = (size, cols, rows)
        size, cols, rows = best
        size = min(size, 2.6)
        panels = Group()
        for h in range(H):
            rgb = style.sequential_rgb(
                trace.attention.pattern[self.layer, h], high=theme.attention, theme=theme
            )
            heat = Heatmap(rgb, size, size, theme)
            color = theme.highlight if h == self.head else theme.muted
            name = label(f"head {h}", style.MIN_TEXT, color)
            name.next_to(heat, UP, buff=0.16)
            panels.add(Group(heat, name))
        panels.arrange_in_grid(rows=rows, cols=cols, buff=(gap, gap))
        panels.move_to(box.center)
        frame = SurroundingRectangle(
            panels[self.head][0], color=theme.highlight, buff=0.06, stroke_width=4
        )
        return panels, frame


__all__ = ["Attention", "choose_head", "criterion", "head_scores"]

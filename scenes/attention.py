"""Attention: one head's query-by-key pattern as a grid, then as arcs, then all heads."""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    ArcBetweenPoints,
    FadeIn,
    FadeOut,
    Group,
    SurroundingRectangle,
    VGroup,
    Write,
)

from mechviz.errors import MechvizError
from mechviz.schema import Trace
from mechviz.visual import style
from mechviz.visual.base import TraceScene
from mechviz.visual.mobjects import Heatmap, TokenRow, label

RULE = "the most peaked head: largest mean weight on one earlier token (not the first, not itself)"


def head_scores(trace: Trace) -> np.ndarray:
    """Peakedness of every head, ``[L, H]``.

    For each query from position 2 on, the largest weight it puts on one
    earlier key, leaving out position 0 (where many heads park attention they
    do not use) and the query itself (heads that only look at themselves move
    nothing between tokens); averaged over queries. High means the head looks
    sharply from one token to another. Prompts under 3 tokens score 0 everywhere.
    """
    pattern = trace.attention.pattern  # [L, H, P, P]
    P = pattern.shape[-1]
    if P < 3:
        return np.zeros(pattern.shape[:2])
    best = [pattern[:, :, q, 1:q].max(axis=-1) for q in range(2, P)]
    return np.mean(best, axis=0)


def choose_head(trace: Trace, layer: int | None = None, head: int | None = None) -> tuple[int, int]:
    """The (layer, head) to show: the given ones, else the best by :data:`RULE`."""
    L, H = trace.model.n_layers, trace.model.n_heads
    if layer is not None and not 0 <= layer < L:
        raise MechvizError(f"Layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if head is not None and not 0 <= head < H:
        raise MechvizError(f"Head {head} is out of range; this model has heads 0 to {H - 1}.")
    scores = head_scores(trace)
    if layer is None and head is None:
        layer, head = np.unravel_index(int(scores.argmax()), scores.shape)
    elif layer is None:
        layer = int(scores[:, head].argmax())
    elif head is None:
        head = int(scores[layer].argmax())
    return int(layer), int(head)


class Attention(TraceScene):
    """Where one head looks: the pattern grid, arcs between tokens, every head of the layer."""

    max_arc_tokens = 7  # token boxes in the arcs beat: the first and the last six
    max_arc_queries = 6  # queries whose arcs are shown, last first

    def construct(self) -> None:
        self.layer, self.head = choose_head(self.trace, self.settings.layer, self.settings.head)
        self.pattern = self.trace.attention.pattern[self.layer, self.head]
        self.show_title()
        self.show_grid()
        self.show_arcs()
        self.show_all_heads()

    def show_title(self) -> None:
        self.title = label(f"Attention: layer {self.layer}, head {self.head}", style.TITLE_SIZE)
        self.title.to_corner(UP + LEFT, buff=0.3)
        layer, head = self.settings.layer, self.settings.head
        if layer is not None and head is not None:
            chosen = "chosen by hand"
        elif self.trace.n_positions < 3:
            chosen = "the prompt is too short to rank heads (3 tokens needed): the first is shown"
        else:
            given = f"in layer {layer}, " if layer is not None else ""
            given = f"for head {head}, " if head is not None else given
            chosen = f"chosen {given}as {RULE}"
        self.subtitle = label(chosen, style.SMALL_SIZE - 2, style.MUTED)
        self.subtitle.scale_to_fit_width(min(self.subtitle.width, 13)).next_to(
            self.title, DOWN, aligned_edge=LEFT
        )
        self.play(Write(self.title), FadeIn(self.subtitle), run_time=1.0)

    def get_grid(self) -> Group:
        P = self.pattern.shape[0]
        size = min(4.4, 0.8 * P)
        grid = Heatmap(style.sequential_rgb(self.pattern, high=style.ATTN_COLOR), size, size)
        grid.move_to([-3.2, -0.7, 0])
        labels = grid.get_token_labels(self.trace.tokens.text, max_width=1.8)
        axes = VGroup(
            label("query ↓", style.SMALL_SIZE - 2, style.MUTED)
            .next_to(grid.frame, DOWN, buff=0.12)
            .align_to(grid.frame, LEFT)
            .shift(LEFT * 1.2),
            label("key →", style.SMALL_SIZE - 2, style.MUTED).next_to(grid.frame, DOWN, buff=0.12),
        )
        numbers = grid.get_numbers(self.pattern, lower_only=True)
        return Group(grid, labels, axes, numbers)

    def show_grid(self) -> None:
        self.grid = self.get_grid()
        self.play(FadeIn(self.grid[0]), FadeIn(self.grid[1]), FadeIn(self.grid[2]), run_time=0.8)
        self.play(FadeIn(self.grid[3]), run_time=0.6)
        self.wait(0.6)

    def arc_window(self) -> list[int]:
        """Positions drawn as token boxes: the first (where many heads park) and the last few."""
        P = self.pattern.shape[0]
        return [0, *range(max(1, P - self.max_arc_tokens + 1), P)] if P > 1 else [0]

    def show_arcs(self) -> None:
        """Arcs from each query to the keys it reads; width and opacity are the weights."""
        window = self.arc_window()
        texts = self.trace.tokens.text
        tokens = TokenRow(
            [texts[p] for p in window], font_size=style.SMALL_SIZE, max_width=5.6, positions=window
        )
        parts = VGroup(tokens)
        if len(window) > 1 and window[1] > 1:  # positions left out between the first and the rest
            dots = label("…", style.SMALL_SIZE, style.MUTED)
            VGroup(*tokens.boxes[1:]).shift(RIGHT * (dots.width + 0.2))
            dots.next_to(tokens.boxes[0], RIGHT, buff=0.1)
            parts.add(dots)
            if parts.width > 5.6:
                parts.scale_to_fit_width(5.6)
        parts.move_to([3.6, -1.9, 0])
        self.boxes = dict(zip(window, tokens.boxes))
        caption = label("each query reads from earlier keys", style.SMALL_SIZE, style.MUTED)
        caption.move_to([3.6, 1.6, 0])
        self.play(FadeIn(parts), FadeIn(caption), run_time=0.6)
        P = self.pattern.shape[0]
        queries = [q for q in reversed(window) if q > 0][: self.max_arc_queries]
        for q in queries:
            arcs = self.get_arcs(q)
            focus = SurroundingRectangle(self.boxes[q], color=style.FOREGROUND, buff=0.05)
            row = (
                SurroundingRectangle(self.grid[0].frame, buff=0, color=style.FOREGROUND)
                .stretch_to_fit_height(self.grid[0].frame.height / P)
                .set_y(self.grid[0].cell_center(q, 0)[1])
            )
            first = q == queries[0]
            self.play(FadeIn(arcs), FadeIn(focus), FadeIn(row), run_time=0.7 if first else 0.35)
            self.wait(0.8 if first else 0.2)
            self.play(FadeOut(arcs), FadeOut(focus), FadeOut(row), run_time=0.25)
        self.arc_parts = VGroup(parts, caption)

    def get_arcs(self, query: int) -> VGroup:
        """Arcs into ``query`` from the keys in the window, drawn by weight."""
        arcs = VGroup()
        end = self.boxes[query].get_top()
        for key in range(query):
            weight = float(self.pattern[query, key])
            if weight < 0.01 or key not in self.boxes:
                continue
            start = self.boxes[key].get_top()
            arcs.add(
                ArcBetweenPoints(
                    start,
                    end,
                    angle=-np.pi * 0.6,
                    stroke_width=1 + 14 * weight,
                    color=style.ATTN_COLOR,
                ).set_stroke(opacity=0.25 + 0.75 * weight)
            )
        self_weight = float(self.pattern[query, query])
        if self_weight >= 0.01:
            loop = SurroundingRectangle(
                self.boxes[query],
                buff=0.1,
                color=style.ATTN_COLOR,
                stroke_width=1 + 8 * self_weight,
            )
            arcs.add(loop.set_stroke(opacity=0.25 + 0.75 * self_weight))
        return arcs

    def show_all_heads(self) -> None:
        """Every head of the layer as a small grid; the shown one is framed."""
        H = self.trace.model.n_heads
        cols = int(np.ceil(np.sqrt(H)))
        rows = int(np.ceil(H / cols))
        size = min(1.6, 5.2 / rows - 0.35)
        panels = Group()
        for h in range(H):
            grid = Heatmap(
                style.sequential_rgb(
                    self.trace.attention.pattern[self.layer, h], high=style.ATTN_COLOR
                ),
                size,
                size,
            )
            name = label(f"head {h}", style.SMALL_SIZE - 2, style.MUTED).next_to(
                grid, UP, buff=0.06
            )
            panels.add(Group(grid, name))
        panels.arrange_in_grid(rows=rows, cols=cols, buff=(0.35, 0.2)).move_to([2.9, -0.55, 0])
        if panels.height > 5.6:
            panels.scale_to_fit_height(5.6)
        frame = SurroundingRectangle(panels[self.head][0], color=style.HIGHLIGHT, buff=0.04)
        heading = label(f"all {H} heads of layer {self.layer}", style.TEXT_SIZE, style.MUTED)
        heading.next_to(panels, UP, buff=0.15)
        self.play(FadeOut(self.arc_parts), run_time=0.4)
        self.play(FadeIn(heading), *[FadeIn(p, shift=DOWN * 0.1) for p in panels], run_time=1.2)
        self.play(FadeIn(frame), run_time=0.5)
        self.wait(1.5)


__all__ = ["Attention", "choose_head", "head_scores"]

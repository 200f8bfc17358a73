"""Attention: one head's query-by-key pattern as a grid, then as arcs, then all heads."""

from __future__ import annotations

import numpy as np
from manim import FadeIn, Group

from mechviz.analyses.heads import peaked, scores
from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.schema import Trace
from mechviz.visual.attention import (
    MIN_ARC_WEIGHT,
    AttentionArcs,
    AttentionGrid,
    HeadGallery,
    query_position,
)
from mechviz.visual.base import Box, TraceScene


def head_scores(trace: Trace) -> np.ndarray:
    """Peakedness of every head, ``[L, H]`` (see :func:`mechviz.analyses.heads.peaked`)."""
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
        self.query = query_position(trace, self.settings.query)
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
        box = self.grid_box
        self.grid = AttentionGrid.from_trace(
            self.trace, self.layer, self.head, query=self.query, **self.room_of(box)
        ).move_to(box.center)
        self.swap(None, self.grid, run_time=0.8)
        self.wait(0.6)

    def show_arcs(self) -> None:
        q = self.query
        read, more = self.reads(q)
        self.caption(
            f"From {shown(self.token_texts[q])} (position {q}), this head reads {read}{more}; "
            "arc width is the weight."
        )
        if self.layout == "alone":
            self.swap(self.grid, None, run_time=0.4)
            self.grid = Group()
            self.arc_box = self.content
        box = self.arc_box
        arcs = AttentionArcs.from_trace(
            self.trace, self.layer, self.head, q, **self.room_of(box)
        ).move_to(box.center)
        parts = [FadeIn(arcs.tokens), FadeIn(arcs.numbers)]
        if self.layout != "alone" and self.grid.shows(q):
            row = self.grid.highlight_row(q)
            parts.append(FadeIn(row))
            self.grid.add(row)
        self.play(*parts, run_time=0.6)
        self.play(FadeIn(arcs.arcs), run_time=0.9)
        self.arcs = arcs
        self.wait(0.8)

    def reads(self, q: int) -> tuple[str, str]:
        """The query's strongest reads in words, itself included ("itself (0.49), …")."""
        w = self.pattern[q, : q + 1]
        order = [int(k) for k in np.argsort(-w, kind="stable")]
        strong = [k for k in order if w[k] >= MIN_ARC_WEIGHT] or order[:1]
        names = ["itself" if k == q else shown(self.token_texts[k]) for k in strong[:3]]
        words = ", ".join(f"{name} ({w[k]:.2f})" for name, k in zip(names, strong))
        return words, " …" if len(strong) > 3 else ""

    def show_all_heads(self) -> None:
        H = self.trace.model.n_heads
        self.swap(Group(self.grid, self.arcs), None, run_time=0.4)
        self.caption(f"All {H} heads of layer {self.layer}; the framed one is head {self.head}.")
        # The highlight frame may reach a little into the margin around the content.
        pad, c = HeadGallery.FRAME_PAD, self.content
        gallery = HeadGallery.from_trace(
            self.trace,
            self.layer,
            width=c.width + 2 * pad,
            height=c.height + 2 * pad,
            theme=self.theme,
            highlight=self.head,
        ).move_to(c.center)
        self.swap(None, Group(gallery.panels, gallery.token_labels, gallery.note), run_time=1.0)
        self.play(FadeIn(gallery.frame), run_time=0.5)
        self.wait(1.0)

    def room_of(self, box: Box) -> dict[str, object]:
        """A block's size and theme arguments for ``box``."""
        return {"width": box.width, "height": box.height, "theme": self.theme}


__all__ = ["Attention", "choose_head", "criterion", "head_scores"]

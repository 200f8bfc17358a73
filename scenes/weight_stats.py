"""WeightStats: the weights themselves (seed 004): sigma / mean(|w|), the tally, layer-0 heads."""

from __future__ import annotations

import numpy as np
from manim import Create

from mechviz.visual.base import TraceScene
from mechviz.visual.weights import (
    GAUSSIAN,
    HeadTokens,
    ParameterTally,
    RatioPanels,
    token_label,
)

KINDS = ("along d_model", "across heads")


class WeightStats(TraceScene):
    """sigma / mean(|w|) of the attention matrices by layer, the parameter tally, head tokens.

    Every number comes from the trace's ``weights`` section (``mechviz analyze
    TRACE --weights``).
    """

    shows_lens = True  # its tokens' marks go into the legend

    beats = {
        "ratios": "sigma / mean(|w|) of W_Q, W_K, W_V, W_O by layer, beside a Gaussian's 1.25",
        "tally": "the parameter count by component, adding up to the model's total",
        "heads": "layer 0: the tokens that give its heads their largest queries and keys",
    }
    hold_time = 1.5  # seconds each picture stays after it is drawn

    def construct(self) -> None:
        self.weights = self.trace.require("weights")  # one sentence if the trace has none
        self.show_title("The weights themselves")
        with self.beat("ratios"):
            self.show_ratios()
        with self.beat("tally"):
            self.show_tally()
        with self.beat("heads"):
            self.show_heads()

    # --- beats ------------------------------------------------------------------------
    def show_ratios(self) -> None:
        box = self.content
        self.panels = RatioPanels.from_trace(
            self.trace, width=box.width, height=box.height, theme=self.theme
        )
        self.panels.move_to(box.center)
        self.caption(self.ratio_caption())
        curves = [(c, line) for c in self.panels.charts for line in (c.along_line, c.across_line)]
        for chart, line in curves:  # axes first, then the curves drawn from layer 0 up
            chart.remove(line)
        self.swap(None, self.panels, run_time=0.6)
        self.play(*(Create(line) for _, line in curves), run_time=1.6)
        for chart, line in curves:
            self.remove(line)
            chart.add(line)
        self.wait(self.hold_time)

    def show_tally(self) -> None:
        box = self.content
        self.tally = ParameterTally.from_trace(
            self.trace, width=box.width, height=box.height, theme=self.theme
        )
        self.tally.move_to(box.center)
        self.caption(self.tally_caption())
        self.swap(self.panels, self.tally, run_time=0.6)
        self.wait(self.hold_time)

    def show_heads(self) -> None:
        box = self.content
        self.heads = HeadTokens.from_trace(
            self.trace, width=box.width, height=box.height, theme=self.theme
        )
        self.heads.move_to(box.center)
        self.caption(self.heads_caption())
        self.swap(self.tally, self.heads, run_time=0.6)
        self.wait(self.hold_time)

    # --- captions, from the recorded numbers ------------------------------------------------
    def ratio_caption(self) -> str:
        """The largest ratio, where it is, and the median of all, beside the Gaussian's."""
        w = self.weights
        both = np.stack([w.ratio_model, w.ratio_heads])  # [2, L, 4]
        kind, layer, m = np.unravel_index(int(np.argmax(both)), both.shape)
        return (
            f"σ/mean(|w|) by layer (Gaussian: {GAUSSIAN:.2f}). Highest: {w.ratio_names[m]}, "
            f"layer {layer}, {both[kind, layer, m]:.2f} {KINDS[kind]}; median "
            f"{float(np.median(both)):.2f}."
        )

    def tally_caption(self) -> str:
        """The total and the two largest groups' shares; tied embeddings said."""
        w = self.weights
        order = np.argsort(-w.tally_counts)[:2]
        parts = [f"{w.tally_names[i].split()[0]} {w.tally_counts[i] / w.total:.0%}" for i in order]
        tied = any("tied" in name for name in w.tally_names)
        return f"{w.total:,} parameters: {parts[0]}, {parts[1]}" + (
            "; W_E is W_U (tied)." if tied else "."
        )

    def heads_caption(self) -> str:
        """Head 0's strongest query and key tokens; keys shared by a KV group, if any."""
        w, h = self.weights, self.heads.shown_heads[0]

        def tok(token_id: int) -> str:
            return token_label(self.trace.token_text(int(token_id)))

        text = (
            f"Head {h}: top query token “{tok(w.query_ids[h, 0])}”, top key token "
            f"“{tok(w.key_ids[h, 0])}” (no position, no bias)."
        )
        group = self.key_group()
        if group > 1:
            text += f" Each key list serves {group} heads."
        return text

    def key_group(self) -> int:
        """How many consecutive heads share one key list (grouped-query attention), else 1."""
        w = self.weights
        H = w.key_ids.shape[0]
        for g in range(H, 1, -1):
            if H % g:
                continue
            blocks = w.key_ids.reshape(H // g, g, -1)
            scores = w.key_score.reshape(H // g, g, -1)
            if (blocks == blocks[:, :1]).all() and (scores == scores[:, :1]).all():
                return g
        return 1


__all__ = ["WeightStats"]

"""Ablation: what the model predicts before and after its heads (or MLPs) are changed."""

from __future__ import annotations

from manim import DOWN, FadeIn, ReplacementTransform, SurroundingRectangle, VGroup

from mechviz.model.tokens import shown
from mechviz.visual.ablation import (
    BeforeAfter,
    HeadMap,
    LensCompare,
    Reading,
    change_summary,
    prob_text,
)
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.mobjects import MorphBars

MAP_WIDTH = 2.4  # a landscape frame keeps the map in a column this wide (scene units)


class Ablation(TraceScene):
    """The last position before and after the trace's change, beside a map of what changed.

    Reads ``trace.interventions``: the run before (``before_*``) and what was
    changed; every other section of the trace is the changed run (after).
    """

    shows_lens = True  # its tokens' marks go into the legend

    beats = {
        "map": "layers x heads, the changed heads (and MLPs) lit, and what was done to them",
        "before": "the model's next-token odds before the change",
        "after": "the odds after it, morphing from before; the answer's probability before → after",
        "lens": "the logit lens of the last position before and after, layer by layer",
    }
    k = 5  # bars per chart at most

    def construct(self) -> None:
        self.iv = self.trace.require("interventions")  # one sentence without it
        self.before_run = Reading.before(self.trace)
        self.after_run = Reading.after(self.trace)
        self.show_title(self.title_words())
        with self.beat("map"):
            self.show_map()
        with self.beat("before"):
            self.show_before()
        with self.beat("after"):
            self.show_after()
        with self.beat("lens"):
            self.show_lens()

    # --- words ------------------------------------------------------------------------
    def title_words(self) -> str:
        """The title: "Before and after ablating heads" (freezing heads, ablating MLPs, ...)."""
        iv = self.iv
        kinds = []
        if iv.ablate:
            kinds.append("ablating heads")
        if iv.freeze:
            kinds.append("freezing heads")
        if iv.ablate_mlp:
            kinds.append("ablating MLPs")
        what = " and ".join(kinds) if len(kinds) < 3 else "changing heads and MLPs"
        return f"Before and after {what or 'the change'}"

    def what_was_done(self) -> str:
        """One sentence saying what the change did (with what it means when it is one kind)."""
        iv, m = self.iv, self.trace.model
        parts = []
        if iv.ablate:
            n = len(iv.ablate)
            parts.append(f"{n} head{'s' if n != 1 else ''} ablated ({iv.mode})")
        if iv.freeze:
            n = len(iv.freeze)
            source = f' "{_short(iv.freeze_from)}"' if iv.freeze_from else " another prompt"
            parts.append(f"{n} head{'s' if n != 1 else ''} frozen to{source}")
        if iv.ablate_mlp:
            n = len(iv.ablate_mlp)
            parts.append(f"{n} MLP{'s' if n != 1 else ''} ablated ({iv.mode})")
        if len(parts) != 1:
            return f"Changed: {', '.join(parts) or 'nothing'}."
        if iv.freeze:
            meaning = ""
            parts[0] = parts[0].replace(" frozen to", " frozen to their patterns on")
        elif iv.mode == "zero":
            meaning = ": they write nothing"
        else:
            meaning = ": each writes its mean over the prompt"
        done = parts[0] if not meaning else f"{parts[0][:-1]}{meaning})"
        return f"{m.n_layers} layers × {m.n_heads} heads and an MLP each: {done}."

    # --- beats ------------------------------------------------------------------------
    def show_map(self) -> None:
        self.caption(self.what_was_done())
        box = self.content
        self.map = HeadMap.from_trace(
            self.trace, width=box.width, height=min(box.height, 6.5), theme=self.theme
        ).move_to(box.center)
        self.swap(None, self.map.grid, run_time=0.6)
        frames = VGroup(
            *(
                SurroundingRectangle(c, color=self.theme.foreground, buff=0.04, stroke_width=3)
                for c in self.map.changed_cells()
            )
        )
        self.play(FadeIn(frames), FadeIn(self.map.legend, shift=0.2 * DOWN), run_time=0.6)
        self.map.add(frames)
        self.full_map = self.map  # the map beat's map (later beats show a compact one)
        self.wait(1.2)

    def show_before(self) -> None:
        answer, p = self.before_run.answer, float(self.before_run.output_probs[0])
        self.caption(
            f"Before: after {shown(self.token_texts[-1])} the model answers "
            f"{shown(self.before_run.vocab(answer))} ({p:.2f})."
        )
        compact, room = self.get_compact_map()
        self.swap(self.map, compact, run_time=0.6)  # a veil: cheap for 300 cells
        self.map = compact
        self.readout = self.get_readout(room)
        bars = self.readout.bars[0]
        texts, probs = self.readout.values(self.before_run)
        bars.set_values(texts, [0.0] * len(texts))
        self.add(self.readout.headings[0], bars)
        self.play(MorphBars(bars, texts, probs), run_time=1.0)
        self.wait(0.8)

    def show_after(self) -> None:
        answer = self.before_run.answer
        now = self.after_run.answer
        text = shown(self.before_run.vocab(answer))
        before, after = (prob_text(r, answer) for r in (self.before_run, self.after_run))
        still = (
            "still the top answer"
            if now == answer
            else f"now {shown(self.after_run.vocab(now))} is on top"
        )
        self.caption(f"After: {text} {before} → {after}; {still}.")
        bars = self.readout.bars[1]
        start_texts, start_probs = self.readout.values(self.before_run)
        bars.set_values(start_texts, start_probs)
        bars.texts = start_texts
        self.add(self.readout.headings[1], bars)
        texts, probs = self.readout.values(self.after_run)
        self.play(MorphBars(bars, texts, probs), run_time=1.4)
        self.play(FadeIn(self.readout.answer_line, shift=0.2 * DOWN), run_time=0.5)
        self.wait(1.0)

    def show_lens(self) -> None:
        table = self.get_lens()
        how = table.parting()
        self.caption(f"Logit lens, last position: top-1 {how}.")
        if self.lens_below_map:
            self.swap(self.readout, None, run_time=0.4)
        else:
            self.swap(VGroup(self.readout, self.map), None, run_time=0.4)
        self.play(FadeIn(table.header), run_time=0.3)
        for i, row in enumerate(table.rows):
            later = [table.cells[i][1], *table.probs[i : i + 1]]  # after's cell, p(answer)
            parts = [m for m in row if all(m is not x for x in later)]
            self.play(*(FadeIn(m) for m in parts), run_time=0.12)
        self.play(
            *(ReplacementTransform(pair[0].copy(), pair[1]) for pair in table.cells),
            *(FadeIn(p) for p in table.probs),
            run_time=1.2,
        )
        self.wait(1.2)
        self.table = table

    # --- builders ---------------------------------------------------------------------
    def get_compact_map(self) -> tuple[HeadMap, Box]:
        """The map made small (left, or on top in a tall room), and the room left beside it."""
        box = self.content
        self.map_on_top = box.height > 1.3 * box.width  # 9:16; 4:5 and 1:1 keep a column
        if self.map_on_top:
            height = min(3.4, box.height * 0.3)
            compact = HeadMap.from_trace(
                self.trace, width=box.width, height=height, theme=self.theme, legend=False
            )
            compact.move_to([box.center[0], box.y1 - compact.height / 2, 0])
            rest = Box(box.x0, box.x1, box.y0, compact.get_bottom()[1] - 0.4)
        else:
            compact = HeadMap.from_trace(
                self.trace, width=MAP_WIDTH, height=box.height, theme=self.theme, legend=False
            )
            compact.move_to([box.x0 + compact.width / 2, box.center[1], 0])
            rest = Box(compact.get_right()[0] + 0.6, box.x1, box.y0, box.y1)
        frames = VGroup(
            *(
                SurroundingRectangle(c, color=self.theme.foreground, buff=0.03, stroke_width=2)
                for c in compact.changed_cells()
            )
        )
        compact.add(frames)
        return compact, rest

    def get_readout(self, room: Box) -> BeforeAfter:
        """Before and after, side by side (stacked in a narrow room); after headed by the change."""
        summary = change_summary(self.iv, self.trace.model.n_heads)
        before = Reading.before(self.trace, "before")
        after = Reading.after(self.trace, f"after: {summary}")
        readout = BeforeAfter(before, after, self.theme, room.width, room.height, k=self.k)
        return readout.move_to(room.center)

    def get_lens(self) -> LensCompare:
        """The lens before and after, below the title (below the map when it is on top)."""
        box = self.content
        # A tall frame keeps the map above the table; others give the table the room.
        self.lens_below_map = self.map_on_top and box.height > 1.3 * box.width
        if self.lens_below_map:
            box = Box(box.x0, box.x1, box.y0, self.map.get_bottom()[1] - 0.4)
        table = LensCompare(self.before_run, self.after_run, self.theme, box.width, box.height)
        return table.move_to(box.center)


def _short(text: str, limit: int = 32) -> str:
    """``text`` cut to ``limit`` characters with "…" (a caption never cuts itself)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


__all__ = ["Ablation"]

"""Compare: two traces of one model and one prompt length, the last position read in both."""

from __future__ import annotations

from pathlib import Path

from manim import DOWN, LEFT, FadeIn, ReplacementTransform, VGroup

from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.io import load_trace
from mechviz.tracing.schema import Trace
from mechviz.visual import settings as scene_settings
from mechviz.visual import style
from mechviz.visual.ablation import (
    BeforeAfter,
    LensCompare,
    Reading,
    change_summary,
    prob_text,
)
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.mobjects import MorphBars
from mechviz.visual.text import paragraph


class Compare(TraceScene):
    """Trace A (``settings.trace``) morphs into trace B (``settings.other``) at the last position.

    The next-token odds and the logit lens of the last position, from A to B:
    a clean run and an ablated one, or one prompt and another of as many
    tokens. Without ``other``, B is the example of an ablated run
    (``example_trace("Ablation")``: the example prompt with heads 23.4 and 29.1
    ablated). Two traces of different models or prompt lengths are refused.
    """

    shows_lens = True  # its tokens' marks go into the legend

    beats = {
        "names": "what A and B are: their prompts, and what was changed in either",
        "output": "A's next-token odds, morphing into B's; A's answer in both",
        "lens": "the logit lens of the last position in A and in B, layer by layer",
    }
    k = 5  # bars per chart at most

    def construct(self) -> None:
        self.other = self.get_other()  # one sentence if the two do not compare
        self.a = Reading.after(self.trace, "A")
        self.b = Reading.after(self.other, "B")
        self.show_title("Two runs, side by side")
        with self.beat("names"):
            self.show_names()
        with self.beat("output"):
            self.show_output()
        with self.beat("lens"):
            self.show_lens()

    # --- the two traces ---------------------------------------------------------------
    def get_other(self) -> Trace:
        """Trace B: the settings' ``other``, else the ablated example; refused if unlike A."""
        other = self.settings.other
        if other is None:
            other = scene_settings.example_trace("Ablation")
        b = other if isinstance(other, Trace) else load_trace(Path(other))
        check_comparable(self.trace, b)
        return b

    def name(self, trace: Trace, letter: str) -> str:
        """A run's name: "A: The capital of France is" ("(23.4, 29.1 ablated)" when changed)."""
        text = f"{letter}: {trace.prompt}"
        if trace.interventions is not None:
            text += f" ({change_summary(trace.interventions, trace.model.n_heads)})"
        return text

    # --- beats ------------------------------------------------------------------------
    def show_names(self) -> None:
        a, b = self.trace, self.other
        same = a.prompt == b.prompt
        what = "the same prompt" if same else f"prompts of {a.n_positions} tokens each"
        self.caption(f"One model ({a.model.id}), {what}: the last position read in both.")
        box = self.content
        names = VGroup(
            *(
                paragraph(
                    self.name(t, letter),
                    style.BODY_TEXT,
                    self.theme.foreground,
                    max_width=box.width,
                    max_lines=2,
                )
                for t, letter in ((a, "A"), (b, "B"))
            )
        ).arrange(DOWN, buff=0.25, aligned_edge=LEFT)
        names.move_to([box.x0 + names.width / 2, box.y1 - names.height / 2, 0])
        self.swap(None, names, run_time=0.6)
        self.names = names
        self.room = Box(box.x0, box.x1, box.y0, names.get_bottom()[1] - 0.45)
        self.wait(1.0)

    def show_output(self) -> None:
        answer = self.a.answer
        text = shown(self.a.vocab(answer))
        top = self.b.answer
        after = (
            "still on top"
            if top == answer
            else f"B's top is {shown(self.b.vocab(top))} ({self.b.output_probs[0]:.2f})"
        )
        self.caption(
            f"Next token: A's answer {text} {prob_text(self.a, answer)} in A → "
            f"{prob_text(self.b, answer)} in B; {after}."
        )
        room = self.room
        readout = BeforeAfter(self.a, self.b, self.theme, room.width, room.height, k=self.k)
        readout.move_to(room.center)
        self.readout = readout
        first, second = readout.bars
        texts, probs = readout.values(self.a)
        self.add(readout.headings[0], first)
        first.set_values(texts, [0.0] * len(texts))
        self.play(MorphBars(first, texts, probs), run_time=0.8)
        second.set_values(texts, probs)
        second.texts = texts
        self.add(readout.headings[1], second)
        self.play(MorphBars(second, *readout.values(self.b)), run_time=1.4)
        self.play(FadeIn(readout.answer_line, shift=0.2 * DOWN), run_time=0.5)
        self.wait(1.0)

    def show_lens(self) -> None:
        room = self.room
        table = LensCompare(self.a, self.b, self.theme, room.width, room.height)
        table.move_to(room.center)
        how = table.parting()
        self.caption(f"Logit lens, last position: top-1 {how}.")
        self.swap(self.readout, None, run_time=0.4)
        self.play(FadeIn(table.header), run_time=0.3)
        for i, row in enumerate(table.rows):
            later = [table.cells[i][1], *table.probs[i : i + 1]]
            self.play(*(FadeIn(m) for m in row if all(m is not x for x in later)), run_time=0.12)
        self.play(
            *(ReplacementTransform(pair[0].copy(), pair[1]) for pair in table.cells),
            *(FadeIn(p) for p in table.probs),
            run_time=1.2,
        )
        self.wait(1.2)
        self.table = table


def check_comparable(a: Trace, b: Trace) -> None:
    """Refuse, in one sentence, two traces of different models or prompt lengths."""
    if a.model.unembedding_hash != b.model.unembedding_hash:
        raise MechvizError(
            f"Compare needs two traces of one model; A is {a.model.id} and B is {b.model.id} "
            "(their unembeddings differ)."
        )
    if a.n_positions != b.n_positions:
        raise MechvizError(
            f"Compare needs two prompts of the same length in tokens; A has {a.n_positions} "
            f"tokens and B has {b.n_positions}."
        )


__all__ = ["Compare", "check_comparable"]

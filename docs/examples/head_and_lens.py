"""A scene of your own, built from mechviz's blocks: one head, then the logit lens.

Render it (from anywhere; it reads the example trace unless told otherwise):

    python -c "import mechviz; from head_and_lens import HeadAndLens; \
mechviz.render(HeadAndLens, mechviz.trace('The capital of France is'))"

or with plain Manim: ``MECHVIZ_TRACE=trace.json manim -ql head_and_lens.py HeadAndLens``.
"""

from __future__ import annotations

import numpy as np
from manim import DOWN, Create, FadeIn, FadeOut, Group, VGroup

from mechviz.visual import (
    BIG_TEXT,
    BODY_TEXT,
    AttentionGrid,
    LensReadout,
    TraceScene,
    label,
    paragraph,
)


class HeadAndLens(TraceScene):
    """A title card, the head that writes most toward the answer, then the lens layer by layer."""

    def construct(self) -> None:
        trace = self.trace
        answer, prob = trace.prediction
        answer_text = self.vocab_text(answer)

        # 1. A title card: the prompt and what the model says next (recorded values).
        card = VGroup(
            paragraph(
                f"“{trace.prompt}”", BIG_TEXT, self.theme.foreground, max_width=self.frame.width - 1
            ),
            label(f"next token: {answer_text!r}, p = {prob:.2f}", BODY_TEXT, self.theme.muted),
        ).arrange(DOWN, buff=0.5)
        self.play(FadeIn(card, shift=0.2 * DOWN))
        self.wait(0.8)
        self.play(FadeOut(card))

        # 2. The head with the largest direct effect on the answer (recorded in the trace).
        self.show_title("One head, then the logit lens")
        effects = trace.heads.direct  # [layers, heads], logits
        layer, head = (int(i) for i in np.unravel_index(int(effects.argmax()), effects.shape))
        axis = "y" if self.portrait else "x"
        left, right = self.content.split(axis, 0.5, gap=0.4)
        name = label(f"layer {layer}, head {head}", BODY_TEXT, self.theme.highlight)
        room = left.height - name.height - 0.25
        grid = AttentionGrid.from_trace(trace, layer, head, width=left.width, height=room)
        Group(name, grid).arrange(DOWN, buff=0.25).move_to(left.center)
        self.play(FadeIn(name), FadeIn(grid))

        # 3. A highlighted cell: where the last token looks hardest.
        query = trace.n_positions - 1
        key = int(np.argmax(trace.attention.pattern[layer, head, query]))
        weight = float(trace.attention.pattern[layer, head, query, key])
        self.caption(
            f"Head {layer}.{head} writes most toward {answer_text!r}. From "
            f"{self.token_texts[query]!r} it looks hardest at {self.token_texts[key]!r} "
            f"(weight {weight:.2f})."
        )
        self.play(Create(grid.highlight(query, key)))

        # 4. The logit lens at the last token, stepped through every layer.
        readout = LensReadout.from_trace(trace, width=right.width, height=right.height)
        readout.move_to(right.center)
        self.play(FadeIn(readout))
        self.caption("The logit lens reads the last token's stream after every layer.")
        for i in range(trace.n_layers):
            self.play(*readout.step_to(i), run_time=0.12)
        self.wait(1)

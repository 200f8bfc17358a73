"""TunedLens: the logit lens and the tuned lens read the same residuals, layer by layer."""

from __future__ import annotations

import numpy as np
from manim import Create, FadeIn, ReplacementTransform

from mechviz.model.tokens import shown
from mechviz.visual.ablation import LensCompare, Reading
from mechviz.visual.base import TraceScene
from mechviz.visual.learned import LensCurves, LensPair, tuned_reading

STEP_TIME = 0.25  # seconds per layer while both lenses step (31 rows: about 8 s)


class TunedLens(TraceScene):
    """The last position read by the logit lens and by the tuned lens, then their held-out curves.

    Reads ``trace.tuned_lens`` (``mechviz trace --tuned-lens``): the tuned lens's top
    tokens at every lens row, and its held-out bits per byte beside the logit lens's.
    """

    shows_lens = True  # its tokens' marks go into the legend

    beats = {
        "step": "both lenses on the last position's residuals, side by side, layer by layer",
        "table": "each lens's top-1 token by layer, and the answer's probability in both",
        "curves": "held-out bits per byte by layer, both lenses, the model's own as a line",
    }
    k = 4  # bars per lens at most

    def construct(self) -> None:
        self.tuned = self.trace.require("tuned_lens")  # one sentence without it
        self.answer = int(self.trace.output.top_ids[-1, 0])
        self.show_title(f"Logit lens vs tuned lens: {shown(self.token_texts[-1])}")
        with self.beat("step"):
            self.show_steps()
        with self.beat("table"):
            self.show_table()
        with self.beat("curves"):
            self.show_curves()

    # --- words ------------------------------------------------------------------------
    def corpus_words(self) -> str:
        """The training text's sources by name: "python3.11-doc and fortunes"."""
        names = [c.split(" ")[0] for c in self.tuned.corpus] or ["unnamed text"]
        words = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        if len(words) > 48:  # the caption keeps its lines; the count stays honest
            words = f"{names[0]} and {len(names) - 1} more sources"
        return words

    def first_top1(self, ranks: np.ndarray) -> int:
        """The first lens row from which the answer stays top-1 (``ranks`` 0-based, ``[Y]``)."""
        row = len(ranks) - 1
        while row > 0 and ranks[row - 1] == 0:
            row -= 1
        return row

    @staticmethod
    def row_words(row: int) -> str:
        """A lens row in words: "the embedding", "layer 12"."""
        return "the embedding" if row == 0 else f"layer {row - 1}"

    # --- beats ------------------------------------------------------------------------
    def show_steps(self) -> None:
        t = self.tuned
        self.caption(
            "Same residual, two readouts: the tuned lens first applies a learned affine map "
            "h + Ah + b, one per layer."
        )
        box = self.content
        self.pair = LensPair.from_trace(
            self.trace, -1, width=box.width, height=box.height, theme=self.theme, k=self.k
        ).move_to(box.center)
        self.swap(None, self.pair, run_time=0.6)
        rows = self.tuned.top_ids.shape[0]
        for row in range(1, rows):
            if row == max(rows // 3, 1):
                self.caption(
                    f"Its maps were trained on {t.trained_tokens:,} tokens of "
                    f"{self.corpus_words()}."
                )
            self.play(*self.pair.step_to(row), run_time=STEP_TIME)
        self.wait(0.5)
        self.caption(
            "After the last layer there is no map to learn: both lenses read the model's own "
            "output, the same bars."
        )
        self.wait(1.0)

    def show_table(self) -> None:
        logit, tuned = Reading.after(self.trace, "logit lens"), tuned_reading(self.trace)
        ranks_logit = self.trace.lens.final_token_rank[:, -1]
        ranks_tuned = self.tuned.final_token_rank[:, -1]
        self.top1_rows = (self.first_top1(ranks_logit), self.first_top1(ranks_tuned))
        answer = shown(self.vocab_text(self.answer))
        a, b = (self.row_words(r) for r in self.top1_rows)
        if a == b:
            words = f"Top-1 by layer: in both lenses {answer} is on top for good from {a}."
        else:
            words = (
                f"Top-1 by layer: {answer} is on top for good from {b} in the tuned lens, "
                f"from {a} in the logit lens."
            )
        self.caption(words)
        box = self.content
        self.swap(self.pair, None, run_time=0.4)
        table = LensCompare(logit, tuned, self.theme, box.width, box.height)
        table.move_to(box.center)
        self.play(FadeIn(table.header), run_time=0.3)
        for i, row in enumerate(table.rows):
            later = [table.cells[i][1], *table.probs[i : i + 1]]
            parts = [m for m in row if all(m is not x for x in later)]
            self.play(*(FadeIn(m) for m in parts), run_time=0.1)
        self.play(
            *(ReplacementTransform(pair[0].copy(), pair[1]) for pair in table.cells),
            *(FadeIn(p) for p in table.probs),
            run_time=1.0,
        )
        self.wait(1.2)
        self.table = table

    def show_curves(self) -> None:
        t = self.tuned
        self.caption(
            f"Held out ({t.eval_tokens:,} tokens): bits per byte of each lens by layer; "
            f"the model itself: {t.eval_bpb_model:.2f}."
        )
        box = self.content
        self.swap(self.table, None, run_time=0.4)
        self.curves = LensCurves(self.trace, self.theme, box.width, box.height)
        self.curves.move_to(box.center)
        self.swap(None, self.curves.frame_parts, run_time=0.5)

        self.play(Create(self.curves.logit_line), Create(self.curves.tuned_line), run_time=1.6)
        self.add(self.curves)
        self.wait(1.5)


__all__ = ["TunedLens"]

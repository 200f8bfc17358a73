"""EmbeddingSimilarity: which words the input embedding puts close (seed 004, section 2.A)."""

from __future__ import annotations

import numpy as np
from manim import LEFT, UP, Create, FadeIn, Group, Mobject

from mechviz.tracing.schema import Similarity
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.embedding import fmt_cosine
from mechviz.visual.similarity import (
    SEED_REFERENCE,
    PairList,
    ShareBars,
    WordMatrix,
    ranked_pairs,
    word_text,
)


class EmbeddingSimilarity(TraceScene):
    """How alike a word list's rows of ``W_E`` are, and how often token products are positive.

    Reads ``trace.similarity``: the cosine matrix of the words, its most and
    least alike pairs, and the share of positive inner products over random
    token pairs beside the seed's figure for another model.
    """

    beats = {
        "matrix": "the cosine similarity of the words' rows of W_E, with its colour scale",
        "pairs": "the most and the least alike pairs, framed in the matrix and listed",
        "share": "the share of positive inner products over random token pairs, and the seed's",
    }
    reference = SEED_REFERENCE  # drawn muted and labelled as another model's figure
    n_pairs = 4  # most alike pairs listed at most
    side_min = (4.0, 2.6)  # the smallest side panel: its width beside, its height below

    def construct(self) -> None:
        self.similarity: Similarity = self.trace.require("similarity")
        self.show_title("How W_E relates words")
        with self.beat("matrix"):
            self.show_matrix()
        with self.beat("pairs"):
            self.show_pairs()
        with self.beat("share"):
            self.show_share()

    # --- beats ------------------------------------------------------------------------
    def show_matrix(self) -> None:
        s = self.similarity
        self.caption(
            f"Cosine similarity of the rows of W_E for {len(s.words)} words, from −1 to +1 "
            "(· is the space before a word)."
        )
        self.matrix, self.side = self.get_layout()
        m = self.matrix
        self.swap(None, Group(m.grid, m.labels), run_time=0.8)
        self.play(FadeIn(m.numbers), FadeIn(m.legend), run_time=0.6)
        self.wait(1.2)

    def show_pairs(self) -> None:
        ranked = ranked_pairs(np.asarray(self.similarity.cosine, dtype=np.float64))
        (i, j, most), (k, n, least) = ranked[0], ranked[-1]
        words = [word_text(w) for w in self.similarity.words]
        self.caption(
            f"Most alike: {words[i]} and {words[j]} ({fmt_cosine(most)}); "
            f"least alike: {words[k]} and {words[n]} ({fmt_cosine(least)})."
        )
        frames = [self.frame_cell(a, b, self.theme.highlight) for a, b in ((i, j), (j, i))]
        frames += [self.frame_cell(a, b, self.theme.foreground) for a, b in ((k, n), (n, k))]
        self.frames = [f for f in frames if f is not None]
        if self.frames:
            self.play(*(Create(f) for f in self.frames), run_time=0.6)
        self.pairs = None
        if self.side is not None:
            box = self.side
            self.pairs = PairList.from_trace(
                self.trace, self.n_pairs, width=box.width, height=box.height, theme=self.theme
            )
            self.place(self.pairs, box)
            self.swap(None, self.pairs, run_time=0.6)
        self.wait(1.5)

    def show_share(self) -> None:
        s, ref = self.similarity, self.reference
        self.caption(
            f"{100 * s.positive_share:.1f}% of {s.sample * (s.sample - 1) // 2:,} pairs of "
            f"random tokens have a positive inner product; the seed found "
            f"{100 * ref.share:.0f}% for {ref.model}."
        )
        self.share = self.get_share(self.side) if self.side is not None else None
        if self.share is not None and self.share.height <= self.side.height:
            self.place(self.share, self.side)
            old = self.pairs
        else:  # no room beside the matrix: the bars take its place
            self.share = self.get_share(self.content).move_to(self.content.center)
            old = Group(self.matrix, *self.frames, *([self.pairs] if self.pairs else []))
        self.swap(old, self.share, run_time=0.8)
        self.wait(1.5)

    # --- builders ---------------------------------------------------------------------
    def get_layout(self) -> tuple[WordMatrix, Box | None]:
        """The matrix, placed, and the room beside or below it for the lists (if any).

        The matrix shows every word it can; a side panel of at least
        :attr:`side_min` is kept beside it (wide frames) or below it (tall ones)
        when the matrix still shows every word.
        """
        box, W = self.content, len(self.similarity.words)
        wide = box.width > 1.3 * box.height
        matrix = self.get_matrix(box)
        if wide:
            matrix.align_to([box.x0, 0, 0], LEFT)
            side = Box(matrix.get_right()[0] + 0.6, box.x1, box.y0, box.y1)
            return matrix, side if side.width >= self.side_min[0] else None
        need = self.side_min[1] + 0.5
        if box.height - matrix.height < need:
            smaller = self.get_matrix(Box(box.x0, box.x1, box.y0 + need, box.y1))
            if smaller.n < W or smaller.n < matrix.n:
                return matrix, None
            matrix = smaller
        matrix.align_to([0, box.y1, 0], UP)
        return matrix, Box(box.x0, box.x1, box.y0, matrix.get_bottom()[1] - 0.5)

    def get_matrix(self, box: Box) -> WordMatrix:
        """The word list's cosine matrix in ``box``, centred there."""
        matrix = WordMatrix.from_trace(
            self.trace, width=box.width, height=box.height, theme=self.theme
        )
        return matrix.move_to(box.center)

    def get_share(self, box: Box) -> ShareBars:
        """The share of positive products beside :attr:`reference`, for ``box``."""
        return ShareBars.from_trace(
            self.trace,
            width=box.width,
            height=box.height,
            theme=self.theme,
            reference=self.reference,
        )

    def frame_cell(self, row: int, col: int, color: object) -> Mobject | None:
        """A frame around a cell of the matrix, ``None`` when that cell is not shown."""
        if max(row, col) >= self.matrix.n:
            return None
        return self.matrix.highlight(row, col, color)

    @staticmethod
    def place(block: Mobject, box: Box) -> None:
        """``block`` centred across ``box`` and at its top."""
        block.move_to([box.center[0], box.y1 - block.height / 2, 0])


__all__ = ["EmbeddingSimilarity"]

"""Embedding: text becomes tokens, tokens become ids, ids pick rows of W_E."""

from __future__ import annotations

from manim import (
    DOWN,
    AnimationGroup,
    FadeIn,
    FadeOut,
    FadeTransform,
    Group,
    GrowArrow,
    LaggedStart,
    ReplacementTransform,
    VGroup,
)

from mechviz.model.tokens import readable_tokens, shown
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.embedding import CosineMatrix, EmbeddingRows
from mechviz.visual.mobjects import TokenRow
from mechviz.visual.text import paragraph

LINE_HEIGHT = 0.01875  # a wrapped line's height per font-size point (28 -> 0.525 units)


class Embedding(TraceScene):
    """Tokens, their ids, their rows of W_E, and how similar those rows are."""

    beats = {
        "prompt": "the prompt as typed",
        "tokens": "the tokenizer splits it into tokens (· marks a leading space)",
        "ids": "each token is a row number of the vocabulary",
        "rows": "each id picks its row of W_E (real values, first dims)",
        "similarity": "cosine similarity of the prompt's rows of W_E",
    }

    def construct(self) -> None:
        self.show_title("From text to vectors")
        self.stage = self.get_stage()
        self.texts = readable_tokens(self.trace.tokens.text)
        self.ids = [int(i) for i in self.trace.tokens.ids]
        with self.beat("prompt"):
            self.show_prompt()
        with self.beat("tokens"):
            self.show_tokens()
        with self.beat("ids"):
            self.show_ids()
        with self.beat("rows"):
            self.show_rows()
        with self.beat("similarity"):
            self.show_similarity()

    # --- beats ------------------------------------------------------------------------
    def show_prompt(self) -> None:
        n = len(self.trace.prompt)
        self.caption(f"The prompt, as typed: {n} character{'s' * (n != 1)} of text.")
        self.prompt = self.get_prompt()
        self.play(FadeIn(self.prompt), run_time=0.8)
        self.wait(0.6)

    def show_tokens(self) -> None:
        n = len(self.ids)
        space = next((t for t in self.texts if t[:1].isspace() and t.strip()), None)
        marker = f"; the dot in {shown(space)} is its leading space" if space else ""
        self.caption(f"It splits into {n} token{'s' * (n != 1)}{marker}.")
        stage = self.stage
        self.flow = TokenRow.from_trace(
            self.trace,
            width=stage.width,
            height=stage.height,
            theme=self.theme,
            wrap=True,
            ids=True,
        ).move_to(stage.center)
        self.play(FadeTransform(self.prompt, VGroup(*self.flow.boxes)), run_time=1.2)
        if self.flow.note is not None:
            self.play(FadeIn(self.flow.note), run_time=0.3)
        self.wait(0.6)

    def show_ids(self) -> None:
        m = self.trace.model
        p = next((i for i, t in enumerate(self.texts) if t[:1].isspace() and t.strip()), 0)
        self.caption(
            f"Each token is a row number: {shown(self.texts[p])} is row {self.ids[p]} "
            f"of {m.d_vocab:,}."
        )
        self.play(FadeIn(VGroup(*self.flow.ids), shift=0.15 * DOWN), run_time=0.8)
        self.wait(0.8)

    def show_rows(self) -> None:
        """Tokens line up; their ids move to W_E's margin; arrows point at the rows."""
        m, stage, content = self.trace.model, self.stage, self.content
        k = EmbeddingRows.dims_shown(  # the caption says how many dims are shown
            self.trace, width=stage.width, height=stage.height, portrait=self.portrait
        )
        self.caption(f"Each id picks its row of W_E; cells: its first {k} of {m.d_model} dims.")
        content = self.content
        rows = EmbeddingRows.from_trace(
            self.trace,
            width=content.width,
            height=content.height,
            theme=self.theme,
            dims=k,
            portrait=self.portrait,
        ).shift(content.center)
        flow, n = self.flow.cells, len(rows.boxes)
        moves, spare = [], []
        for i in range(n):
            moves.append(ReplacementTransform(flow[i][0], rows.boxes[i]))
            target = rows.labels[self.ids[i]]
            if self.ids.index(self.ids[i]) == i:
                moves.append(ReplacementTransform(flow[i][1], target))
            else:  # a repeated token: its id merges into the row label already there
                spare.append(target.copy())
                moves.append(ReplacementTransform(flow[i][1], spare[-1]))
        gone = flow[n:] + ([self.flow.note] if self.flow.note is not None else [])
        static = rows.get_static()
        self.play(*moves, *(FadeOut(g) for g in gone), *(FadeIn(s) for s in static), run_time=1.2)
        self.remove(*spare)
        seen: set[int] = set()
        steps = []
        for i, arrow in enumerate(rows.arrows):
            parts = [GrowArrow(arrow)]
            if self.ids[i] not in seen:
                seen.add(self.ids[i])
                parts.append(FadeIn(rows.cells[self.ids[i]]))
            steps.append(AnimationGroup(*parts))
        self.play(LaggedStart(*steps, lag_ratio=0.5), run_time=min(3.0, 0.6 + 0.3 * n))
        self.wait(1.0)
        self.rows_parts = rows

    def show_similarity(self) -> None:
        """Cosine similarity of the prompt's rows of W_E, labelled by token."""
        self.swap(self.rows_parts, None, run_time=0.5)
        self.caption("How alike are the tokens' rows of W_E? Cosine similarity, −1 to +1.")
        room = self.content  # laid out after this beat's caption
        matrix = CosineMatrix.from_trace(
            self.trace, width=room.width, height=room.height, theme=self.theme
        ).shift(room.center)
        self.swap(None, Group(matrix.grid, matrix.labels), run_time=0.8)
        self.play(FadeIn(matrix.numbers), FadeIn(matrix.legend), run_time=0.6)
        self.wait(1.2)

    # --- builders ---------------------------------------------------------------------
    def get_stage(self) -> Box:
        """The room below the title and above the longest caption any beat may show."""
        lines = 3 if self.portrait else 2
        caption_h = LINE_HEIGHT * style.BODY_TEXT * (lines - 1) + 0.3
        y0 = self.frame.y0 + style.BUFF + caption_h + 0.3
        return Box(self.content.x0, self.content.x1, y0, self.content.y1)

    def get_prompt(self) -> VGroup:
        """The prompt in quotes, as big as fits the stage (cut with … only at body size)."""
        text = "“" + " ".join(self.trace.prompt.split()) + "”"
        stage = self.stage
        for size in (style.BIG_TEXT, style.TITLE_TEXT, style.BODY_TEXT):
            lines = max(1, int(stage.height // (LINE_HEIGHT * size)))
            mob = paragraph(
                text, size, self.theme.foreground, max_width=stage.width, max_lines=lines
            )
            if mob.height <= stage.height and not mob.text.rstrip().endswith("…"):
                break
        return mob.move_to(stage.center)


__all__ = ["Embedding"]

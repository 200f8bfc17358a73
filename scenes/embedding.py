"""Embedding: text becomes tokens, tokens become ids, ids pick rows of W_E."""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    FadeTransform,
    Line,
    Rectangle,
    TransformFromCopy,
    VGroup,
    Write,
)

from mechviz.visual import style
from mechviz.visual.base import TraceScene
from mechviz.visual.mobjects import Heatmap, TokenRow, VectorColumn, label


class Embedding(TraceScene):
    """Tokens, their ids, their rows of W_E, and how similar those rows are."""

    n_dims_shown = 8  # cells per column; the rest of d_model is the ellipsis
    max_tokens_shown = 8  # token boxes, ids and columns; more would not be readable
    max_prompt_chars = 70  # longer prompts are cut with an ellipsis, to stay readable at 480p

    def construct(self) -> None:
        self.show_prompt()
        self.show_tokens()
        self.show_ids()
        self.show_rows()
        self.show_similarity()

    def show_prompt(self) -> None:
        self.title = label("From text to vectors", style.TITLE_SIZE).to_corner(UP + LEFT, buff=0.3)
        text = " ".join(self.trace.prompt.split())  # one line: newlines and tabs as spaces
        if len(text) > self.max_prompt_chars:
            text = text[: self.max_prompt_chars - 1].rstrip() + "…"
        self.prompt = label(f"“{text}”", style.TITLE_SIZE)
        self.prompt.scale_to_fit_width(min(self.prompt.width, 12)).move_to(UP * 2.3)
        self.play(Write(self.title), FadeIn(self.prompt), run_time=1.0)

    def show_tokens(self) -> None:
        texts = self.trace.tokens.text
        n = min(len(texts), self.max_tokens_shown)
        # Boxes at least as wide as a vector column, so columns never touch.
        self.tokens = TokenRow(texts[:n], max_width=10.5, min_width=0.75)
        self.tokens.move_to(UP * 1.3 + RIGHT * 0.8)
        self.play(FadeTransform(self.prompt.copy(), self.tokens), run_time=1.2)
        name = "tokens" if n == len(texts) else f"first {n} of\n{len(texts)} tokens"
        caption = label(name, style.SMALL_SIZE, style.MUTED).next_to(self.tokens, LEFT, buff=0.4)
        self.play(FadeIn(caption), run_time=0.4)
        self.captions = VGroup(caption)

    def show_ids(self) -> None:
        self.ids = VGroup(
            *[
                label(str(i), style.SMALL_SIZE, style.token_color(p), font=style.MONO).next_to(
                    box, DOWN, buff=0.15
                )
                for p, (i, box) in enumerate(zip(self.trace.tokens.ids, self.tokens.boxes))
            ]
        )
        caption = label("ids", style.SMALL_SIZE, style.MUTED).next_to(self.ids, LEFT, buff=0.4)
        caption.align_to(self.captions[0], RIGHT)
        self.captions.add(caption)
        self.play(FadeIn(self.ids, shift=DOWN * 0.1), FadeIn(caption), run_time=0.8)

    def show_rows(self) -> None:
        """Each id picks its row of W_E; the rows stand as coloured columns."""
        m = self.trace.model
        W_E = Rectangle(width=0.9, height=3.4, stroke_color=style.MUTED, stroke_width=1.5)
        W_E.move_to([-5.9, -1.25, 0])
        name = label("W_E", style.TEXT_SIZE).next_to(W_E, UP, buff=0.1)
        dims = label(f"{m.d_vocab:,} × {m.d_model}", style.SMALL_SIZE - 2, style.MUTED)
        dims.next_to(W_E, DOWN, buff=0.1)
        self.play(FadeIn(VGroup(W_E, name, dims)), run_time=0.6)
        rows, columns = VGroup(), VGroup()
        sample = self.trace.embedding.W_E_sample[:, : self.n_dims_shown]
        scale = style.robust_scale(self.trace.embedding.W_E_sample)
        for p, (token_id, _box) in enumerate(zip(self.trace.tokens.ids, self.tokens.boxes)):
            y = W_E.get_top()[1] - W_E.height * (token_id + 0.5) / m.d_vocab  # the row's place
            color = style.token_color(p)
            rows.add(
                Line(
                    [W_E.get_left()[0], y, 0],
                    [W_E.get_right()[0], y, 0],
                    color=color,
                    stroke_width=3,
                )
            )
            column = VectorColumn(sample[p], scale, cell=0.36)
            column.next_to(self.ids[p], DOWN, buff=0.3)
            columns.add(column)
        picked = label("each id picks one row", style.SMALL_SIZE - 2, style.MUTED)
        picked.next_to(W_E, RIGHT, buff=0.2).align_to(W_E, UP)
        self.play(FadeIn(rows), FadeIn(picked), run_time=0.8)
        self.play(
            *[TransformFromCopy(row, column) for row, column in zip(rows, columns)],
            FadeOut(picked),
            run_time=1.4,
        )
        caption = label(
            f"first {self.n_dims_shown} of {m.d_model} dims", style.SMALL_SIZE - 2, style.MUTED
        )
        caption.next_to(columns, DOWN, buff=0.15).align_to(columns, LEFT)
        self.play(FadeIn(caption), run_time=0.4)
        self.wait(1.0)
        self.matrix_parts = VGroup(W_E, name, dims, rows, columns, caption)

    def show_similarity(self) -> None:
        """Cosine similarity of the prompt's rows of W_E, labelled by token."""
        cosine = self.trace.embedding.cosine
        P = cosine.shape[0]
        size = min(4.8, 0.8 * P)
        heading = label(
            "How alike are the token vectors? cosine similarity of their rows of W_E",
            style.TEXT_SIZE,
            style.MUTED,
        )
        heading.scale_to_fit_width(min(heading.width, 12.5)).move_to(UP * 2.55)
        grid = Heatmap(style.diverging_rgb(cosine, 1.0), size, size)
        grid.move_to(DOWN * 0.75)
        labels = grid.get_token_labels(self.trace.tokens.text)
        numbers = grid.get_numbers(cosine)
        note = label("blue −1 · 0 · +1 red", style.SMALL_SIZE - 2, style.MUTED)
        note.next_to(grid, RIGHT, buff=0.4).align_to(grid, DOWN)
        self.play(
            FadeOut(self.matrix_parts),
            FadeOut(self.tokens),
            FadeOut(self.ids),
            FadeOut(self.captions),
            FadeOut(self.prompt),
            run_time=0.6,
        )
        self.play(FadeIn(heading), FadeIn(grid), FadeIn(labels), run_time=0.8)
        self.play(FadeIn(numbers), FadeIn(note), run_time=0.8)
        self.wait(1.5)


__all__ = ["Embedding"]

"""Reusable mobjects, after Manim's ``Matrix`` recipe: named parts, ``from_trace``.

Every size, colour and opacity comes from a recorded number. Large grids are
images (``ImageMobject`` from NumPy arrays), not thousands of squares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Group,
    ImageMobject,
    Rectangle,
    RoundedRectangle,
    Text,
    VGroup,
)
from manim.constants import RESAMPLING_ALGORITHMS

from mechviz.schema import Trace
from mechviz.tokens import shown
from mechviz.visual import style


def label(
    text: str,
    size: float = style.TEXT_SIZE,
    color: object = style.FOREGROUND,
    font: str = style.FONT,
    weight: str = "NORMAL",
) -> Text:
    """Text in the house font; token text should go through :func:`shown` first."""
    return Text(text, font=font, font_size=size, color=color, weight=weight)


class TokenBox(VGroup):
    """A token's text in a rounded box tinted with the token's colour."""

    def __init__(
        self,
        text: str,
        color: object = style.TOKEN_COLORS[0],
        font_size: float = style.TEXT_SIZE,
        height: float = 0.5,
        min_width: float = 0.5,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.text = label(shown(text), font_size)
        self.box = RoundedRectangle(
            corner_radius=0.08,
            width=max(self.text.width + 0.24, min_width),
            height=height,
            stroke_color=color,
            stroke_width=2,
            fill_color=color,
            fill_opacity=0.18,
        )
        self.text.move_to(self.box)
        self.add(self.box, self.text)


class TokenRow(VGroup):
    """The prompt's tokens as boxes in a row; ``boxes[i]`` is position ``i``."""

    def __init__(
        self,
        texts: Sequence[str],
        font_size: float = style.TEXT_SIZE,
        max_width: float = 12.0,
        buff: float = 0.1,
        positions: Sequence[int] | None = None,
        min_width: float = 0.5,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        positions = list(positions) if positions is not None else list(range(len(texts)))
        self.boxes = [
            TokenBox(t, style.token_color(p), font_size=font_size, min_width=min_width)
            for p, t in zip(positions, texts)
        ]
        self.add(*self.boxes)
        self.arrange(RIGHT, buff=buff)
        if self.width > max_width:
            self.scale_to_fit_width(max_width)

    @classmethod
    def from_trace(cls, trace: Trace, **kwargs: object) -> TokenRow:
        return cls(trace.tokens.text, **kwargs)


def label_step(spacing: float, min_spacing: float = 0.24) -> int:
    """Label every ``step``-th item so labels ``spacing`` apart stay readable."""
    return max(1, int(np.ceil(min_spacing / max(spacing, 1e-9))))


def fit(mobject: Text, max_width: float, max_height: float) -> Text:
    """Shrink (never grow) ``mobject`` to fit the box."""
    if mobject.width > max_width:
        mobject.scale_to_fit_width(max_width)
    if mobject.height > max_height:
        mobject.scale_to_fit_height(max_height)
    return mobject


def grid_image(rgb: np.ndarray, width: float, height: float) -> ImageMobject:
    """An ``[rows, cols, 3]`` uint8 array as a crisp image of the given size."""
    image = ImageMobject(np.ascontiguousarray(rgb))
    image.set_resampling_algorithm(RESAMPLING_ALGORITHMS["nearest"])
    image.stretch_to_fit_width(width)
    image.stretch_to_fit_height(height)
    return image


class Heatmap(Group):
    """A matrix as an image with a frame; ``cell_center(i, j)`` locates a cell."""

    def __init__(self, rgb: np.ndarray, width: float, height: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.n_rows, self.n_cols = rgb.shape[:2]
        self.image = grid_image(rgb, width, height)
        self.frame = Rectangle(width=width, height=height, stroke_color=style.MUTED, stroke_width=1)
        self.frame.move_to(self.image)
        self.add(self.image, self.frame)

    @property
    def cell(self) -> float:
        """Side of one cell, in scene units."""
        return self.frame.width / self.n_cols

    def get_token_labels(self, texts: Sequence[str], max_width: float = 2.2) -> VGroup:
        """Token labels left of the rows and, tilted, above the columns.

        Labels never overlap: with many tokens only every ``step``-th is labelled.
        """
        step = label_step(self.cell)
        labels = VGroup()
        for i in range(0, len(texts), step):
            row = label(shown(texts[i]), style.SMALL_SIZE, style.token_color(i))
            fit(row, max_width, self.cell * step * 0.9)
            row.next_to(self.frame, LEFT, buff=0.12).set_y(self.cell_center(i, 0)[1])
            col = label(shown(texts[i]), style.SMALL_SIZE, style.token_color(i))
            # Tilted labels sit cell * step * sin(45°) apart, across their own height.
            fit(col, max_width * 0.8, self.cell * step * 0.6).rotate(np.pi / 4)
            col.move_to(
                self.cell_center(0, i) + UP * (self.cell / 2 + 0.08), aligned_edge=DOWN + LEFT
            )
            col.shift(LEFT * min(0.12, self.cell / 3))
            labels.add(row, col)
        return labels

    def get_numbers(self, values: np.ndarray, lower_only: bool = False) -> VGroup:
        """The values written in their cells, when cells are big enough to read."""
        numbers = VGroup()
        if self.cell < 0.45:
            return numbers
        size = style.SMALL_SIZE - 2 if self.cell >= 0.7 else style.SMALL_SIZE - 5
        for i in range(self.n_rows):
            for j in range(i + 1 if lower_only else self.n_cols):
                number = label(f"{values[i, j]:.2f}", size, font=style.MONO)
                numbers.add(number.move_to(self.cell_center(i, j)))
        return numbers

    def cell_center(self, row: int, col: int) -> np.ndarray:
        w, h = self.frame.width / self.n_cols, self.frame.height / self.n_rows
        corner = self.frame.get_corner(UP + LEFT)
        return corner + RIGHT * w * (col + 0.5) + DOWN * h * (row + 0.5)


class VectorColumn(VGroup):
    """A vector as a column of cells coloured blue/red by value, with numbers."""

    def __init__(
        self,
        values: Sequence[float],
        scale: float,
        cell: float = 0.42,
        font_size: float = style.SMALL_SIZE - 4,
        show_numbers: bool = True,
        ellipsis: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.cells = VGroup(
            *[
                Rectangle(
                    width=cell * 1.6,
                    height=cell,
                    stroke_color=style.MUTED,
                    stroke_width=0.5,
                    fill_color=style.signed_color(v, scale),
                    fill_opacity=1.0,
                )
                for v in values
            ]
        ).arrange(DOWN, buff=0)
        self.add(self.cells)
        if show_numbers:
            self.numbers = VGroup(
                *[
                    label(f"{v:+.2f}", font_size, font=style.MONO).move_to(c)
                    for v, c in zip(values, self.cells)
                ]
            )
            self.add(self.numbers)
        if ellipsis:
            self.dots = label("⋮", style.TEXT_SIZE, style.MUTED).next_to(
                self.cells, DOWN, buff=0.08
            )
            self.add(self.dots)


class ProbBars(VGroup):
    """A next-token bar chart: token label, bar (length = probability), value."""

    def __init__(
        self,
        texts: Sequence[str],
        probs: Sequence[float],
        bar_width: float = 3.0,
        font_size: float = style.TEXT_SIZE,
        row_height: float = 0.42,
        highlight: int | None = 0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.rows = VGroup()
        for i, (text, p) in enumerate(zip(texts, probs)):
            color = style.HIGHLIGHT if i == highlight else style.PROB_HIGH
            name = label(shown(text), font_size)
            bar = Rectangle(
                width=max(bar_width * float(p), 0.02),
                height=row_height * 0.7,
                stroke_width=0,
                fill_color=color,
                fill_opacity=0.9,
            )
            value = label(f"{p:.3f}", font_size - 4, style.MUTED, font=style.MONO)
            row = VGroup(name, bar, value)
            bar.move_to(DOWN * i * row_height, aligned_edge=LEFT)
            name.move_to([bar.get_left()[0] - 0.15 - name.width / 2, bar.get_center()[1], 0])
            value.next_to(bar, RIGHT, buff=0.12)
            self.rows.add(row)
        self.add(self.rows)

"""Reusable mobjects, after Manim's ``Matrix`` recipe: named parts, themable, legible.

Every size, colour and opacity comes from a recorded number. Large grids are
images (``ImageMobject`` from NumPy arrays), not thousands of squares. Text
never goes below ``style.MIN_TEXT``: when a part has no room, it shows fewer
items and says so, or cuts a label with ``…``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    Group,
    ImageMobject,
    Rectangle,
    RoundedRectangle,
    VGroup,
)
from manim.constants import RESAMPLING_ALGORITHMS

from mechviz.tokens import shown
from mechviz.visual import style
from mechviz.visual.style import DARK, Theme
from mechviz.visual.text import center_on, label, number

__all__ = [
    "Heatmap",
    "ProbBars",
    "MorphBars",
    "TokenBox",
    "TokenRow",
    "grid_image",
    "label",
    "window",
]


class TokenBox(VGroup):
    """A token's text in a rounded box tinted with the token's colour."""

    def __init__(
        self,
        text: str,
        color: object = None,
        font_size: float = style.BODY_TEXT,
        theme: Theme = DARK,
        max_width: float | None = None,
        height: float | None = None,
        min_width: float = 0.5,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        color = color if color is not None else theme.tokens[0]
        inner = None if max_width is None else max_width - 0.2
        self.text = label(shown(text), font_size, theme.foreground, max_width=inner)
        self.box = RoundedRectangle(
            corner_radius=0.08,
            width=max(self.text.width + 0.2, min_width),
            height=height or style.cap_height(font_size) * 2.6,
            stroke_color=color,
            stroke_width=2,
            fill_color=color,
            fill_opacity=0.2,
        )
        # Centre on the box by the capitals' band, so `·gave` and `The` share a baseline.
        center_on(self.text, self.box.get_center())
        self.add(self.box, self.text)


class TokenRow(VGroup):
    """The prompt's tokens as boxes in a row (or wrapped rows); ``boxes[i]`` is item ``i``.

    Args:
        texts: Token texts (raw; made visible with ``shown``).
        colors: One colour per token (use ``style.TokenColors`` so an id keeps its colour).
        max_width: Width to fit; with ``wrap`` the boxes flow onto more lines.
        wrap: Flow onto more lines instead of cutting labels.

    """

    def __init__(
        self,
        texts: Sequence[str],
        colors: Sequence[object],
        font_size: float = style.BODY_TEXT,
        theme: Theme = DARK,
        max_width: float = 12.0,
        buff: float = 0.12,
        wrap: bool = False,
        min_width: float = 0.5,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        n = max(len(texts), 1)
        each = max_width if wrap else (max_width - buff * (n - 1)) / n
        self.boxes = [
            TokenBox(t, c, font_size, theme, max_width=each, min_width=min(min_width, each))
            for t, c in zip(texts, colors)
        ]
        self.add(*self.boxes)
        if not wrap:
            self.arrange(RIGHT, buff=buff)
            return
        line: list[TokenBox] = []
        lines: list[VGroup] = []
        used = 0.0
        for box in self.boxes:
            if line and used + buff + box.width > max_width:
                lines.append(VGroup(*line).arrange(RIGHT, buff=buff))
                line, used = [], 0.0
            used += box.width + (buff if line else 0)
            line.append(box)
        if line:
            lines.append(VGroup(*line).arrange(RIGHT, buff=buff))
        VGroup(*lines).arrange(DOWN, buff=buff * 1.5, aligned_edge=LEFT)


def window(n: int, keep: Sequence[int], size: int) -> list[int]:
    """Up to ``size`` indices of ``range(n)``: all of ``keep`` first, then the last ones, sorted."""
    chosen = [k for k in dict.fromkeys(keep) if 0 <= k < n][:size]
    for i in range(n - 1, -1, -1):
        if len(chosen) >= size:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)


def grid_image(rgb: np.ndarray, width: float, height: float) -> ImageMobject:
    """An ``[rows, cols, 3]`` uint8 array as a crisp image of the given size."""
    image = ImageMobject(np.ascontiguousarray(rgb))
    image.set_resampling_algorithm(RESAMPLING_ALGORITHMS["nearest"])
    image.stretch_to_fit_width(width)
    image.stretch_to_fit_height(height)
    return image


class Heatmap(Group):
    """A matrix as an image with a frame; ``cell_center(i, j)`` locates a cell."""

    def __init__(
        self, rgb: np.ndarray, width: float, height: float, theme: Theme = DARK, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.theme = theme
        self.n_rows, self.n_cols = rgb.shape[:2]
        self.image = grid_image(rgb, width, height)
        self.frame = Rectangle(width=width, height=height, stroke_color=theme.muted, stroke_width=1)
        self.frame.move_to(self.image)
        self.add(self.image, self.frame)

    @property
    def cell(self) -> float:
        """Width of one cell, in scene units."""
        return self.frame.width / self.n_cols

    @property
    def cell_height(self) -> float:
        return self.frame.height / self.n_rows

    def cell_center(self, row: int, col: int) -> np.ndarray:
        corner = self.frame.get_corner(UP + LEFT)
        return corner + RIGHT * self.cell * (col + 0.5) + DOWN * self.cell_height * (row + 0.5)

    def get_row_labels(
        self, texts: Sequence[str], colors: Sequence[object], max_width: float = 2.2
    ) -> VGroup:
        """A label left of every row (the caller keeps rows at least a label high)."""
        labels = VGroup()
        for i, (text, color) in enumerate(zip(texts, colors)):
            row = label(shown(text), style.MIN_TEXT, color, max_width=max_width)
            row.next_to(self.frame, LEFT, buff=0.12).set_y(self.cell_center(i, 0)[1])
            labels.add(row)
        return labels

    def get_col_labels(
        self, texts: Sequence[str], colors: Sequence[object], max_height: float = 1.8
    ) -> VGroup:
        """A label above every column: upright when it fits the cell, else turned 90°."""
        labels = VGroup()
        upright = all(label(shown(t), style.MIN_TEXT).width <= self.cell * 0.95 for t in texts)
        for j, (text, color) in enumerate(zip(texts, colors)):
            if upright:
                col = label(shown(text), style.MIN_TEXT, color)
                col.next_to(self.frame, UP, buff=0.1).set_x(self.cell_center(0, j)[0])
            else:
                col = label(shown(text), style.MIN_TEXT, color, max_width=max_height)
                col.rotate(np.pi / 2)
                col.next_to(self.frame, UP, buff=0.1).set_x(self.cell_center(0, j)[0])
            labels.add(col)
        return labels

    def get_numbers(self, values: np.ndarray, lower_only: bool = False) -> VGroup:
        """The values written in their cells, when the cells are big enough to read them."""
        numbers = VGroup()
        if label("0.00", style.MIN_TEXT).width > self.cell * 0.92 or self.cell_height < 0.34:
            return numbers
        for i in range(self.n_rows):
            for j in range(i + 1 if lower_only else self.n_cols):
                fill = (
                    self.image.pixel_array[i, j, :3] if hasattr(self.image, "pixel_array") else None
                )
                color = self.theme.text_on(fill) if fill is not None else self.theme.foreground
                number = label(f"{values[i, j]:.2f}", style.MIN_TEXT, color, font=style.MONO)
                numbers.add(number.move_to(self.cell_center(i, j)))
        return numbers


class ProbBars(VGroup):
    """A next-token bar chart: token, bar (length = probability), value; rows ``rows[i]``.

    :meth:`set_values` redraws it for new tokens and probabilities (what
    :class:`MorphBars` interpolates), so a value always matches its bar.
    """

    def __init__(
        self,
        texts: Sequence[str],
        probs: Sequence[float],
        theme: Theme = DARK,
        bar_width: float = 3.0,
        name_width: float = 1.8,
        row_height: float = 0.5,
        font_size: float = style.MIN_TEXT,
        colors: Sequence[object] | None = None,
        highlight: Callable[[str], bool] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = theme
        self.bar_width, self.name_width = bar_width, name_width
        self.row_height, self.font_size = row_height, font_size
        self.highlight = highlight
        self.rows = VGroup()
        for i in range(len(texts)):
            track = Rectangle(
                width=bar_width,
                height=row_height * 0.62,
                stroke_color=theme.faint,
                stroke_width=1,
                fill_opacity=0,
            )
            track.move_to(DOWN * i * row_height + RIGHT * (name_width + 0.15 + bar_width / 2))
            bar = Rectangle(stroke_width=0, fill_opacity=0.95)
            self.rows.add(VGroup(VGroup(), bar, VGroup(), track))
        # An invisible box over the widest name and value, so the chart's extent
        # (what layout arranges by) does not change when the tokens do.
        value_w = label("0.00", font_size, font=style.MONO).width + 0.12
        left = name_width + 0.15
        self.extent = Rectangle(
            width=left + bar_width + value_w,
            height=row_height * max(len(texts), 1),
            stroke_opacity=0,
            fill_opacity=0,
            stroke_width=0,
        ).move_to([(left + bar_width + value_w) / 2, -row_height * (len(texts) - 1) / 2, 0])
        self.add(self.extent, self.rows)
        self.set_values(texts, probs, colors)
        self.texts, self.colors = list(texts), colors

    def keep_rows(self, n: int) -> ProbBars:
        """Keep the first ``n`` rows (a short panel)."""
        extra = self.rows[n:]
        if extra:
            self.rows.remove(*extra)
            self.extent.stretch_to_fit_height(self.row_height * n, about_edge=UP)
        return self

    def set_values(
        self,
        texts: Sequence[str],
        probs: Sequence[float],
        colors: Sequence[object] | None = None,
    ) -> ProbBars:
        theme = self.theme
        self.values = [float(p) for p in probs]
        # Parts are rebuilt only when what they show changes: MorphBars calls
        # this on every frame, where mostly the bars' lengths move.
        for i, row in enumerate(self.rows):
            track = row[3]
            text, p = texts[i], float(probs[i])
            color = colors[i] if colors is not None else theme.foreground
            strong = self.highlight(text) if self.highlight else i == 0
            name, bar, value = row[0], row[1], row[2]
            if getattr(name, "_mv_key", None) != (text, str(color)):
                name = label(shown(text), self.font_size, color, max_width=self.name_width)
                center_on(name, track.get_left() + LEFT * (0.15 + name.width / 2))
                name._mv_key = (text, str(color))
            fill = theme.highlight if strong else theme.prob
            x0, y0 = track.get_left()[0], track.get_bottom()[1]
            x1, y1 = x0 + max(self.bar_width * p, 0.02), track.get_top()[1]
            corners = [[x0, y1, 0], [x1, y1, 0], [x1, y0, 0], [x0, y0, 0], [x0, y1, 0]]
            bar.set_points_as_corners(corners)
            bar.set_fill(fill, 0.95)
            shown_value = f"{p:.2f}"
            if getattr(value, "text", None) != shown_value:
                value = number(shown_value, self.font_size, theme.muted)
                value.next_to(track, RIGHT, buff=0.12)
                center_on(value, [value.get_x(), track.get_y(), 0])
            row.submobjects = [name, bar, value, track]
        return self


class MorphBars(Animation):
    """Bars slide from their values to new ones; tokens swap at the midpoint.

    The value labels track the bars' lengths on every frame.
    """

    def __init__(
        self,
        bars: ProbBars,
        texts: Sequence[str],
        probs: Sequence[float],
        colors: Sequence[object] | None = None,
        **kwargs: object,
    ) -> None:
        self.texts, self.probs, self.colors = list(texts), [float(p) for p in probs], colors
        self.start_texts, self.start_colors = bars.texts, bars.colors
        self.start_probs = [bars.values[i] for i in range(len(bars.rows))]
        super().__init__(bars, **kwargs)

    def create_starting_mobject(self) -> VGroup:
        return VGroup()  # interpolation reads the stored values; a deep copy would be wasted

    def interpolate_mobject(self, alpha: float) -> None:
        a = self.rate_func(alpha)
        probs = [(1 - a) * p0 + a * p1 for p0, p1 in zip(self.start_probs, self.probs)]
        texts = self.texts if a >= 0.5 else self.start_texts
        colors = self.colors if a >= 0.5 else self.start_colors
        self.mobject.set_values(texts, probs, colors)

    def finish(self) -> None:
        super().finish()
        self.mobject.texts, self.mobject.colors = self.texts, self.colors

"""Reusable mobjects, after Manim's ``Matrix`` recipe: named parts, themable, legible.

Every size, colour and opacity comes from a recorded number. Large grids are
images (``ImageMobject`` from NumPy arrays), not thousands of squares. Text
never goes below ``style.MIN_TEXT``: when a part has no room, it shows fewer
items and says so, or cuts a label with ``…``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    Group,
    ImageMobject,
    Mobject,
    Rectangle,
    RoundedRectangle,
    VGroup,
    linear,
)
from manim.constants import RESAMPLING_ALGORITHMS

from mechviz.model.tokens import shown
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.style import DARK, Theme
from mechviz.visual.text import center_on, label, number

if TYPE_CHECKING:
    from mechviz.tracing.schema import Trace

ID_FONT = style.MONO  # ids in one column or under boxes line up digit by digit

__all__ = [
    "Heatmap",
    "ProbBars",
    "MorphBars",
    "SwitchAt",
    "TokenBox",
    "TokenRow",
    "grid_image",
    "label",
    "window",
]


class TokenBox(VGroup):
    """A token's text in a rounded box tinted with the token's colour.

    Args:
        text: The token's text (raw; made visible with ``shown``: a leading space is ``·``).
        color: The box's colour (default: the theme's first token colour).
        font_size: Manim font size of the text.
        theme: Colours.
        max_width: The box's widest (scene units); a longer text is cut with ``…``.
        height: The box's height (scene units; default 2.6 capitals).
        min_width: The box's narrowest (scene units).

    Attributes:
        text: The label (``Text``).
        box: The rounded rectangle.

    """

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

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        font_size: float = style.BODY_TEXT,
        min_width: float = 0.5,
    ) -> TokenBox:
        """The prompt's token at ``position``, coloured by its token id.

        Args:
            trace: A trace or the path of one.
            position: The token's position in the prompt (negative counts from the end).
            width: The widest the box may be (scene units; default the frame less margins);
                a longer token is cut with ``…``.
            height: The tallest the box may be (scene units); the box is 2.6 capitals
                high unless that is taller.
            theme: A theme or its name (default: the current render's).
            font_size: Manim font size (at least ``style.MIN_TEXT``).
            min_width: The box's narrowest (scene units).

        Returns:
            The box, centred on the origin.

        """
        view = TraceView.of(trace, theme)
        w, h = room(width, height)
        natural = style.cap_height(font_size) * 2.6
        box = cls(
            view.token_texts[position],
            view.token_color(position),
            font_size,
            view.theme,
            max_width=w,
            height=min(natural, max(h, style.cap_height(font_size) * 1.6)),
            min_width=min(min_width, w),
        )
        box.position = position % view.trace.n_positions
        box.token_id = int(view.trace.tokens.ids[box.position])
        return box.move_to([0.0, 0.0, 0.0])


class TokenRow(VGroup):
    """The prompt's tokens as boxes in a row (or wrapped rows); ``boxes[i]`` is item ``i``.

    Build it from a trace with :meth:`from_trace` (colours by token id, ids under
    the boxes if asked, fewer tokens and a note when the room is too small).

    Args:
        texts: Token texts (raw; made visible with ``shown``).
        colors: One colour per token (use ``style.TokenColors`` so an id keeps its colour).
        font_size: Manim font size of the token texts.
        theme: Colours.
        max_width: Width to fit (scene units); with ``wrap`` the boxes flow onto more lines.
        buff: Space between boxes (scene units).
        wrap: Flow onto more lines instead of cutting labels.
        min_width: A box's narrowest (scene units).

    Attributes:
        boxes: One :class:`TokenBox` per token shown, in prompt order.
        ids: The token ids written under the boxes (``from_trace(ids=True)``), else empty.
        cells: Per token shown, a ``VGroup`` of its box and (if shown) its id.
        positions: The prompt positions shown, in order.
        note: The "first n of m tokens" label when some are left out, else ``None``.

    """

    sizes = (style.TITLE_TEXT, style.BODY_TEXT, style.MIN_TEXT)  # tried biggest first
    line_buff = 0.22  # between wrapped lines (scene units)
    note_room = 0.55  # height kept for the "first n of m" note (scene units)

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
        self.ids: list[VGroup] = []
        self.cells = [VGroup(box) for box in self.boxes]
        self.positions = list(range(len(self.boxes)))
        self.note = None
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

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        positions: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        wrap: bool = False,
        font_size: float | None = None,
        ids: bool = False,
        buff: float = 0.15,
    ) -> TokenRow:
        """The prompt's tokens (readable texts), each box coloured by its token id.

        The biggest of :attr:`sizes` at which every token fits is used (or
        ``font_size``). When even the smallest does not fit, the first tokens that
        do are shown with a "first n of m tokens" note below them.

        Args:
            trace: A trace or the path of one.
            positions: Prompt positions to show, in order (default: all).
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            wrap: Flow onto centred lines (else one line).
            font_size: One Manim font size to use instead of trying :attr:`sizes`.
            ids: Write each token's id (its row of ``W_E``) under its box.
            buff: Space between boxes (scene units).

        Returns:
            The row, centred on the origin.

        """
        view = TraceView.of(trace, theme)
        w, h = room(width, height)
        n_all = view.trace.n_positions
        chosen = list(range(n_all)) if positions is None else [p % n_all for p in positions]
        sizes = (font_size,) if font_size is not None else cls.sizes
        for size in sizes:
            cells = [cls._cell(view, p, size, w, ids) for p in chosen]
            lines = _flow(cells, w if wrap else float("inf"), buff)
            fits = _lines_fitting(lines, h, cls.line_buff)
            if fits == len(lines) and (wrap or _line_width(cells, buff) <= w):
                break
        note = None
        if wrap and fits < len(lines):
            lines = lines[: max(1, _lines_fitting(lines, h - cls.note_room, cls.line_buff))]
        elif not wrap and _line_width(cells, buff) > w:
            keep = 1
            while keep < len(cells) and _line_width(cells[: keep + 1], buff) <= w:
                keep += 1
            lines = [cells[:keep]]
        shown_cells = [cell for line in lines for cell in line]
        row = cls.__new__(cls)
        VGroup.__init__(row)
        row.cells = shown_cells
        row.boxes = [cell[0] for cell in shown_cells]
        row.ids = [cell[1] for cell in shown_cells] if ids else []
        row.positions = chosen[: len(shown_cells)]
        block = VGroup(*(VGroup(*line) for line in lines)).arrange(DOWN, buff=cls.line_buff)
        row.add(*shown_cells)
        if len(shown_cells) < len(chosen):
            note = label(
                f"first {len(shown_cells)} of {len(chosen)} tokens",
                style.MIN_TEXT,
                view.theme.muted,
            )
            note.next_to(block, DOWN, buff=0.25)
            row.add(note)
        row.note = note
        return row.move_to([0.0, 0.0, 0.0])

    @staticmethod
    def _cell(view: TraceView, p: int, size: float, width: float, ids: bool) -> VGroup:
        """The token at ``p`` in its box; its id under it when ``ids``."""
        color = view.token_color(p)
        box = TokenBox(view.token_texts[p], color, size, view.theme, max_width=width)
        if not ids:
            return VGroup(box)
        id_size = style.BODY_TEXT if size > style.BODY_TEXT else style.MIN_TEXT
        token_id = label(str(int(view.trace.tokens.ids[p])), id_size, color, font=ID_FONT)
        center_on(token_id, box.get_bottom() + DOWN * (0.12 + style.cap_height(id_size)))
        return VGroup(box, token_id)


def _flow(cells: Sequence[VGroup], width: float, buff: float) -> list[list[VGroup]]:
    """Cells arranged left to right in lines no wider than ``width`` (tops aligned)."""
    lines: list[list[VGroup]] = [[]]
    used = 0.0
    for cell in cells:
        if lines[-1] and used + buff + cell.width > width:
            lines.append([])
            used = 0.0
        used += cell.width + (buff if lines[-1] else 0.0)
        lines[-1].append(cell)
    for line in lines:
        VGroup(*line).arrange(RIGHT, buff=buff, aligned_edge=UP)
    return lines


def _line_width(cells: Sequence[VGroup], buff: float) -> float:
    return sum(c.width for c in cells) + buff * max(len(cells) - 1, 0)


def _lines_fitting(lines: Sequence[Sequence[VGroup]], height: float, buff: float) -> int:
    """How many of ``lines`` (stacked ``buff`` apart) fit in ``height``."""
    used = 0.0
    for i, line in enumerate(lines):
        used += VGroup(*line).height + (buff if i else 0.0)
        if used > height:
            return i
    return len(lines)


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
    """A matrix as an image with a frame; ``cell_center(i, j)`` locates a cell.

    ``shape``: the matrix's ``(rows, cols)`` when ``rgb`` has several pixels a
    cell (hatched masked cells, :func:`~mechviz.visual.style.attention_rgb`);
    default one pixel a cell.
    """

    def __init__(
        self,
        rgb: np.ndarray,
        width: float,
        height: float,
        theme: Theme = DARK,
        shape: tuple[int, int] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = theme
        self.n_rows, self.n_cols = shape if shape is not None else rgb.shape[:2]
        self._px = (rgb.shape[0] // self.n_rows, rgb.shape[1] // self.n_cols)
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
        """Height of one cell, in scene units."""
        return self.frame.height / self.n_rows

    def cell_colors(self) -> np.ndarray:
        """Each cell's colour, ``[rows, cols, 3]`` uint8 (its top-left pixel)."""
        py, px = self._px
        return np.asarray(self.image.pixel_array)[::py, ::px, :3][: self.n_rows, : self.n_cols]

    def cell_center(self, row: int, col: int) -> np.ndarray:
        """The centre of cell (``row``, ``col``), a point ``[3]`` in scene units."""
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
                fill = self.cell_colors()[i, j] if hasattr(self.image, "pixel_array") else None
                color = self.theme.text_on(fill) if fill is not None else self.theme.foreground
                number = label(f"{values[i, j]:.2f}", style.MIN_TEXT, color, font=style.MONO)
                numbers.add(number.move_to(self.cell_center(i, j)))
        return numbers


class ProbBars(VGroup):
    """A next-token bar chart: token, bar (length = probability), value; rows ``rows[i]``.

    :meth:`set_values` redraws it for new tokens and probabilities (what
    :class:`MorphBars` applies at one instant), so a value always matches its
    bar. Built with :meth:`from_trace`, it reads the logit lens and steps
    through layers: ``bars.set_from_trace(layer)`` jumps now,
    ``self.play(bars.step_to(layer))`` halfway through the animation.

    Args:
        texts: Token texts, one per row, most likely first.
        probs: Their probabilities in [0, 1].
        theme: Colours.
        bar_width: A bar's length at probability 1 (scene units).
        name_width: Room for a token's name left of its bar (scene units).
        row_height: One row's height (scene units).
        font_size: Manim font size of names and values.
        colors: One colour per name (default: the theme's foreground).
        highlight: Which token's bar gets the highlight colour (default: the first row's).

    Attributes:
        rows: One ``VGroup(name, bar, value, track)`` per row.
        values: The probabilities drawn, one per row.
        texts: The token texts drawn, one per row.

    """

    min_row = 0.42  # a row: a MIN_TEXT name and a margin (scene units)
    note_room = 0.5  # height kept for the "top n of k" note (scene units)

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
        self.note = None

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        position: int = -1,
        layer: int | None = None,
        k: int = 5,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        font_size: float = style.MIN_TEXT,
    ) -> ProbBars:
        """The logit lens's top ``k`` next tokens at ``position`` after ``layer``.

        ``layer=None`` reads the embedding; the last layer's row is the model's own
        output (see :meth:`mechviz.tracing.schema.Trace.lens_row`). The model's final answer
        at ``position`` (its top-1 output token) has the highlight colour.
        When fewer than ``k`` rows fit ``height``, the first that do are shown
        with a "top n of k" note under them.

        Args:
            trace: A trace or the path of one.
            position: Prompt position whose next token is read (negative from the end).
            layer: Read after this layer (0-based; negative counts from the last);
                ``None`` for the embedding.
            k: Rows, at most the trace's top-k.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            font_size: Manim font size of names and values (at least ``style.MIN_TEXT``).

        Returns:
            The chart, centred on the origin; ``position``, ``layer``, ``answer``
            (token id) and ``note`` (or ``None``) are kept as attributes.

        """
        view = TraceView.of(trace, theme)
        t = view.trace
        w, h = room(width, height)
        p = position % t.n_positions
        k = max(1, min(k, t.lens.top_ids.shape[-1]))
        pitch = max(cls.min_row, style.cap_height(font_size) * 1.9)
        n = max(1, min(k, int(h // pitch)))
        if n < k:
            n = max(1, min(k, int((h - cls.note_room) // pitch)))
        value_w = label("0.00", font_size, font=style.MONO).width + 0.12
        name_width = min(2.2, max(1.2, 0.3 * w))
        answer = int(t.output.top_ids[p, 0])
        answer_text = view.vocab_text(answer)
        texts, probs = _lens_top(view, p, layer, n)
        bars = cls(
            texts,
            probs,
            view.theme,
            bar_width=max(w - name_width - 0.15 - value_w, 0.5),
            name_width=name_width,
            row_height=min(0.62, (h - (cls.note_room if n < k else 0.0)) / n),
            font_size=font_size,
            highlight=lambda text: text == answer_text,
        )
        bars.view, bars.position, bars.answer, bars.layer = view, p, answer, layer
        if n < k:
            bars.note = label(f"top {n} of {k}", style.MIN_TEXT, view.theme.muted)
            bars.note.next_to(bars.extent, DOWN, buff=0.15).align_to(bars.extent, LEFT)
            bars.add(bars.note)
        return bars.move_to([0.0, 0.0, 0.0])

    def lens_values(self, layer: int | None) -> tuple[list[str], np.ndarray, list[object]]:
        """What :meth:`from_trace`'s chart shows after ``layer``: texts, probabilities, colours.

        Args:
            layer: 0-based layer (negative from the last), or ``None`` for the embedding.

        Returns:
            Token texts ``[n]``, their probabilities ``[n]`` and name colours ``[n]``
            for the chart's ``n`` rows.

        """
        n = len(self.rows)
        texts, probs = _lens_top(self.view, self.position, layer, n)
        return texts, probs, [self.theme.foreground] * n

    def set_from_trace(self, layer: int | None) -> ProbBars:
        """Show the lens after ``layer`` at once (a chart made by :meth:`from_trace`)."""
        texts, probs, colors = self.lens_values(layer)
        self.set_values(texts, probs, colors)
        self.texts, self.colors, self.layer = texts, colors, layer
        return self

    def step_to(self, layer: int | None, **kwargs: object) -> MorphBars:
        """An animation: the bars change to the lens after ``layer`` (kwargs go to MorphBars)."""
        texts, probs, colors = self.lens_values(layer)
        self.layer = layer
        return MorphBars(self, texts, probs, colors, **kwargs)

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
        """Redraw the rows for these token texts ``[n]``, probabilities ``[n]`` and colours."""
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


def _lens_top(
    view: TraceView, position: int, layer: int | None, n: int
) -> tuple[list[str], np.ndarray]:
    """The lens's top ``n`` token texts and probabilities at ``position`` after ``layer``."""
    t = view.trace
    if layer is not None and layer < 0:
        layer += t.n_layers
    row = t.lens_row(layer)
    ids = t.lens.top_ids[row, position, :n]
    return [view.vocab_text(i) for i in ids], t.lens.top_probs[row, position, :n]


class SwitchAt(Animation):
    """Change a mobject once, at one instant of an animation: ``apply()`` at ``at``.

    A readout (a heading, bars, their values, counters) is one state: every
    part shows the step it was at, then the next step, all on the same frame.
    Drawing the values between two steps would show numbers that were never
    recorded, and parts that move at different paces disagree with each other.

    Args:
        mobject: What changes (redrawn on every frame of the animation).
        apply: Makes the change; called once.
        at: When, as a share of the run time (0: the first frame; 1: after the
            last, so the frames show the old state and the next play the new).

    """

    def __init__(
        self, mobject: Mobject, apply: Callable[[], object], at: float = 0.5, **kwargs: object
    ) -> None:
        self.apply, self.at, self.done = apply, float(at), False
        kwargs.setdefault("rate_func", linear)
        super().__init__(mobject, **kwargs)

    def create_starting_mobject(self) -> VGroup:
        """An empty group: nothing is interpolated; a deep copy would be wasted."""
        return VGroup()

    def interpolate_mobject(self, alpha: float) -> None:
        if not self.done and alpha >= self.at:
            before = self.mobject.family_members_with_points()
            self.apply()
            self.done = True
            # Parts the change replaced (a value's new glyphs): the scene draws these
            # from this frame on instead of the ones it listed when the play began.
            self.swapped = (before, self.mobject.family_members_with_points())

    def finish(self) -> None:
        super().finish()
        self.interpolate_mobject(1.0)


class MorphBars(SwitchAt):
    """The bars move to new tokens and values, every row at once, at ``at`` of the run time.

    Names, bars, values and colours change on the same frame: no frame shows a
    bar whose length is between two recorded probabilities, or a value beside
    a bar of another length.
    """

    def __init__(
        self,
        bars: ProbBars,
        texts: Sequence[str],
        probs: Sequence[float],
        colors: Sequence[object] | None = None,
        at: float = 0.5,
        **kwargs: object,
    ) -> None:
        self.texts, self.probs, self.colors = list(texts), [float(p) for p in probs], colors

        def apply() -> None:
            bars.set_values(self.texts, self.probs, self.colors)
            bars.texts, bars.colors = self.texts, self.colors

        super().__init__(bars, apply, at, **kwargs)

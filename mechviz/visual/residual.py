"""Residual-stream building blocks: one column per token, rising layer by layer.

:class:`ResidualStreams` draws each position's max-pooled residual stream
(``trace.resid.pooled``, ``[B, P, R]``) as an image, one row per boundary
(``embed``, then ``{l}_mid`` and ``{l}_post``), the embedding at the bottom;
optionally with the write-size bars beside each column. :class:`WriteBars`
draws the same write sizes on their own (``trace.blocks.attn_out_norm`` and
``mlp_out_norm``, ``[L, P]``) and knows where the largest writes are.

Both share one layout: the columns that fit the room (the last positions;
when some are left out the block says "last N of M tokens"), token labels
under the columns (upright when they fit, else turned 90°), a layer axis on
the left and, when write bars are drawn, a legend above. ``x_of``/``y_of``
locate a column and a layer's row; ``get_cover``/``reveal_to`` build the
picture up layer by layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, Animation, Group, ImageMobject, Line, Rectangle, VGroup

from mechviz.model.tokens import shown
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.mobjects import grid_image
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label

__all__ = ["ResidualStreams", "WriteBars", "outsized_streams", "stream_scale"]

WRITE_COLS = 28  # pixels of the write-size bars beside each stream
GAP_COLS = 4  # pixels between a stream and its bars
AXIS_ROOM = 0.75  # scene units left of the columns for the layer axis
LEGEND_ROOM = 0.5  # above the columns for the legend
NOTE_ROOM = 0.45  # below the labels for "last N of M tokens"
MIN_COLUMN = 0.42  # narrowest column: room for a turned token label at MIN_TEXT


def _invisible(width: float, height: float) -> Rectangle:
    return Rectangle(width=width, height=height, stroke_width=0, stroke_opacity=0, fill_opacity=0)


class _Columns(Group):
    """The layout :class:`ResidualStreams` and :class:`WriteBars` share (see the module doc)."""

    def __init__(
        self,
        view: TraceView,
        positions: Sequence[int] | None,
        width: float,
        height: float,
        *,
        min_column: float,
        legend: bool,
        note: bool,
    ) -> None:
        super().__init__()
        self.view, self.trace, self.theme = view, view.trace, view.theme
        P = self.trace.n_positions
        asked = list(range(P)) if positions is None else sorted({int(p) % P for p in positions})
        fit = self.columns(width, min_column)
        self.positions: list[int] = asked[-fit:]
        self.n_total = len(asked)
        cut = len(self.positions) < self.n_total
        self.note_text = f"last {len(self.positions)} of {self.n_total} tokens" if cut else ""
        note_room = NOTE_ROOM if cut and note else 0.0
        label_room = self._label_room(width)
        self.legend = self._legend(width) if legend else VGroup()
        top_room = 0.0
        if legend:  # one row above the columns, or two rows when the room is narrow
            top_room = LEGEND_ROOM if len(self.legend) == 1 else self.legend.height + 0.35
        self.extent = _invisible(width, height)  # the room, so move_to places the layout
        self.area = _invisible(width - AXIS_ROOM, height - note_room - label_room - top_room)
        self.area.move_to(
            [AXIS_ROOM / 2, (note_room + label_room - top_room) / 2, 0]
        )  # where the column images go
        if legend:
            top = height / 2 - top_room  # the columns' top edge
            x = min(AXIS_ROOM / 2, width / 2 - self.legend.width / 2)  # over the columns, inside
            y = top + 0.3 if len(self.legend) == 1 else top + 0.15 + self.legend.height / 2
            self.legend.move_to([x, y, 0])
        self.images = Group(*[self._image(i, p) for i, p in enumerate(self.positions)])
        self.token_labels = self._token_labels(label_room)
        self.axis = self._layer_axis()
        self.note = VGroup()
        if note_room:
            self.note = label(self.note_text, style.MIN_TEXT, self.theme.muted, max_width=width)
            x = min(AXIS_ROOM / 2, width / 2 - self.note.width / 2)  # under the columns, inside
            center_on(self.note, [x, -height / 2 + note_room / 2, 0])
        self.cover: Rectangle | None = None
        self.marker: Line | None = None
        self.add(
            self.extent,
            self.area,
            self.images,
            self.token_labels,
            self.axis,
            self.legend,
            self.note,
        )

    # --- layout ----------------------------------------------------------------------
    @staticmethod
    def columns(width: float, min_column: float = MIN_COLUMN) -> int:
        """How many columns fit a room ``width`` scene units wide (at least 1)."""
        return max(1, int((width - 1.0) // min_column))

    def _label_room(self, width: float) -> float:
        texts = [shown(self.view.token_texts[p]) for p in self.positions]
        longest = max(label(t, style.MIN_TEXT).width for t in texts)
        column = (width - AXIS_ROOM) / len(self.positions)
        return 0.5 if longest <= column * 0.95 else min(1.6, longest + 0.2)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x0, x1, y0, y1)`` of the column images now (scene units)."""
        left, right = self.area.get_left()[0], self.area.get_right()[0]
        return left, right, self.area.get_bottom()[1], self.area.get_top()[1]

    @property
    def column_width(self) -> float:
        """Width of one column's slot (scene units); its image is 84% of it."""
        x0, x1, _, _ = self.box
        return (x1 - x0) / len(self.positions)

    def x_of(self, i: int) -> float:
        """Scene x of the centre of column ``i`` (an index into :attr:`positions`)."""
        x0, _, _, _ = self.box
        return x0 + self.column_width * (i + 0.5)

    def y_of(self, layer: int | None) -> float:
        """Scene y of the top edge of ``layer``'s ``{layer}_post`` row (``None``: the embedding).

        Increases with ``layer``; the last layer's is the top of the columns.
        """
        _, _, y0, y1 = self.box
        B = len(self.trace.resid.labels)
        row = 0 if layer is None else 2 * layer + 2
        return y0 + (y1 - y0) * (row + 1) / B

    def row_center(self, boundary: int) -> float:
        """Scene y of the middle of boundary row ``boundary`` (an index into ``resid.labels``)."""
        _, _, y0, y1 = self.box
        return y0 + (y1 - y0) * (boundary + 0.5) / len(self.trace.resid.labels)

    # --- parts -----------------------------------------------------------------------
    def _rgb(self, position: int) -> np.ndarray:
        raise NotImplementedError

    def _image(self, i: int, position: int) -> ImageMobject:
        x0, x1, y0, y1 = self.box
        image = grid_image(self._rgb(position)[::-1], self.column_width * 0.84, y1 - y0)
        return image.move_to([self.x_of(i), (y0 + y1) / 2, 0])

    def _token_labels(self, room_height: float) -> VGroup:
        texts = [shown(self.view.token_texts[p]) for p in self.positions]
        upright = all(label(t, style.MIN_TEXT).width <= self.column_width * 0.95 for t in texts)
        y0 = self.box[2]
        labels = VGroup()
        for i, (p, text) in enumerate(zip(self.positions, texts)):
            color = self.view.token_color(p)
            if upright:
                mob = label(text, style.MIN_TEXT, color)
                center_on(mob, [self.x_of(i), y0 - 0.25, 0])
            else:
                mob = label(text, style.MIN_TEXT, color, max_width=room_height - 0.15)
                mob.rotate(np.pi / 2)
                mob.move_to([self.x_of(i), y0 - 0.1, 0], aligned_edge=UP)
            labels.add(mob)
        return labels

    def _layer_axis(self) -> VGroup:
        L = self.trace.n_layers
        x0, _, y0, y1 = self.box
        spacing = (y1 - y0) / L
        step = max(1, int(np.ceil(0.4 / spacing)))  # labels at least 0.4 units apart
        step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 10**9) if s >= step)
        axis = VGroup()
        for layer in range(0, L, step):
            y = self.y_of(layer) - spacing / 2
            axis.add(
                center_on(label(str(layer), style.MIN_TEXT, self.theme.muted), [x0 - 0.3, y, 0])
            )
        return axis

    def _legend(self, width: float) -> VGroup:
        """The write colours' names: one row, or a row each when the room is narrow."""
        items = VGroup()
        for color, text in (
            (self.theme.attention, "attention write"),
            (self.theme.mlp, "MLP write"),
        ):
            swatch = Rectangle(
                width=0.35, height=0.2, stroke_width=0, fill_color=color, fill_opacity=1
            )
            muted = label(text, style.MIN_TEXT, self.theme.muted, max_width=width - 0.5)
            items.add(VGroup(swatch, muted).arrange(RIGHT, buff=0.12))
        items.arrange(RIGHT, buff=0.4)
        if items.width <= width - AXIS_ROOM:
            return VGroup(items)
        return VGroup(*items).arrange(DOWN, buff=0.15, aligned_edge=LEFT)

    # --- building up -----------------------------------------------------------------
    def get_cover(self, transparent: bool = False) -> Rectangle:
        """A background-coloured rectangle over the columns (add it above :attr:`images`).

        :meth:`reveal_to` shrinks it from the bottom up. Not a part of the block:
        the caller adds and removes it. ``transparent`` makes it invisible (a
        transparent render cannot cover with the background).

        Returns:
            The cover, also kept as :attr:`cover`.

        """
        x0, x1, y0, y1 = self.box
        self.cover = Rectangle(
            width=x1 - x0 + 0.1,
            height=y1 - y0 + 0.04,
            stroke_width=0,
            fill_color=self.theme.background,
            fill_opacity=0.0 if transparent else 1.0,
        ).move_to([(x0 + x1) / 2, (y0 + y1) / 2, 0])
        return self.cover

    def get_marker(self) -> Line:
        """A thin line across the columns at the embedding; :meth:`reveal_to` moves it up.

        Returns:
            The line, also kept as :attr:`marker` (the caller adds it).

        """
        self.marker = self.layer_line(None)
        return self.marker

    def layer_line(self, layer: int | None, color: object = None, stroke_width: float = 2) -> Line:
        """A line across every column at the top of ``layer``'s row (``None``: the embedding)."""
        x0, x1, _, _ = self.box
        y = self.y_of(layer)
        color = color if color is not None else self.theme.foreground
        return Line([x0 - 0.05, y, 0], [x1 + 0.05, y, 0], stroke_width=stroke_width, color=color)

    def reveal_to(self, layer: int | None) -> list[Animation]:
        """Animations that uncover the rows up to ``layer`` (``None``: the embedding only).

        The cover (:meth:`get_cover`) keeps its top edge and ends at ``y_of(layer)``;
        the last layer uncovers everything. The marker, if made, moves to that row.

        Returns:
            The animations to play together (an empty list without a cover).

        """
        y = self.y_of(layer)
        anims: list[Animation] = []
        if self.cover is not None:
            height = max(self.box[3] - y, 0.001)  # the cover's top edge stays put
            anims.append(self.cover.animate.stretch_to_fit_height(height, about_edge=UP).build())
        if self.marker is not None:
            anims.append(self.marker.animate.set_y(y).build())
        return anims

    # --- the largest writes ----------------------------------------------------------
    def _write_frames(self) -> VGroup:
        """Frames on the largest attention and MLP write, the first token left out."""
        theme, trace = self.theme, self.trace
        marks = VGroup()
        for kind, layer, p in WriteBars.largest(trace, self.positions):
            i = self.positions.index(p)
            boundary = trace.resid_mid(layer) if kind == "attention" else trace.resid_post(layer)
            row = self.column_width * 0.84
            height = max((self.box[3] - self.box[2]) / len(trace.resid.labels) * 3, 0.14)
            frame = Rectangle(
                width=row + 0.08,
                height=height,
                stroke_color=theme.attention if kind == "attention" else theme.mlp,
                stroke_width=4,
            )
            marks.add(frame.move_to([self.x_of(i), self.row_center(boundary), 0]))
        return marks


class WriteBars(_Columns):
    """How much attention and MLP write into each position's stream, per layer.

    One column per position, one pair of rows per layer (the ``{l}_mid`` row for
    the attention write, the ``{l}_post`` row for the MLP write, as in
    :class:`ResidualStreams`), each a bar whose length is the write's norm.
    Writes at the first token often dwarf the rest, so the bars are scaled to
    the 95th percentile of the other positions and clipped (:meth:`full_norm`).

    Attributes:
        positions: The prompt positions shown, one column each (the last that fit).
        n_total: How many positions were asked for; ``note_text`` says
            "last N of M tokens" when fewer are shown, "" otherwise.
        images: One image per column (``Group``).
        token_labels: A label under each column (``VGroup``).
        axis: Layer numbers left of the columns (``VGroup``).
        legend: The two colours' names above the columns (``VGroup``).
        note: The "last N of M tokens" label, or an empty ``VGroup``.
        attn, mlp: The recorded write norms, ``[L, P]``.
        full: The write norm a full-length bar stands for (:meth:`full_norm`).

    """

    def __init__(
        self,
        view: TraceView,
        positions: Sequence[int] | None,
        width: float,
        height: float,
        *,
        min_column: float = MIN_COLUMN,
        note: bool = True,
    ) -> None:
        self.attn = view.trace.blocks.attn_out_norm
        self.mlp = view.trace.blocks.mlp_out_norm
        self.full = self.full_norm(view.trace)
        super().__init__(
            view, positions, width, height, min_column=min_column, legend=True, note=note
        )

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        positions: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        min_column: float = MIN_COLUMN,
        note: bool = True,
    ) -> WriteBars:
        """The write sizes of ``positions`` (default: all) as bars, sized for the room.

        Args:
            trace: A Trace or a path to one.
            positions: Prompt positions (negative counts from the end); when not all
                fit, the last ones are kept.
            width: Room's width in scene units (default: the frame less margins).
            height: Room's height in scene units (default: the frame less margins).
            theme: A Theme or its name (default: the current render's).
            min_column: Narrowest column in scene units.
            note: Say "last N of M tokens" under the labels when positions are left out.

        Returns:
            The block, centred on the origin.

        """
        w, h = room(width, height)
        return cls(TraceView.of(trace, theme), positions, w, h, min_column=min_column, note=note)

    @staticmethod
    def full_norm(trace: Trace) -> float:
        """The write norm a full bar stands for: the 95th percentile without position 0."""
        attn, mlp = trace.blocks.attn_out_norm, trace.blocks.mlp_out_norm
        rest = np.concatenate([attn[:, 1:].ravel(), mlp[:, 1:].ravel()])
        return float(np.quantile(rest if rest.size else attn.ravel(), 0.95)) or 1.0

    @staticmethod
    def pixels(trace: Trace, position: int, theme: Theme, top: float) -> np.ndarray:
        """The bars of one position as an image, ``[B, WRITE_COLS, 3]`` uint8, embedding first.

        Row ``2l + 1`` holds layer ``l``'s attention write, row ``2l + 2`` its MLP
        write, ``round(WRITE_COLS * norm / top)`` pixels long (clipped).
        """
        B = len(trace.resid.labels)
        bg = (theme.rgb(theme.background) * 255).astype(np.uint8)
        bars = np.zeros((B, WRITE_COLS, 3), np.uint8) + bg
        attn, mlp = trace.blocks.attn_out_norm, trace.blocks.mlp_out_norm
        for layer in range(trace.n_layers):
            for b, norm, color in (
                (2 * layer + 1, attn[layer, position], theme.attention),
                (2 * layer + 2, mlp[layer, position], theme.mlp),
            ):
                n = min(WRITE_COLS, int(round(WRITE_COLS * float(norm) / top)))
                bars[b, :n] = theme.rgb(color) * 255
        return bars

    @staticmethod
    def largest(trace: Trace, positions: Sequence[int]) -> list[tuple[str, int, int]]:
        """The largest attention and the largest MLP write among ``positions`` but position 0.

        Returns:
            ``[("attention", layer, position), ("MLP", layer, position)]``, or ``[]``
            when only position 0 is given.

        """
        columns = [p for p in positions if p > 0]
        if not columns:
            return []
        out = []
        for kind, values in (
            ("attention", trace.blocks.attn_out_norm),
            ("MLP", trace.blocks.mlp_out_norm),
        ):
            sub = values[:, columns]
            layer, j = np.unravel_index(int(sub.argmax()), sub.shape)
            out.append((kind, int(layer), columns[int(j)]))
        return out

    def _rgb(self, position: int) -> np.ndarray:
        return self.pixels(self.trace, position, self.theme, self.full)

    def get_write_marks(self) -> VGroup:
        """Frames (attention and MLP colours) on the largest writes, position 0 left out.

        Returns:
            Two rectangles (none when only position 0 is shown); not added to the block.

        """
        return self._write_frames()


def stream_scale(trace: Trace, position: int) -> float:
    """The colour scale of ``position``'s stream column: its pooled values' 98th percentile."""
    return style.robust_scale(trace.resid.pooled[:, position])


def outsized_streams(
    trace: Trace, positions: Sequence[int], factor: float = 4.0
) -> list[tuple[int, float]]:
    """``(position, ratio)`` of the columns whose scale is ``factor`` times the others' median.

    Each stream column is coloured on its own scale, so a column of huge
    activations (the attention sink at the first token) draws its ordinary layers
    faint; a caption says so with these pairs.
    """
    scales = {int(p): stream_scale(trace, int(p)) for p in positions}
    out = []
    for p, scale in scales.items():
        others = [v for q, v in scales.items() if q != p]
        if others and scale >= factor * float(np.median(others)):
            out.append((p, scale / float(np.median(others))))
    return out


class ResidualStreams(_Columns):
    """Each position's residual stream as a column of rows, embedding at the bottom.

    Row ``b`` of a column is boundary ``resid.labels[b]`` max-pooled to ``R``
    pixels (``trace.resid.pooled[b, p]``, diverging blue < 0 < red, scaled per
    position); with ``writes`` the column also carries that position's
    :class:`WriteBars` bars at its right, in one image.

    Attributes:
        positions: The prompt positions shown, one column each (the last that fit).
        n_total: How many positions were asked for; ``note_text`` says
            "last N of M tokens" when fewer are shown, "" otherwise.
        images: One image per column (``Group``).
        token_labels: A label under each column (``VGroup``).
        axis: Layer numbers left of the columns (``VGroup``).
        legend: The write colours' names above the columns (empty without ``writes``).
        note: The "last N of M tokens" label, or an empty ``VGroup``.
        cover: The cover of :meth:`get_cover`, once made.
        marker: The line of :meth:`get_marker`, once made.
        full: The write norm a full-length bar stands for (:meth:`WriteBars.full_norm`).

    """

    def __init__(
        self,
        view: TraceView,
        positions: Sequence[int] | None,
        width: float,
        height: float,
        *,
        writes: bool = True,
        min_column: float = MIN_COLUMN,
        note: bool = True,
    ) -> None:
        self.writes = writes
        self.full = WriteBars.full_norm(view.trace)
        super().__init__(
            view, positions, width, height, min_column=min_column, legend=writes, note=note
        )

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        positions: Sequence[int] | None = None,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        writes: bool = True,
        min_column: float = MIN_COLUMN,
        note: bool = True,
    ) -> ResidualStreams:
        """The residual streams of ``positions`` (default: all), sized for the room.

        Args:
            trace: A Trace or a path to one.
            positions: Prompt positions (negative counts from the end); when not all
                fit, the last ones are kept.
            width: Room's width in scene units (default: the frame less margins).
            height: Room's height in scene units (default: the frame less margins).
            theme: A Theme or its name (default: the current render's).
            writes: Draw the attention and MLP write bars beside each stream.
            min_column: Narrowest column in scene units (room for a turned label).
            note: Say "last N of M tokens" under the labels when positions are left
                out (a scene whose caption says so passes ``False``).

        Returns:
            The block, centred on the origin.

        """
        w, h = room(width, height)
        view = TraceView.of(trace, theme)
        return cls(view, positions, w, h, writes=writes, min_column=min_column, note=note)

    def _rgb(self, position: int) -> np.ndarray:
        theme = self.theme
        values = self.trace.resid.pooled[:, position]  # [B, R]
        rows = style.diverging_rgb(values, stream_scale(self.trace, position), theme)  # [B, R, 3]
        if not self.writes:
            return rows
        bg = (theme.rgb(theme.background) * 255).astype(np.uint8)
        gap = np.zeros((len(values), GAP_COLS, 3), np.uint8) + bg
        bars = WriteBars.pixels(self.trace, position, theme, self.full)
        return np.concatenate([rows, gap, bars], axis=1)

    def get_write_marks(self) -> VGroup:
        """Frames on the largest attention and MLP writes, position 0 left out (``writes`` only).

        Returns:
            Two rectangles around the rows of the largest writes (none without
            ``writes`` or when only position 0 is shown); not added to the block.

        """
        return self._write_frames() if self.writes else VGroup()

"""Embedding: text becomes tokens, tokens become ids, ids pick rows of W_E."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    AnimationGroup,
    Arrow,
    DashedLine,
    FadeIn,
    FadeOut,
    FadeTransform,
    Group,
    GrowArrow,
    LaggedStart,
    Rectangle,
    ReplacementTransform,
    VGroup,
)

from mechviz.tokens import readable_tokens, shown
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.mobjects import Heatmap, TokenBox, grid_image
from mechviz.visual.style import Theme
from mechviz.visual.text import center_on, label, measure, paragraph

ID_FONT = style.MONO  # ids in one column line up digit by digit
LINE_HEIGHT = 0.01875  # a wrapped line's height per font-size point (28 -> 0.525 units)


@dataclass
class Layout:
    """Geometry of the rows beat: text size, pitches, widths, tokens listed, dims shown."""

    room: Box
    size: float
    pitch: float  # token list: one entry
    row_h: float  # W_E: one row of cells
    id_w: float
    box_w: float
    arrow_w: float
    note_w: float
    side: bool = True  # gap notes beside W_E (wide frames) or inside its gaps (narrow ones)
    k: int = 0  # dims shown
    cell_w: float = 0.0
    band: float = 0.0  # a gap where rows are left out
    n: int = 0  # tokens listed
    height: float = 0.0
    header_h: float = 0.55
    legend_h: float = 0.8


class DivergingLegend(Group):
    """A blue-to-red colour bar for signed values, its ends and zero labelled below it."""

    def __init__(
        self,
        scale: float,
        theme: Theme,
        texts: tuple[str, str, str],
        width: float = 2.4,
        height: float = 0.22,
    ) -> None:
        super().__init__()
        values = np.linspace(-scale, scale, 64)[None, :]
        self.bar = grid_image(style.diverging_rgb(values, scale, theme), width, height)
        self.frame = Rectangle(
            width=width, height=height, stroke_color=theme.muted, stroke_width=1
        ).move_to(self.bar)
        self.labels = VGroup()
        for text, edge in zip(texts, (LEFT, 0 * LEFT, RIGHT)):
            mark = label(text, style.MIN_TEXT, theme.muted)
            mark.next_to(self.frame, DOWN, buff=0.1).set_x(
                self.frame.get_center()[0] + edge[0] * width / 2
            )
            self.labels.add(mark)
        self.add(self.bar, self.frame, self.labels)


class Embedding(TraceScene):
    """Tokens, their ids, their rows of W_E, and how similar those rows are."""

    beats = {
        "prompt": "the prompt as typed",
        "tokens": "the tokenizer splits it into tokens (· marks a leading space)",
        "ids": "each token is a row number of the vocabulary",
        "rows": "each id picks its row of W_E (real values, first dims)",
        "similarity": "cosine similarity of the prompt's rows of W_E",
    }
    n_dims = 8  # W_E cells per row at most; the rest of d_model is left out (and said so)
    cell_width = (0.36, 0.6)  # a W_E cell: narrowest that still reads as a cell, widest useful
    row_height = 0.34  # a W_E row of cells
    list_pitch = 0.58  # the token list of the rows beat: a MIN_TEXT box and a margin
    min_heat_cell = 0.45  # a similarity cell: at least a MIN_TEXT label high
    max_heat_cell = 1.2  # bigger cells add nothing but emptiness
    legend_width = 2.4
    max_box_width = 2.1  # a listed token's box; longer tokens are cut with …
    flow_sizes = (style.TITLE_TEXT, style.BODY_TEXT, style.MIN_TEXT)  # token boxes, biggest first
    rows_scales = tuple(  # (text size, vertical zoom) tried for the rows beat, biggest first
        (size, zoom) for size in (style.BODY_TEXT, style.MIN_TEXT) for zoom in (2.0, 1.6, 1.3, 1.0)
    )

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
        self.flow, self.flow_note = self.get_flow()
        boxes = VGroup(*(cell[0] for cell in self.flow))
        self.play(FadeTransform(self.prompt, boxes), run_time=1.2)
        if self.flow_note is not None:
            self.play(FadeIn(self.flow_note), run_time=0.3)
        self.wait(0.6)

    def show_ids(self) -> None:
        m = self.trace.model
        p = next((i for i, t in enumerate(self.texts) if t[:1].isspace() and t.strip()), 0)
        self.caption(
            f"Each token is a row number: {shown(self.texts[p])} is row {self.ids[p]} "
            f"of {m.d_vocab:,}."
        )
        ids = VGroup(*(cell[1] for cell in self.flow))
        self.play(FadeIn(ids, shift=0.15 * DOWN), run_time=0.8)
        self.wait(0.8)

    def show_rows(self) -> None:
        """Tokens line up; their ids move to W_E's margin; arrows point at the rows."""
        m = self.trace.model
        k = self.get_rows_layout(self.stage).k  # the caption says how many dims are shown
        self.caption(f"Each id picks its row of W_E; cells: its first {k} of {m.d_model} dims.")
        layout = self.get_rows_layout(self.content, k)
        boxes, note = self.get_token_list(layout)
        matrix = self.get_matrix(layout)
        n = len(boxes)
        moves, spare = [], []
        for i in range(n):
            moves.append(ReplacementTransform(self.flow[i][0], boxes[i]))
            target = matrix["labels"][self.ids[i]]
            if self.ids.index(self.ids[i]) == i:
                moves.append(ReplacementTransform(self.flow[i][1], target))
            else:  # a repeated token: its id merges into the row label already there
                spare.append(target.copy())
                moves.append(ReplacementTransform(self.flow[i][1], spare[-1]))
        gone = [self.flow[i] for i in range(n, len(self.flow))]
        if self.flow_note is not None:
            gone.append(self.flow_note)
        static = [
            matrix["frame"],
            matrix["ends"],
            matrix["header"],
            matrix["gaps"],
            matrix["legend"],
        ] + ([note] if note is not None else [])
        self.play(*moves, *(FadeOut(g) for g in gone), *(FadeIn(s) for s in static), run_time=1.2)
        self.remove(*spare)
        seen: set[int] = set()
        steps = []
        for i, arrow in enumerate(matrix["arrows"]):
            parts = [GrowArrow(arrow)]
            if self.ids[i] not in seen:
                seen.add(self.ids[i])
                parts.append(FadeIn(matrix["cells"][self.ids[i]]))
            steps.append(AnimationGroup(*parts))
        self.play(LaggedStart(*steps, lag_ratio=0.5), run_time=min(3.0, 0.6 + 0.3 * n))
        self.wait(1.0)
        self.rows_parts = Group(
            *boxes,
            *static,
            *matrix["labels"].values(),
            *matrix["cells"].values(),
            *matrix["arrows"],
        )

    def show_similarity(self) -> None:
        """Cosine similarity of the prompt's rows of W_E, labelled by token."""
        self.swap(self.rows_parts, None, run_time=0.5)
        self.caption("How alike are the tokens' rows of W_E? Cosine similarity, −1 to +1.")
        parts = self.get_similarity()
        self.swap(None, Group(parts["grid"], parts["labels"]), run_time=0.8)
        self.play(FadeIn(parts["numbers"]), FadeIn(parts["legend"]), run_time=0.6)
        self.wait(1.2)

    # --- builders: prompt and token flow -------------------------------------------------
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

    def get_flow(self) -> tuple[list[VGroup], VGroup | None]:
        """Token boxes in reading order, wrapped; each with its id below (``cell[1]``).

        Body-size boxes when every token fits, else MIN_TEXT; when even those do
        not all fit, the first ones and a "first n of m tokens" note.
        """
        stage, n_all = self.stage, len(self.ids)
        for size in self.flow_sizes:
            cells = [self.get_cell(p, size) for p in range(n_all)]
            lines = self.wrap(cells, stage.width)
            fits = self.lines_fitting(lines, stage.height)
            if fits == len(lines):
                break
        note = None
        if fits < len(lines):
            fits = self.lines_fitting(lines, stage.height - 0.55)
            lines = lines[:fits]
            n = sum(len(line) for line in lines)
            note = label(f"first {n} of {n_all} tokens", style.MIN_TEXT, self.theme.muted)
        block = VGroup(*(VGroup(*line) for line in lines))
        block.arrange(DOWN, buff=0.22)
        if note is not None:
            block = VGroup(block, note)
            note.next_to(block[0], DOWN, buff=0.25)
        block.move_to(stage.center)
        return [cell for line in lines for cell in line], note

    def get_cell(self, p: int, size: float) -> VGroup:
        color = self.token_colors(self.ids[p])
        box = TokenBox(self.texts[p], color, size, self.theme, max_width=self.stage.width)
        id_size = style.BODY_TEXT if size > style.BODY_TEXT else style.MIN_TEXT
        number = label(str(self.ids[p]), id_size, color, font=ID_FONT)
        center_on(number, box.get_bottom() + DOWN * (0.12 + style.cap_height(id_size)))
        return VGroup(box, number)

    @staticmethod
    def wrap(cells: list[VGroup], width: float, buff: float = 0.15) -> list[list[VGroup]]:
        """Cells arranged left to right in centred lines no wider than ``width``."""
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

    @staticmethod
    def lines_fitting(lines: list[list[VGroup]], height: float, buff: float = 0.22) -> int:
        used = 0.0
        for i, line in enumerate(lines):
            used += VGroup(*line).height + (buff if i else 0.0)
            if used > height:
                return i
        return len(lines)

    # --- builders: the rows of W_E --------------------------------------------------------
    def get_rows_layout(self, room: Box, k: int | None = None) -> Layout:
        """The layout that lists the most tokens, then shows enough dims, then is biggest.

        With ``k``, only layouts that show ``k`` dims (what the caption says), if any.
        """
        best: Layout | None = None
        for size, zoom in self.rows_scales:
            layout = self.fit_rows(room, size, zoom)
            if layout is None or (k is not None and layout.k != k):
                continue
            if best is None or (layout.n, min(layout.k, 6)) > (best.n, min(best.k, 6)):
                best = layout
        if best is None and k is not None:
            return self.get_rows_layout(room)
        return best if best is not None else self.fit_rows(room, style.MIN_TEXT, 1.0, True)

    def fit_rows(self, room: Box, size: float, zoom: float, force: bool = False) -> Layout | None:
        """Geometry of the rows beat at text ``size`` and vertical scale ``zoom``.

        None when it does not fit: fewer than 4 dims, or gap notes wider than the cells.
        """
        S = self.trace.embedding.W_E_sample.shape[1]
        last = self.trace.model.d_vocab - 1
        id_w = max(measure(str(i), size, ID_FONT) for i in [*self.ids, last])
        box_w = max(min(measure(shown(t), size) + 0.25, self.max_box_width) for t in self.texts)
        box_h = style.cap_height(size) * 2.0
        lay = Layout(
            room=room,
            size=size,
            pitch=max(self.list_pitch * zoom, box_h + 0.12),
            row_h=self.row_height * zoom,
            id_w=id_w,
            box_w=box_w,
            arrow_w=0.8 if self.portrait else 1.3,
            note_w=measure(f"⋮ {last:,} rows", style.MIN_TEXT),
        )
        fixed = box_w + lay.arrow_w + id_w + 0.12 + 0.16  # + the W_E frame's padding
        side_room = room.width - fixed - 0.15 - lay.note_w
        lay.side = min(S, self.n_dims, int(side_room // self.cell_width[0])) >= min(6, S)
        cells_room = side_room if lay.side else room.width - fixed
        lay.k = min(S, self.n_dims, int(cells_room // self.cell_width[0]))
        if lay.k < min(4, S) and not force:
            return None
        lay.k = max(lay.k, 1)
        lay.cell_w = min(self.cell_width[1] * (1 if self.portrait else 1.25), cells_room / lay.k)
        if lay.side:
            lay.band = 0.24 * zoom
        else:  # the note sits in the gap: room for a MIN_TEXT line, and for it across
            lay.band = max(0.4, 0.3 * zoom)
            if lay.k * lay.cell_w < lay.note_w and not force:
                return None
        height = room.height - lay.header_h - lay.legend_h
        for n in range(1, len(self.ids) + 1):
            if self.block_height(lay, n) > height:
                break
            lay.n = n
        if lay.n == 0:
            if not force:
                return None
            lay.n = 1
        lay.height = lay.header_h + lay.legend_h + self.block_height(lay, lay.n)
        return lay

    def block_height(self, lay: Layout, n: int) -> float:
        """The taller of the token list (and its note) and W_E, for the first ``n`` tokens."""
        list_h = n * lay.pitch + (0.75 if n < len(self.ids) else 0.0)
        order = sorted(set(self.ids[:n]))
        edges = [-1, *order, self.trace.model.d_vocab]
        gaps = sum(lay.band if b - a > 1 else 0.06 for a, b in zip(edges, edges[1:]))
        return max(list_h, len(order) * lay.row_h + gaps)

    def rows_origin(self, lay: Layout) -> tuple[float, float]:
        """Left edge and top (below the header) of the rows beat's block, centred."""
        room = lay.room
        width = (
            lay.box_w
            + lay.arrow_w
            + lay.id_w
            + 0.12
            + lay.k * lay.cell_w
            + 0.16
            + (0.15 + lay.note_w if lay.side else 0.0)
        )
        top = room.center[1] + lay.height / 2 - lay.header_h
        return room.center[0] - width / 2, min(top, room.y1 - lay.header_h)

    def get_token_list(self, lay: Layout) -> tuple[list[TokenBox], VGroup | None]:
        """The first ``n`` tokens top to bottom, right-aligned; a note when some are left out."""
        x_left, top = self.rows_origin(lay)
        boxes = []
        for p in range(lay.n):
            box = TokenBox(
                self.texts[p],
                self.token_colors(self.ids[p]),
                lay.size,
                self.theme,
                max_width=lay.box_w,
                height=lay.pitch - 0.1,
            )
            box.move_to([x_left + lay.box_w - box.width / 2, top - lay.pitch * (p + 0.5), 0])
            boxes.append(box)
        note = None
        if lay.n < len(self.ids):
            note = paragraph(
                f"first {lay.n} of {len(self.ids)} tokens",
                style.MIN_TEXT,
                self.theme.muted,
                max_width=max(lay.box_w + 0.5, 1.6),
                max_lines=2,
            )
            note.next_to(boxes[-1], DOWN, buff=0.2)
            note.set_x(
                max(
                    x_left + lay.box_w - note.width / 2, self.frame.x0 + style.BUFF + note.width / 2
                )
            )
        return boxes, note

    def get_matrix(self, lay: Layout) -> dict:
        """W_E: rows in id order, evenly spaced, gaps marked with the rows they skip."""
        theme, m = self.theme, self.trace.model
        sample = self.trace.embedding.W_E_sample
        first_p: dict[int, int] = {}
        for p in range(lay.n):
            first_p.setdefault(self.ids[p], p)
        last = m.d_vocab - 1
        x_left, top = self.rows_origin(lay)
        x_label = x_left + lay.box_w + lay.arrow_w + lay.id_w  # row labels' right edge
        x_cells = x_label + 0.12 + 0.08
        width = lay.k * lay.cell_w
        scale = style.robust_scale(sample)
        y = top
        cells, labels, gaps = {}, {}, VGroup()
        previous = -1
        for token_id in [*sorted(first_p), None]:  # walk down: a band where rows are skipped
            skipped = (last + 1 if token_id is None else token_id) - previous - 1
            if skipped > 0:
                gaps.add(self.get_gap(skipped, y - lay.band / 2, x_cells, width, lay.side))
                y -= lay.band
            else:
                y -= 0.06
            if token_id is None:
                break
            rgb = style.diverging_rgb(sample[first_p[token_id], : lay.k], scale, theme) / 255
            cells[token_id] = VGroup(
                *(
                    Rectangle(
                        width=lay.cell_w,
                        height=lay.row_h,
                        stroke_width=1,
                        stroke_color=theme.background,
                        fill_color=rgb[j],
                        fill_opacity=1.0,
                    ).move_to([x_cells + lay.cell_w * (j + 0.5), y - lay.row_h / 2, 0])
                    for j in range(lay.k)
                )
            )
            number = label(str(token_id), lay.size, self.token_colors(token_id), font=ID_FONT)
            labels[token_id] = center_on(number, [x_label - number.width / 2, y - lay.row_h / 2, 0])
            y -= lay.row_h
            previous = token_id
        frame = Rectangle(
            width=width + 0.16, height=top - y, stroke_width=1.5, stroke_color=theme.muted
        )
        frame.move_to([x_cells + width / 2, (top + y) / 2, 0])
        ends = VGroup()
        for value, edge in ((0, top), (last, y)):
            if value not in labels:  # the matrix's first and last row numbers, at its edges
                mark = label(str(value), style.MIN_TEXT, theme.muted, font=ID_FONT)
                ends.add(center_on(mark, [x_label - mark.width / 2, edge, 0]))
        header = label(f"W_E: {m.d_vocab:,} rows", lay.size, theme.foreground)
        header.next_to(frame, UP, buff=0.2).align_to(frame, LEFT)
        legend = DivergingLegend(
            scale,
            theme,
            (f"−{scale:.2f}", "0", f"+{scale:.2f}"),
            width=max(2.4, min(3.2, frame.width)),
        )
        legend.next_to(frame, DOWN, buff=0.2)
        for part in (header, legend):
            overshoot = part.get_right()[0] - (self.frame.x1 - style.BUFF)
            if overshoot > 0:
                part.shift(LEFT * overshoot)
        arrows = []
        for p in range(lay.n):
            start = np.array([x_left + lay.box_w + 0.1, top - lay.pitch * (p + 0.5), 0])
            end = labels[self.ids[p]].get_left() + LEFT * 0.1
            end[1] = cells[self.ids[p]].get_center()[1]
            arrows.append(
                Arrow(
                    start,
                    end,
                    buff=0,
                    stroke_width=2.5,
                    tip_length=0.14,
                    max_tip_length_to_length_ratio=0.3,
                    color=self.token_colors(self.ids[p]),
                )
            )
        return dict(
            cells=cells,
            labels=labels,
            frame=frame,
            ends=ends,
            header=header,
            gaps=gaps,
            legend=legend,
            arrows=arrows,
        )

    def get_gap(self, skipped: int, mid: float, x: float, width: float, side: bool) -> VGroup:
        """A break in W_E: a dashed line or ⋮, and how many rows it leaves out."""
        note = label(f"⋮ {skipped:,} rows", style.MIN_TEXT, self.theme.muted)
        if not side:
            return VGroup(center_on(note, [x + width / 2, mid, 0]))
        dashes = DashedLine(
            [x, mid, 0],
            [x + width, mid, 0],
            dash_length=0.06,
            stroke_width=1.5,
            color=self.theme.muted,
        )
        center_on(note, [x + width + 0.08 + 0.15 + note.width / 2, mid, 0])
        return VGroup(dashes, note)

    # --- builders: similarity ---------------------------------------------------------
    def get_similarity(self) -> dict:
        """The cosine heatmap of the first tokens that fit, token labels, numbers, legend."""
        theme, room = self.theme, self.content  # laid out after this beat's caption
        P = len(self.ids)
        names = [shown(t) for t in self.texts]
        row_w = min(1.8, max(measure(s, style.MIN_TEXT) for s in names))
        # The legend beside the grid or below it: whichever leaves the bigger cells.
        legend = DivergingLegend(1.0, theme, ("−1", "0", "+1"), width=self.legend_width)
        n, cell, upright, legend_below = max(
            (self.fit_heatmap(names, row_w, legend, below) + (below,) for below in (True, False)),
            key=lambda fit: (fit[0], fit[1]),
        )
        col_h = (
            0.4 if upright else min(1.6, max(measure(s, style.MIN_TEXT) for s in names[:n])) + 0.12
        )
        note_h = 0.45 if n < P else 0.0
        values = self.trace.embedding.cosine[:n, :n]
        grid = Heatmap(style.diverging_rgb(values, 1.0, theme), cell * n, cell * n, theme)
        block_w = row_w + 0.15 + grid.width + (0 if legend_below else 0.5 + legend.width)
        block_h = note_h + col_h + grid.height + (legend.height + 0.25 if legend_below else 0)
        x0 = room.center[0] - block_w / 2 + row_w + 0.15
        y1 = room.center[1] + block_h / 2 - col_h - note_h
        grid.move_to([x0 + grid.width / 2, y1 - grid.height / 2, 0])
        if legend_below:
            legend.next_to(grid, DOWN, buff=0.25)
        else:
            legend.next_to(grid, RIGHT, buff=0.5).align_to(grid, DOWN)
        labels = VGroup()
        for i in range(n):
            color = self.token_colors(self.ids[i])
            row = label(names[i], style.MIN_TEXT, color, max_width=row_w)
            center_on(
                row, [grid.get_left()[0] - 0.12 - row.width / 2, grid.cell_center(i, 0)[1], 0]
            )
            col = label(names[i], style.MIN_TEXT, color, max_width=max(col_h - 0.1, cell))
            if upright:
                center_on(col, [grid.cell_center(0, i)[0], grid.get_top()[1] + 0.22, 0])
            else:
                col.rotate(np.pi / 2)
                col.next_to(grid, UP, buff=0.1).set_x(grid.cell_center(0, i)[0])
            labels.add(row, col)
        if n < P:
            note = label(f"first {n} of {P} tokens", style.MIN_TEXT, theme.muted)
            center_on(note, [grid.get_center()[0], grid.get_top()[1] + col_h + 0.22, 0])
            note.shift(RIGHT * max(0.0, room.x0 - note.get_left()[0]))
            labels.add(note)
        numbers = self.get_numbers(grid, values)
        return dict(grid=grid, labels=labels, numbers=numbers, legend=legend)

    def fit_heatmap(
        self, names: list[str], row_w: float, legend: Group, below: bool
    ) -> tuple[int, float, bool]:
        """Tokens shown, cell size and upright column labels, with the legend ``below`` or not."""
        room, P = self.content, len(names)
        avail_w = room.width - row_w - 0.15 - (0 if below else legend.width + 0.5)
        avail_h = room.height - (legend.height + 0.25 if below else 0.0)
        turned = min(1.6, max(measure(s, style.MIN_TEXT) for s in names)) + 0.12
        best = (0, 0.0, False)
        for upright, col_h in ((False, turned), (True, 0.4)):
            side = min(avail_w, avail_h - col_h)
            n = max(1, min(P, int(side // self.min_heat_cell)))
            side = min(avail_w, avail_h - col_h - (0.45 if n < P else 0.0))
            n = max(1, min(n, int(side // self.min_heat_cell)))
            cell = min(self.max_heat_cell, side / n)
            fits = max(measure(s, style.MIN_TEXT) for s in names[:n]) <= cell * 0.92
            if upright and not fits:
                continue
            best = max(best, (n, cell, upright), key=lambda b: (b[0], b[1]))
        return best

    def get_numbers(self, grid: Heatmap, values: np.ndarray) -> VGroup:
        """Each cell's value (``.47``, ``−.15``, ``1``) when every one fits at MIN_TEXT."""
        texts = [[fmt_cosine(v) for v in row] for row in values]
        widest = max(measure(t, style.MIN_TEXT, ID_FONT) for row in texts for t in row)
        numbers = VGroup()
        if widest > grid.cell * 0.9 or grid.cell_height < 0.42:
            return numbers
        rgb = style.diverging_rgb(values, 1.0, self.theme)
        for i, row in enumerate(texts):
            for j, text in enumerate(row):
                color = self.theme.text_on(rgb[i, j] / 255)
                number = label(text, style.MIN_TEXT, color, font=ID_FONT)
                numbers.add(center_on(number, grid.cell_center(i, j)))
        return numbers


def fmt_cosine(value: float) -> str:
    """A cosine in at most four characters: ``1``, ``.47``, ``−.15``."""
    text = f"{value:.2f}"
    if text in ("1.00", "-1.00"):
        return text[:-3].replace("-", "−")
    return text.replace("0.", ".").replace("-", "−")


__all__ = ["Embedding"]

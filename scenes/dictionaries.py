"""Dictionaries: the stream read with the model's own token tables, layer by layer (seed 004)."""

from __future__ import annotations

from manim import DOWN, LEFT, FadeIn, SurroundingRectangle, VGroup

from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.dictionaries import ROW_HEIGHT, DictionaryTable, MiddleTable, value_text
from mechviz.visual.text import paragraph


class Dictionaries(TraceScene):
    """One position's stream after each layer, decoded with W_E / W_U and a middle dictionary.

    The position is the settings' ``query`` (default: the last); the table rows
    are the settings' ``layers`` (default: as many as fit); the middle
    dictionary is read after the settings' ``layer`` (default: the middle one).
    """

    shows_lens = True  # its tokens' marks go into the legend

    beats = {
        "input": "the stream after each layer, its closest rows of W_E (cosine A), row by row",
        "contrast": "beside it, the output dictionary W_U, or the logit lens when W_E = W_U",
        "middle": "the middle dictionary: each position's closest prompt tokens at a middle layer",
    }
    row_time = 0.35  # seconds per table row as it appears
    min_rows = 4  # rows each of two stacked tables keeps, else they take turns

    def construct(self) -> None:
        self.section = self.trace.require("dictionaries")  # one sentence without it
        self.position = self.get_position()
        self.middle_layer = self.get_middle_layer()
        self.show_title("The model's own dictionaries")
        with self.beat("input"):
            self.show_input()
        with self.beat("contrast"):
            self.show_contrast()
        with self.beat("middle"):
            self.show_middle()

    # --- beats ------------------------------------------------------------------------
    def show_input(self) -> None:
        trace = self.trace
        E = self.section.input_ids.shape[-1]
        self.caption(
            f"The stream at {shown(self.token_texts[self.position])} after each layer: "
            f"its {E} closest rows of W_E by cosine A (bar: 0 to 1)."
        )
        note = self.get_note()
        self.left_box, self.right_box = self.get_panels()
        self.left = DictionaryTable.from_trace(
            trace,
            "input",
            self.position,
            self.settings.layers,
            width=self.left_box.width,
            height=self.left_box.height,
            theme=self.theme,
        )
        self.place(self.left, self.left_box)
        self.swap(None, note, run_time=0.5)
        self.build_up(self.left)

    def show_contrast(self) -> None:
        tied = self.trace.model.tied_embeddings
        if tied:
            self.caption(
                "For contrast, the logit lens: the final norm, then the same W_U and "
                "softmax (probabilities p)."
            )
        else:
            self.caption("The output dictionary W_U, read the same way: cosines A.")
        self.right = DictionaryTable.from_trace(
            self.trace,
            "lens" if tied else "output",
            self.position,
            [row - 1 for row in self.left.lens_rows if row > 0],  # the same rows as the left
            width=self.right_box.width,
            height=self.right_box.height,
            theme=self.theme,
        )
        self.place(self.right, self.right_box)
        if self.right_box == self.left_box:  # no room for two: the contrast replaces it
            self.swap(self.left, None, run_time=0.4)
        self.build_up(self.right)
        self.wait(1.0)

    def show_middle(self) -> None:
        if self.section.middle_ids.shape[-1] == 0:  # a prompt of the beginning-of-text token
            self.swap(VGroup(self.note, self.left, self.right), None)
            self.caption("This prompt has no tokens for a middle dictionary (BOS is left out).")
            return
        self.caption(self.middle_caption())
        w = self.whole
        box = Box(w.x0, w.x1, self.content.y0, w.y1)  # the note's room, above the caption
        layer = self.middle_layer
        self.depth_note = paragraph(
            self.depth_text(layer), style.MIN_TEXT, self.theme.muted, max_width=box.width
        )
        room = box.height - self.depth_note.height - 0.35
        table = MiddleTable.from_trace(
            self.trace, layer, width=box.width, height=room, theme=self.theme
        )
        group = VGroup(table, self.depth_note).arrange(DOWN, buff=0.35, aligned_edge=LEFT)
        group.move_to(box.center)
        if self.position in table.positions:  # the position the tables read, framed
            row = table.positions.index(self.position)
            frame = SurroundingRectangle(
                VGroup(table.row_labels[row], *table.cells[row], table.numbers[row]),
                color=self.theme.highlight,
                buff=0.04,
                stroke_width=3,
            )
            group.add(frame)
        self.middle = table
        old = VGroup(self.note, self.left, self.right)  # (the left may be gone already)
        self.swap(old, group, run_time=0.6)
        self.wait(1.5)

    def middle_caption(self) -> str:
        """What the middle dictionary is, naming its start token when the caption has room."""
        d = self.section
        start = "".join(shown(self.vocab_text(i)) for i in d.middle_prefix)
        head = f"A middle dictionary: the prompt's {self.middle_basis()} unique tokens, each run"
        tail = f"through {d.middle_layers} layers."
        texts = [f"{head} alone after {start} {tail}"] if start else []
        for text in [*texts, f"{head} alone {tail}"]:
            fits = paragraph(
                text,
                style.BODY_TEXT,
                max_width=self.frame.width - 2 * style.BUFF,
                max_lines=self.caption_lines,
            )
            if not fits._mv_cut:
                return text
        return text

    def get_middle_layer(self) -> int:
        """The layer the middle dictionary is read after: the settings' ``layer``, else L // 2."""
        L, layer = self.trace.n_layers, self.settings.layer
        layer = L // 2 if layer is None else layer
        if not 0 <= layer < L:
            raise MechvizError(
                f"Layer {layer} is out of range; this model has layers 0 to {L - 1}."
            )
        return layer

    def depth_text(self, layer: int) -> str:
        """The closest entry's A at the position: at the embedding, after ``layer``, at the end."""
        amp = self.section.middle_amp[:, self.position, 0]
        L = self.trace.n_layers
        return (
            f"At {shown(self.token_texts[self.position])}, the closest entry's A: "
            f"{value_text(amp[0])} at the embedding, {value_text(amp[layer + 1])} after layer "
            f"{layer}, {value_text(amp[L])} after layer {L - 1}."
        )

    # --- builders ---------------------------------------------------------------------
    def get_position(self) -> int:
        """The position read: the settings' ``query``, else the last."""
        P = self.trace.n_positions
        query = self.settings.query
        if query is None:
            return P - 1
        if not -P <= query < P:
            raise MechvizError(
                f"Position {query} is out of range; the prompt has positions 0 to {P - 1}."
            )
        return query % P

    def get_note(self) -> VGroup:
        """The line above the tables: whether W_E and W_U are one matrix."""
        if self.trace.model.tied_embeddings:
            text = "tied: W_E = W_U, the input and output dictionaries coincide"
        else:
            text = "untied: W_E and W_U are two dictionaries"
        box = self.whole = self.content  # the middle beat takes the note's room back
        note = paragraph(text, style.BODY_TEXT, self.theme.highlight, max_width=box.width)
        note.move_to([box.x0 + note.width / 2, box.y1 - note.height / 2, 0])
        self.note = note
        self.content = Box(box.x0, box.x1, box.y0, note.get_bottom()[1] - 0.3)
        return note

    def get_panels(self) -> tuple[Box, Box]:
        """The dictionary's panel and the contrast's: side by side, stacked, or one box.

        Narrow frames stack them when each keeps ``min_rows`` rows, else the
        contrast takes the dictionary's place (the same box twice).
        """
        box = self.content
        if self.frame.width >= 1.3 * self.frame.height:
            return box.split("x", 0.5, gap=0.5)
        top, bottom = box.split("y", 0.5, gap=0.3)
        if top.height >= (3 + self.min_rows) * ROW_HEIGHT:  # title, notes and the rows
            return top, bottom
        return box, box

    def place(self, table: DictionaryTable, box: Box) -> None:
        table.move_to([box.center[0], box.y1 - table.height / 2, 0])

    def build_up(self, table: DictionaryTable) -> None:
        """The title, notes and header, then the rows from the embedding down through depth."""
        self.play(FadeIn(VGroup(table.title, table.notes, table.header)), run_time=0.4)
        for row in table.rows:
            self.play(FadeIn(row), run_time=self.row_time)

    def middle_basis(self) -> int:
        """Entries of the middle dictionary: the prompt's unique tokens, a BOS left out.

        A beginning-of-text token the tokenizer adds covers no characters.
        """
        tokens = self.trace.tokens
        first = 1 if len(tokens.ids) and tokens.offsets[0, 0] == tokens.offsets[0, 1] else 0
        return len({int(i) for i in tokens.ids[first:]})


__all__ = ["Dictionaries"]

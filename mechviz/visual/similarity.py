"""Embedding-similarity blocks: which words ``W_E`` puts close, and how often products are positive.

* :class:`WordMatrix`: the cosine matrix of the word list's rows of ``W_E``
  (a :class:`~mechviz.visual.embedding.CosineMatrix`), words as labels.
* :class:`PairList`: the most alike pairs of a word list (cosine of their rows
  of ``W_E``, largest first) and the least alike one, each with its value.
* :class:`ShareBars`: the share of positive inner products ``<W_E[a]|W_E[b]>``
  over the trace's random token pairs, as a bar, beside a reference figure
  (the seed's 81% for Llama-2 7B), labelled as another model's.

Both read ``trace.similarity`` (:class:`mechviz.tracing.schema.Similarity`) and are
laid out in a room of ``width`` x ``height`` scene units centred on the origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from manim import DOWN, LEFT, RIGHT, UP, Mobject, Rectangle, VGroup

from mechviz.model.tokens import readable, shown
from mechviz.visual import style
from mechviz.visual.blocks import TraceView, room
from mechviz.visual.embedding import CosineMatrix, fmt_cosine
from mechviz.visual.style import Theme
from mechviz.visual.text import baseline, label, paragraph

if TYPE_CHECKING:
    from mechviz.tracing.schema import Similarity, Trace

__all__ = [
    "PairList",
    "Reference",
    "SEED_REFERENCE",
    "ShareBars",
    "WordMatrix",
    "ranked_pairs",
    "word_text",
]


@dataclass(frozen=True)
class Reference:
    """A share measured elsewhere, shown beside the trace's own (never from the trace)."""

    share: float
    model: str
    source: str


# Seed 004, section 2.A: "token inner products are positive 81% of the time" (Llama-2 7B).
SEED_REFERENCE = Reference(0.81, "Llama-2 7B", "the seed's figure")


def word_text(word: str) -> str:
    """A word of the list as drawn: byte fragments readable, its leading space as ``·``."""
    return shown(readable(word))


def ranked_pairs(cosine: np.ndarray) -> list[tuple[int, int, float]]:
    """Every pair ``i < j`` with its cosine, largest first (ties: in order of ``i``, ``j``)."""
    W = cosine.shape[0]
    pairs = [(i, j, float(cosine[i, j])) for i in range(W) for j in range(i + 1, W)]
    return sorted(pairs, key=lambda p: -p[2])  # sorted() is stable


def _similarity(trace: Trace) -> Similarity:
    return trace.require("similarity")


class WordMatrix(CosineMatrix):
    """The cosines of the word list's rows of ``W_E`` (``trace.similarity.cosine``).

    Cells go down to 0.35 units (a MIN_TEXT word is 0.32 high) and the legend
    is short, so ten words fit a 16:9 or 1:1 frame below a title. Attributes
    are :class:`CosineMatrix`'s.
    """

    min_cell = 0.35
    legend_width = 1.2  # its end labels overhang it: about 1.6 wide

    @classmethod
    def from_trace(  # type: ignore[override]
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        numbers: bool = True,
    ) -> WordMatrix:
        """The word list's cosine matrix, its rows and columns labelled by word.

        Args:
            trace: A trace with a ``similarity`` section, or the path of one.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            numbers: Write each cell's value when it fits.

        """
        view = TraceView.of(trace, theme)
        s = _similarity(view.trace)
        block = cls.from_matrix(
            s.cosine,
            [readable(w) for w in s.words],
            width=width,
            height=height,
            theme=view.theme,
            numbers=numbers,
        )
        if block.note is not None:  # it says "tokens"; these are words
            note = label(f"first {block.n} of {len(s.words)} words", style.MIN_TEXT)
            note.set_color(view.theme.muted).move_to(block.note, aligned_edge=LEFT)
            block.labels.remove(block.note)
            block.labels.add(note)
            block.note = note
        return block


class PairList(VGroup):
    """The ``n`` most alike pairs of the word list and the least alike one, with cosines.

    Rows that do not fit the room are left out from the end of "most alike";
    the least alike pair is always shown. Build it with :meth:`from_trace`.

    Attributes:
        most: The rows of the most alike pairs, largest first (each a ``VGroup``
            of its words and its value).
        least: The row of the least alike pair.
        pairs: ``(i, j, cosine)`` of the rows of ``most``, then of ``least``.
        headers: "Most alike" and "Least alike".

    """

    row_gap = 0.16  # between rows (scene units)

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        n: int = 4,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        most_color: object = None,
        least_color: object = None,
    ) -> PairList:
        """The ``n`` most alike pairs (fewer if the room is short) and the least alike one.

        Args:
            trace: A trace with a ``similarity`` section, or the path of one.
            n: Most alike pairs to list at most.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            most_color: Colour of the "Most alike" header (default: the theme's highlight).
            least_color: Colour of the "Least alike" header (default: its foreground).

        """
        view = TraceView.of(trace, theme)
        theme_ = view.theme
        s = _similarity(view.trace)
        w, h = room(width, height)
        ranked = ranked_pairs(np.asarray(s.cosine, dtype=np.float64))
        words = [word_text(x) for x in s.words]
        self = cls()
        self.headers = VGroup(
            label("Most alike", style.BODY_TEXT, most_color or theme_.highlight, max_width=w),
            label("Least alike", style.BODY_TEXT, least_color or theme_.foreground, max_width=w),
        )
        for shown_n in range(max(1, min(n, len(ranked) - 1)), 0, -1):  # as many as fit
            self.most = VGroup(*(self._row(words, p, w, theme_) for p in ranked[:shown_n]))
            self.least = self._row(words, ranked[-1], w, theme_)
            column = VGroup(self.headers[0], *self.most, self.headers[1], self.least)
            column.arrange(DOWN, buff=self.row_gap, aligned_edge=LEFT)
            if column.height + 0.2 <= h:
                break
        self.pairs = [*ranked[:shown_n], ranked[-1]]
        rows = [*self.most, self.least]
        texts = VGroup(*(row[0] for row in rows))
        for row in rows:  # the words left-aligned, the values in one right-aligned column
            row[0].align_to(column, LEFT)
        right = texts.get_right()[0] + 0.3 + max(row[1].width for row in rows)
        for row in rows:
            row[1].align_to([right, 0, 0], RIGHT)
            row[1].shift(UP * (baseline(row[0]) - baseline(row[1])))
        self.headers[1].shift(DOWN * 0.2)
        self.least.shift(DOWN * 0.2)
        self.add(column)
        self.move_to([0, 0, 0])
        return self

    @staticmethod
    def _row(words: list[str], pair: tuple[int, int, float], w: float, theme: Theme) -> VGroup:
        """``·male – ·female   .76``: the two words, then the value at the right."""
        i, j, value = pair
        number = label(fmt_cosine(value), style.MIN_TEXT, theme.foreground, font=style.MONO)
        text = label(
            f"{words[i]} – {words[j]}",
            style.MIN_TEXT,
            theme.muted,
            max_width=max(w - number.width - 0.4, 1.0),
        )
        number.next_to(text, RIGHT, buff=0.3)
        row = VGroup(text, number)
        row.pair = pair
        return row


class ShareBars(VGroup):
    """The share of positive ``<W_E[a]|W_E[b]>`` over the trace's sampled pairs, as a bar.

    Beside it, ``reference`` (by default :data:`SEED_REFERENCE`, Llama-2 7B's
    81% from the seed) in muted colours, labelled as another model's figure.
    It drops its header in a short room; with the reference it needs about
    2.7 units of height at least (a scene with less room gives it another
    place). Build it with :meth:`from_trace`.

    Attributes:
        header: What is measured; ``None`` when the room is too short for it.
        bars: The trace's bar, then the reference's (each a ``VGroup`` of its
            name, value, track, fill and note).
        fills: The filled part of each bar (width = share x track width).
        tracks: The full bar of each (width = 100%).
        values: The shares drawn, the trace's then the reference's.
        texts: The value labels, e.g. "98.4%", "81%".

    """

    bar_height = 0.32

    @classmethod
    def from_trace(
        cls,
        trace: Trace | str | Path,
        *,
        width: float | None = None,
        height: float | None = None,
        theme: Theme | str | None = None,
        reference: Reference | None = SEED_REFERENCE,
    ) -> ShareBars:
        """The trace's share of positive products, and ``reference`` (``None``: none).

        Args:
            trace: A trace with a ``similarity`` section, or the path of one.
            width: Room (scene units; default the frame less margins).
            height: Room (scene units; default the frame less margins).
            theme: A theme or its name (default: the current render's).
            reference: A share measured elsewhere, drawn muted below the trace's.

        """
        view = TraceView.of(trace, theme)
        t, trace_ = view.theme, view.trace
        s = _similarity(trace_)
        w, h = room(width, height)
        w = min(w, 7.0) - 0.05  # a longer bar reads no better; the margin holds the outline
        pairs = s.sample * (s.sample - 1) // 2
        rows = [
            (
                trace_.model.id.rstrip("/").split("/")[-1],
                float(s.positive_share),
                f"{100 * s.positive_share:.1f}%",
                f"{pairs:,} pairs of {s.sample:,} random tokens",
                (t.positive, t.negative),
            )
        ]
        if reference is not None:
            rows.append(
                (
                    reference.model,
                    reference.share,
                    f"{100 * reference.share:.0f}%",
                    f"{reference.source}, for another model",
                    (t.muted, t.faint),
                )
            )
        size = style.TITLE_TEXT if h > 8 else style.BODY_TEXT  # the one number of the beat
        values = [label(row[2], size, t.foreground, font=style.MONO) for row in rows]
        track_w = w - max(v.width for v in values) - 0.25  # every track the same length
        self = cls()
        self.bar_height = 0.6 if h > 8 else 0.32  # thick bars when the room is tall
        self.header = paragraph(
            "Token pairs with a positive ⟨W_E[a]|W_E[b]⟩",
            style.BODY_TEXT,
            t.foreground,
            max_width=w,
            max_lines=2,
        )
        self.bars = VGroup(
            *(
                self._bar(name, share, value, note, w, track_w, colors, t)
                for (name, share, _, note, colors), value in zip(rows, values)
            )
        )
        self.values = [row[1] for row in rows]
        # As loose as the room allows; in a short room without the header (a caption says it).
        tries = [(True, 0.9), (True, 0.6)] if h > 8 else []  # a tall room: spread out
        tries += [(True, 0.45), (True, 0.3), (True, 0.2), (False, 0.3), (False, 0.2)]
        for header, gap in tries:
            self.bars.arrange(DOWN, buff=gap, aligned_edge=LEFT)
            self.remove(*self.submobjects)
            self.add(*([self.header] if header else []), self.bars)
            self.arrange(DOWN, buff=gap, aligned_edge=LEFT)
            if self.height <= h:
                break
        if not header:
            self.header = None
        self.fills = [bar.fill for bar in self.bars]
        self.tracks = [bar.track for bar in self.bars]
        self.texts = [bar.value for bar in self.bars]
        self.move_to([0, 0, 0])
        return self

    def _bar(
        self,
        name: str,
        share: float,
        number: Mobject,
        note: str,
        w: float,
        track_w: float,
        colors: tuple[object, object],
        theme: Theme,
    ) -> VGroup:
        """One labelled bar: its name above, the track with its value at the right, a note."""
        bar_h = self.bar_height
        title = label(name, style.BODY_TEXT, theme.foreground, max_width=w)
        track = Rectangle(
            width=track_w, height=bar_h, stroke_width=1, stroke_color=theme.muted
        ).set_fill(colors[1], opacity=1.0)
        part = Rectangle(width=max(track_w * share, 1e-3), height=bar_h, stroke_width=0).set_fill(
            colors[0], opacity=1.0
        )
        title.next_to(track, UP, buff=0.15).align_to(track, LEFT)
        number.next_to(track, RIGHT, buff=0.25)
        part.align_to(track, LEFT).align_to(track, UP)
        words = paragraph(note, style.MIN_TEXT, theme.muted, max_width=w, max_lines=2)
        words.next_to(track, DOWN, buff=0.15).align_to(track, LEFT)
        bar = VGroup(title, number, track, part, words)
        bar.track, bar.fill, bar.value, bar.name, bar.note = track, part, number, title, words
        return bar

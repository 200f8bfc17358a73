"""A token is drawn as what it is (issue 21, item 1).

Invisible characters get marks of their own (never a character that is itself
a token), every label stands on the font's baseline whatever its glyphs, and
the legend says what the marks mean.
"""

from __future__ import annotations

import numpy as np
import pytest

from mechviz.model.tokens import (
    EMPTY,
    LONE_SPACE,
    MARK_NAMES,
    MARKS,
    drawable,
    legend,
    readable,
    shown,
)
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.lens import LensTable
from mechviz.visual.settings import example_trace
from mechviz.visual.text import baseline, center_on, ink_drop, label, number

TRICKY = [" ", "\xa0", "  ", ".", "·", " .", "-", "_", "’", ",", "'", "\n", "\t", "\r", "\u200b"]
TRICKY += ["\u2009", "\u3000", "", " `", "`", "、", "∅", "␣", "⏎"]


def test_different_tokens_never_look_alike() -> None:
    drawn = [shown(t) for t in TRICKY]
    assert len(set(drawn)) == len(drawn), dict(zip(TRICKY, drawn))


def test_whitespace_has_marks_and_a_mark_is_never_a_literal() -> None:
    assert shown(" ") == LONE_SPACE  # not "·", which passes for a full stop
    assert shown(" of") == "·of" and shown("\xa0") == "◦" and shown("\n\n") == "⏎⏎"
    assert shown("") == EMPTY
    # A token that is itself a mark (or another blank) is written by its code point.
    assert shown("·") == "<U+00B7>" and shown("l·l") == "l<U+00B7>l"
    assert shown("\u2009") == "<U+2009>" and shown("\u200b") == "<U+200B>"
    assert shown("👩\u200d💻") == "👩\u200d💻"  # a joiner inside an emoji stays
    for ch, mark in MARKS.items():
        assert mark in MARK_NAMES and shown("a" + ch) == "a" + mark


def test_the_legend_names_each_mark_drawn() -> None:
    assert legend([" The", " capital"]) == "· = space"
    assert legend([" ", " x\n", "\xa0"]) == "·/␣ = space, ◦ = no-break space, ⏎ = newline"
    assert legend(["abc"]) == ""


@pytest.mark.parametrize("font", [style.FONT, style.MONO])
def test_marks_and_punctuation_sit_where_the_font_puts_them(font: str) -> None:
    # Measured from Pango's drawing, in capital heights above the baseline.
    assert ink_drop(".", font) == pytest.approx(0.0, abs=0.03)
    assert ink_drop(",", font) < -0.1  # a comma hangs below the line
    assert ink_drop("·", font) > 0.3  # the space mark floats: it is no full stop
    assert ink_drop("-", font) > 0.25  # a hyphen is no underscore
    assert ink_drop("_", font) < -0.1
    assert ink_drop("’", font) > 0.5  # an apostrophe is no comma
    assert ink_drop("g", font) < -0.15 and ink_drop("H", font) == pytest.approx(0, abs=0.01)
    assert ink_drop("a b\nc", font) is None  # lines of their own: no one baseline


@pytest.mark.parametrize("text", ["·a", "by", "ps", "·Paris", "·`", "-", "’", "g", "ps·a"])
def test_short_tokens_stand_on_the_baseline(text: str) -> None:
    point = np.array([0.0, 0.0, 0.0])
    ref = center_on(label("H", style.BODY_TEXT), point)
    mob = center_on(label(text, style.BODY_TEXT), point)
    cap = style.cap_height(style.BODY_TEXT)
    assert baseline(mob) == pytest.approx(ref.get_bottom()[1], abs=0.02 * cap)
    # A letter that stands on the line shows it: its bottom is the H's (one glyph
    # per character here: the labels hold no spaces).
    standing = {"·a": "a", "by": "b", "ps": "s", "·Paris": "P", "ps·a": "s"}
    if text in standing:
        glyph = mob.submobjects[text.index(standing[text])]
        assert glyph.get_bottom()[1] == pytest.approx(ref.get_bottom()[1], abs=0.05 * cap)


def test_numbers_stand_on_the_baseline_too() -> None:
    point = np.array([0.0, 0.0, 0.0])
    ref = center_on(label("H", style.MIN_TEXT), point)
    for text in ("0.69", "-", "12%", "."):
        mob = center_on(number(text, style.MIN_TEXT), point)
        assert baseline(mob) == pytest.approx(ref.get_bottom()[1], abs=0.01), text


def test_the_lens_table_draws_a_lone_space_as_a_space() -> None:
    # The example: the column of ·of showed "." at layers 10, 14, 17 and 21,
    # where the trace says ' '.
    trace = load_trace(example_trace())
    table = LensTable.from_trace(trace, width=13.6, height=7.4, theme="dark")
    spaces = 0
    for r, row in enumerate(table.lens_rows):
        for c, p in enumerate(table.positions):
            token = trace.token_text(int(trace.lens.top_ids[row, p, 0]))
            drawn = table.cell_texts[r][c].original_text
            if token == " ":
                spaces += 1
                assert drawn == drawable(LONE_SPACE), (row, p)
            assert drawn != "." or token == ".", (row, p, token)
    assert spaces >= 4


def test_one_list_never_shows_two_tokens_alike() -> None:
    # ResidualFlow's bars could show two "." labels in one list (" " and ".").
    for name in ("ResidualFlow", "Unembedding"):
        trace = load_trace(example_trace(name))
        ids = trace.lens.top_ids
        for row in range(ids.shape[0]):
            for p in range(ids.shape[1]):
                texts = [shown(readable(trace.token_text(int(i)))) for i in ids[row, p]]
                assert len(set(texts)) == len(texts), (name, row, p, texts)

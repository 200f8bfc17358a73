"""Building blocks of the logit lens: LensTable and UnembedPipeline, from the example trace."""

from __future__ import annotations

import numpy as np
import pytest
from manim import Text

from mechviz.analyses.readouts import answer_row
from mechviz.model.tokens import drawable, readable, readable_tokens, shown
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.lens import LensTable, UnembedPipeline
from mechviz.visual.settings import ASPECTS, example_trace, frame_size
from mechviz.visual.text import cap_share

TRACE = load_trace(example_trace())
Y = TRACE.lens.top_ids.shape[0]
WIDE, TALL = (13.6, 7.4), (7.4, 13.0)  # 16:9 and 9:16 rooms (scene units)


def texts_of(mob) -> list[Text]:  # type: ignore[no-untyped-def]
    return [
        part
        for part in mob.get_family()
        if isinstance(part, Text) or hasattr(part, "_mv_font_size")
    ]


def check_room_and_text(mob, width: float, height: float) -> None:  # type: ignore[no-untyped-def]
    assert mob.width <= width + 1e-6 and mob.height <= height + 1e-6
    texts = texts_of(mob)
    assert texts
    for t in texts:
        assert cap_share(t) >= style.MIN_SHARE - 1e-3, f"{t.text!r} is too small"
    boxes = [(t.get_left()[0], t.get_right()[0], t.get_bottom()[1], t.get_top()[1]) for t in texts]
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            dx, dy = min(a[1], b[1]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[2], b[2])
            assert dx <= 0.02 or dy <= 0.02, f"{texts[i].text!r} overlaps {texts[j].text!r}"


def same_text(mob: Text, expected: str) -> bool:
    """The label says ``expected``, or its start cut with ``…`` to fit its cell."""
    want, got = drawable(expected), mob.original_text
    return got == want or (got.endswith("…") and want.startswith(got[:-1].rstrip()))


def rooms() -> list[tuple[float, float]]:
    """The frame less margins at every aspect, and the shorter boxes scenes lay tables in."""
    out = []
    for a, b in ASPECTS.values():
        w, h = frame_size(a * 120, b * 120)
        out += [(w - 0.6, h - 0.6), (w - 0.6, h - 3.2), (w - 0.6, 3.0)]
    return out


# --- common: builds in both themes, fits the room, legible -------------------------------
@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", [WIDE, TALL])
def test_lens_table_builds_fits_and_is_legible(theme: str, size: tuple[float, float]) -> None:
    table = LensTable.from_trace(example_trace(), width=size[0], height=size[1], theme=theme)
    assert table.view.theme is style.get_theme(theme)
    assert np.allclose(table.extent.get_center(), 0)
    check_room_and_text(table, *size)


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", [WIDE, TALL, (7.4, 5.0)])
def test_pipeline_builds_fits_and_is_legible(theme: str, size: tuple[float, float]) -> None:
    pipe = UnembedPipeline.from_trace(TRACE, width=size[0], height=size[1], theme=theme)
    check_room_and_text(pipe, *size)
    assert np.allclose(pipe.get_center(), 0, atol=1e-6)


# --- LensTable: what it shows is what the trace recorded ---------------------------------
@pytest.mark.parametrize("size", rooms())
def test_table_always_holds_required_rows(size: tuple[float, float]) -> None:
    table = LensTable.from_trace(TRACE, width=size[0], height=size[1], theme="dark")
    answer = answer_row(TRACE)
    assert {0, Y - 1, answer} <= set(table.lens_rows)
    assert table.lens_rows == sorted(set(table.lens_rows))
    assert table.height <= size[1] + 1e-6 and table.width <= size[0] + 1e-6
    names = [t.original_text for t in table.row_labels]
    assert names[0] == "embed" and names[-1].startswith(str(Y - 2))
    assert [("★" in n) for n in names] == [r == answer for r in table.lens_rows]
    # What is left out is said on screen: a line at each gap, and the note.
    assert table.left_out == Y - len(table.lens_rows)
    gaps = sum(b - a > 1 for a, b in zip(table.lens_rows, table.lens_rows[1:]))
    assert len(table.gap_lines) == gaps
    notes = " ".join(n.original_text for n in table.notes)
    assert (f"{table.left_out} layers left out" in notes) == (table.left_out > 0)
    n = TRACE.n_positions
    assert table.positions == list(range(n - len(table.positions), n))
    assert (f"last {len(table.positions)} of {n} positions" in notes) == (len(table.positions) < n)


def test_short_room_leaves_layers_out_and_says_so() -> None:
    table = LensTable.from_trace(TRACE, width=7.4, height=3.0, theme="dark")
    assert table.left_out > 0 and table.gap_lines
    assert any("layers left out" in n.original_text for n in table.notes)
    quiet = LensTable.from_trace(TRACE, width=7.4, height=3.0, theme="dark", note_layers=False)
    assert not any("layers left out" in n.original_text for n in quiet.notes)
    assert len(quiet.lens_rows) >= len(table.lens_rows)


@pytest.mark.parametrize("size", [WIDE, TALL, (6.0, 4.0)])
def test_every_cell_is_the_recorded_top1(size: tuple[float, float]) -> None:
    table = LensTable.from_trace(TRACE, width=size[0], height=size[1], theme="light")
    assert len(table.cells) == len(table.lens_rows) == len(table.cell_texts)
    for r, row in enumerate(table.lens_rows):
        assert len(table.cells[r]) == len(table.positions)
        for c, p in enumerate(table.positions):
            token = int(TRACE.lens.top_ids[row, p, 0])
            expected = shown(readable(TRACE.token_text(token)))
            assert same_text(table.cell_texts[r][c], expected), (row, p)
            fill = style.prob_color(float(TRACE.lens.top_probs[row, p, 0]), table.view.theme)
            assert table.cells[r][c].get_fill_color().to_hex() == fill.to_hex()
            assert np.allclose(
                table.cell_center(r, c), table.cell_texts[r][c].get_center(), atol=0.2
            )
    tokens = readable_tokens(TRACE.tokens.text)
    for c, p in enumerate(table.positions):
        assert same_text(table.col_labels[c], shown(tokens[p]))


def test_explicit_layers_are_honoured() -> None:
    answer = answer_row(TRACE)
    table = LensTable.from_trace(TRACE, [4, 7], width=13.6, height=7.4, theme="dark")
    assert table.lens_rows == sorted({0, 5, 8, Y - 1, answer})
    assert table.left_out == Y - len(table.lens_rows)
    # Every layer asked for is shown, even past what the room would choose.
    many = list(range(0, Y - 1, 2))
    table = LensTable.from_trace(TRACE, many, width=13.6, height=7.4, theme="dark")
    assert {layer + 1 for layer in many} <= set(table.lens_rows)
    assert table.height <= 7.4 + 1e-6
    with pytest.raises(Exception, match="out of range"):
        LensTable.from_trace(TRACE, [Y - 1], width=13.6, height=7.4, theme="dark")


def test_explicit_positions_are_honoured() -> None:
    n = TRACE.n_positions
    table = LensTable.from_trace(TRACE, positions=[-1, 0], width=13.6, height=7.4, theme="dark")
    assert table.positions == [0, n - 1] and not table.notes[1:]
    narrow = LensTable.from_trace(TRACE, positions=None, width=4.5, height=7.4, theme="dark")
    assert narrow.positions == list(range(n - len(narrow.positions), n))
    assert len(narrow.positions) < n
    assert f"last {len(narrow.positions)} of {n} positions" in narrow.notes[0].original_text


def test_highlights_frame_the_right_parts() -> None:
    table = LensTable.from_trace(TRACE, width=13.6, height=7.4, theme="dark")
    frame = table.frame_cell(-1, -1)
    assert np.allclose(frame.get_center(), table.cells[-1][-1].get_center(), atol=1e-6)
    assert frame.get_stroke_color().to_hex() == table.view.theme.highlight.to_hex()
    row = table.highlight_row(table.answer)
    r = table.index_of(table.answer)
    assert row.get_top()[1] > table.cells[r][0].get_top()[1]
    assert row.get_bottom()[1] < table.cells[r][0].get_bottom()[1]
    assert row.get_right()[0] > table.cells[r][-1].get_right()[0]


# --- UnembedPipeline ---------------------------------------------------------------------
def test_pipeline_says_what_the_trace_recorded() -> None:
    m = TRACE.model
    pipe = UnembedPipeline.from_trace(TRACE, width=13.6, height=5.0, theme="dark")
    words = [t.original_text for t in texts_of(pipe)]
    assert drawable(f"{m.d_model} → {m.d_vocab:,}") in words
    assert pipe.position == TRACE.n_positions - 1
    token = drawable(shown(readable_tokens(TRACE.tokens.text)[-1]))
    assert any(w == token or w.endswith("…") and token.startswith(w[:-1]) for w in words)
    assert len(pipe.submobjects) == 4 and len(pipe.arrows) == 3
    assert pipe.layout == "row"
    assert UnembedPipeline.from_trace(TRACE, width=7.4, height=13.0, theme="dark").layout == (
        "column"
    )
    assert UnembedPipeline.from_trace(TRACE, width=6.0, height=4.0, theme="dark").layout == "u"
    first = UnembedPipeline.from_trace(TRACE, 0, width=13.6, height=5.0, theme="dark")
    assert first.position == 0

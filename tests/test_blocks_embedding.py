"""Token and embedding blocks: TokenRow, TokenBox, ProbBars, EmbeddingRows, CosineMatrix.

Each block is built from the example trace in both themes, fits the room it is
given (a 16:9 and a 9:16 content area), keeps every text at or above
``style.MIN_TEXT``, and draws the trace's own numbers.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from manim import Mobject, Text, tempconfig

from mechviz.model.tokens import readable, shown
from mechviz.tracing.io import load_trace
from mechviz.tracing.schema import Embedding
from mechviz.visual import style
from mechviz.visual.blocks import TraceView
from mechviz.visual.embedding import CosineMatrix, EmbeddingRows, fmt_cosine
from mechviz.visual.mobjects import MorphBars, ProbBars, TokenBox, TokenRow
from mechviz.visual.settings import example_trace
from mechviz.visual.text import cap_share

MARY = Path(__file__).resolve().parent / "data" / "mary_john.json"  # 14 tokens, repeats
ROOMS = [(13.6, 5.6), (7.4, 13.0)]  # the content area at 16:9 and at 9:16 (scene units)
BLOCKS = {
    "TokenRow": lambda t, **kw: TokenRow.from_trace(t, wrap=True, ids=True, **kw),
    "TokenRow-line": lambda t, **kw: TokenRow.from_trace(t, **kw),
    "TokenBox": lambda t, **kw: TokenBox.from_trace(t, -1, **kw),
    "ProbBars": lambda t, **kw: ProbBars.from_trace(t, -1, 12, **kw),
    "EmbeddingRows": lambda t, **kw: EmbeddingRows.from_trace(t, **kw),
    "CosineMatrix": lambda t, **kw: CosineMatrix.from_trace(t, **kw),
}


@pytest.fixture(autouse=True, scope="module")
def own_media_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Text SVGs go to a directory of this module's own (others may render at the same time)."""
    with tempconfig({"media_dir": str(tmp_path_factory.mktemp("media"))}):
        yield


def texts_of(mob: Mobject) -> list[Mobject]:
    """Every text in ``mob`` (Manim ``Text`` and mechviz's glyph-built numbers)."""
    found, seen = [], set()
    for part in mob.get_family():
        if (isinstance(part, Text) or hasattr(part, "_mv_font_size")) and id(part) not in seen:
            seen.add(id(part))
            found.append(part)
    return found


def words(mob: Mobject) -> list[str]:
    """What each text of ``mob`` says (spaces dropped, as Manim's ``Text.text`` keeps them)."""
    return [getattr(t, "text", "").replace(" ", "") for t in texts_of(mob)]


def check_fits(block: Mobject, width: float, height: float) -> None:
    """The block lies inside the room centred on the origin, its texts legible."""
    x0, y0 = block.get_corner(np.array([-1, -1, 0]))[:2]
    x1, y1 = block.get_corner(np.array([1, 1, 0]))[:2]
    assert -width / 2 - 0.01 <= x0 and x1 <= width / 2 + 0.01, (x0, x1, width)
    assert -height / 2 - 0.01 <= y0 and y1 <= height / 2 + 0.01, (y0, y1, height)
    texts = texts_of(block)
    assert texts, "no text in the block"
    for text in texts:
        share = cap_share(text)
        assert share >= style.MIN_SHARE - 1e-3, f"{getattr(text, 'text', text)!r}: {share:.4f}"


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_builds_fits_and_is_legible(name: str, theme: str) -> None:
    for width, height in ROOMS:
        for trace in (example_trace(), MARY):
            block = BLOCKS[name](trace, width=width, height=height, theme=theme)
            check_fits(block, width, height)


@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_takes_the_theme(name: str) -> None:
    dark = BLOCKS[name](example_trace(), width=13.6, height=5.6, theme="dark")
    light = BLOCKS[name](example_trace(), width=13.6, height=5.6, theme=style.LIGHT)
    colours = [{t.get_color().to_hex() for t in texts_of(b)} for b in (dark, light)]
    assert colours[0] != colours[1]


# --- TokenRow, TokenBox --------------------------------------------------------------------


def test_token_row_colours_follow_token_id() -> None:
    trace = load_trace(MARY)
    row = TokenRow.from_trace(trace, width=13.6, height=5.6, theme="dark", wrap=True)
    texts = trace.tokens.text
    john = [i for i, t in enumerate(texts) if t == " John"]
    to = [i for i, t in enumerate(texts) if t == " to"]
    assert len(john) == 2 and len(to) == 2 and row.positions == list(range(len(texts)))
    colour = [box.box.get_stroke_color().to_hex() for box in row.boxes]
    assert colour[john[0]] == colour[john[1]]
    assert colour[to[0]] == colour[to[1]]
    assert colour[john[0]] != colour[to[0]]
    ids = [int(i) for i in trace.tokens.ids]
    for i in range(len(ids)):
        for j in range(len(ids)):
            if ids[i] != ids[j] and len(set(ids[: max(i, j) + 1])) <= len(style.DARK.tokens):
                assert colour[i] != colour[j], (texts[i], texts[j])
    # The same id keeps its colour in every block: the cosine labels use it too.
    matrix = CosineMatrix.from_trace(trace, width=13.6, height=5.6, theme="dark")
    for i in range(matrix.n):
        assert matrix.row_labels[i].get_color().to_hex() == colour[i]


def test_token_row_shows_texts_ids_and_says_what_it_leaves_out() -> None:
    trace = load_trace(MARY)
    view = TraceView.of(trace, "dark")
    row = TokenRow.from_trace(trace, width=13.6, height=5.6, wrap=True, ids=True)
    assert row.note is None and len(row.ids) == trace.n_positions
    assert [t.text for t in row.ids] == [str(int(i)) for i in trace.tokens.ids]
    assert [b.text.text.replace("·", " ") for b in row.boxes] == view.token_texts
    small = TokenRow.from_trace(trace, width=4.0, height=1.6, wrap=True, theme="dark")
    n = len(small.boxes)
    assert 0 < n < trace.n_positions
    assert small.note is not None
    assert small.note.text.replace(" ", "") == f"first{n}of{trace.n_positions}tokens"
    check_fits(small, 4.0, 1.6)
    picked = TokenRow.from_trace(trace, [3, 9], width=6.0, height=2.0)
    assert picked.positions == [3, 9] and len(picked.boxes) == 2


def test_token_box_from_trace() -> None:
    trace = load_trace(example_trace())
    box = TokenBox.from_trace(trace, -1, theme="light")
    assert box.position == trace.n_positions - 1
    assert box.token_id == int(trace.tokens.ids[-1])
    assert box.text.text.replace("·", " ") == readable(trace.tokens.text[-1])
    expected = style.TokenColors(trace.tokens.ids, style.LIGHT)(box.token_id)
    assert box.box.get_stroke_color().to_hex() == expected.to_hex()
    narrow = TokenBox.from_trace(MARY, 0, width=0.9, theme="dark")
    assert narrow.width <= 0.9 + 1e-6


# --- ProbBars ------------------------------------------------------------------------------


def test_prob_bars_last_layer_names_the_prediction_first() -> None:
    trace = load_trace(example_trace())
    token, prob = trace.prediction
    for layer in (trace.n_layers - 1, -1):
        bars = ProbBars.from_trace(trace, -1, layer, 5, width=13.6, height=5.6, theme="dark")
        assert bars.texts[0] == readable(trace.token_text(token))
        assert bars.values[0] == pytest.approx(prob, abs=1e-5)
        assert bars.rows[0][1].get_fill_color().to_hex() == style.DARK.highlight.to_hex()
        assert bars.rows[0][2].text == f"{prob:.2f}"
        assert bars.values == sorted(bars.values, reverse=True)


def test_prob_bars_read_the_lens_and_step() -> None:
    trace = load_trace(MARY)
    p = 5
    bars = ProbBars.from_trace(trace, p, None, 4, width=7.4, height=13.0, theme="dark")
    row = trace.lens_row(None)
    assert bars.texts == [readable(trace.token_text(i)) for i in trace.lens.top_ids[row, p, :4]]
    assert np.allclose(bars.values, trace.lens.top_probs[row, p, :4])
    bars.set_from_trace(7)
    assert np.allclose(bars.values, trace.lens.top_probs[trace.lens_row(7), p, :4])
    start = list(bars.values)
    morph = bars.step_to(12)
    assert isinstance(morph, MorphBars)
    morph.interpolate_mobject(0.0)
    assert np.allclose(bars.values, start)
    morph.interpolate_mobject(1.0)
    morph.finish()
    assert np.allclose(bars.values, trace.lens.top_probs[trace.lens_row(12), p, :4])
    assert bars.texts[0] == readable(trace.token_text(trace.lens.top_ids[13, p, 0]))
    short = ProbBars.from_trace(trace, -1, -1, 5, width=6.0, height=1.5, theme="dark")
    assert len(short.rows) < 5 and short.note.text.replace(" ", "") == f"top{len(short.rows)}of5"
    check_fits(short, 6.0, 1.5)


# --- EmbeddingRows ----------------------------------------------------------------------


def test_embedding_rows_draw_each_tokens_recorded_row() -> None:
    trace = load_trace(MARY)
    rows = EmbeddingRows.from_trace(trace, width=7.4, height=13.0, theme="dark")
    ids = [int(i) for i in trace.tokens.ids]
    assert rows.positions == list(range(trace.n_positions)) and len(rows.boxes) == len(ids)
    assert sorted(rows.cells) == sorted(set(ids)) == sorted(rows.labels)
    assert len(rows.arrows) == len(ids)
    k, sample = rows.k, trace.embedding.W_E_sample
    assert 4 <= k <= sample.shape[1]
    for token_id, cells in rows.cells.items():
        p = ids.index(token_id)
        want = style.diverging_rgb(sample[p, :k], rows.scale, style.DARK) / 255
        got = np.array([c.get_fill_color().to_rgb() for c in cells])
        assert np.allclose(got, want, atol=1 / 255)
        assert rows.labels[token_id].text == str(token_id)
    # The rows in order of id, top to bottom; each arrow ends at its token's row.
    ys = [rows.cells[i].get_center()[1] for i in sorted(rows.cells)]
    assert ys == sorted(ys, reverse=True)
    for p, arrow in enumerate(rows.arrows):
        assert arrow.get_end()[1] == pytest.approx(rows.cells[ids[p]].get_center()[1], abs=0.02)
    # The gaps count every row left out: with the rows drawn, the whole vocabulary.
    skipped = [re.sub(r"\D", "", t) for t in words(rows.gaps)]
    assert sum(int(s) for s in skipped if s) + len(rows.cells) == trace.model.d_vocab


def test_embedding_rows_say_what_they_leave_out() -> None:
    trace = load_trace(MARY)
    rows = EmbeddingRows.from_trace(trace, width=13.6, height=4.0, theme="dark")
    n = len(rows.boxes)
    assert 0 < n < trace.n_positions
    assert rows.note.text.replace(" ", "").replace("\n", "") == f"first{n}of14tokens"
    check_fits(rows, 13.6, 4.0)
    assert EmbeddingRows.dims_shown(trace, width=13.6, height=4.0) == rows.k


# --- CosineMatrix ------------------------------------------------------------------------


def whole_rows_trace():  # type: ignore[no-untyped-def]
    """The Mary/John trace with the embedding rows stored whole (d_model = the dims kept).

    A real trace keeps only the first few dimensions of each row but its cosine over
    all of them; here the rows are whole, so numpy can check the cosine drawn.
    """
    trace = load_trace(MARY)
    S = trace.embedding.W_E_sample.shape[1]
    rng = np.random.default_rng(8)
    by_id = {int(i): rng.standard_normal(S).astype(np.float32) for i in trace.tokens.ids}
    rows = np.stack([by_id[int(i)] for i in trace.tokens.ids])
    unit = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
    embedding = Embedding(
        W_E_sample=rows, W_E_norm=np.linalg.norm(rows, axis=-1), cosine=unit @ unit.T
    )
    model = dataclasses.replace(trace.model, d_model=S)
    return dataclasses.replace(trace, model=model, embedding=embedding)


def numpy_cosine(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    norms = np.sqrt((rows * rows).sum(axis=1))
    return np.array([[a @ b for b in rows] for a in rows]) / np.outer(norms, norms)


def test_cosine_matrix_is_the_cosine_of_the_embedding_rows() -> None:
    trace = whole_rows_trace()
    matrix = CosineMatrix.from_trace(trace, width=13.6, height=5.6, theme="dark")
    assert matrix.n < trace.n_positions and matrix.note is not None  # 14 tokens in 5.6 units
    want = numpy_cosine(trace.embedding.W_E_sample)[: matrix.n, : matrix.n]
    assert np.allclose(matrix.values, want, atol=1e-6)
    assert np.allclose(np.diag(matrix.values), 1.0, atol=1e-6)
    tall = CosineMatrix.from_trace(trace, width=7.4, height=13.0, theme="dark")
    assert tall.n == trace.n_positions and tall.note is None
    assert np.allclose(tall.values, numpy_cosine(trace.embedding.W_E_sample), atol=1e-6)
    picked = CosineMatrix.from_trace(trace, [9, 3, 0], width=7.4, height=7.0)
    assert np.allclose(picked.values, numpy_cosine(trace.embedding.W_E_sample[[9, 3, 0]]))
    assert picked.values[0, 1] == pytest.approx(1.0)  # " John" twice: the same row


def test_cosine_matrix_draws_the_recorded_values() -> None:
    trace = load_trace(example_trace())
    matrix = CosineMatrix.from_trace(trace, width=7.4, height=13.0, theme="light")
    values = trace.embedding.cosine
    assert matrix.n == trace.n_positions
    assert np.array_equal(matrix.values, values)  # over all d_model dims, as recorded
    assert np.allclose(np.diag(matrix.values), 1.0, atol=1e-6)
    # Not the cosine of the few dimensions the trace keeps of each row.
    assert not np.allclose(matrix.values, numpy_cosine(trace.embedding.W_E_sample), atol=0.01)
    pixels = np.asarray(matrix.grid.image.pixel_array)[..., :3]
    assert np.array_equal(pixels, style.diverging_rgb(values, 1.0, style.LIGHT))
    assert words(matrix.numbers) == [fmt_cosine(v) for v in values.ravel()]
    for k, number in enumerate(matrix.numbers):
        assert np.allclose(number.get_center()[:2], matrix.cell_center(*divmod(k, 5))[:2], atol=0.1)
    small = CosineMatrix.from_trace(trace, width=13.6, height=5.6, theme="light")
    assert len(small.numbers) == 0  # "−.10" is wider than a 0.85-unit cell allows
    names = [shown(t).replace(" ", "") for t in TraceView.of(trace).token_texts]
    assert [t.text for t in matrix.row_labels] == names
    cell = matrix.highlight(1, 2)
    assert np.allclose(cell.get_center(), matrix.cell_center(1, 2))


def test_cosine_matrix_from_any_square_matrix() -> None:
    values = np.array([[1.0, -0.5, 0.25], [-0.5, 1.0, 0.0], [0.25, 0.0, 1.0]])
    matrix = CosineMatrix.from_matrix(values, ["a", "b", "c"], width=7.4, height=6.0, theme="dark")
    assert matrix.n == 3 and np.array_equal(matrix.values, values)
    assert words(matrix.numbers) == ["1", "−.50", ".25", "−.50", "1", ".00", ".25", ".00", "1"]
    with pytest.raises(ValueError):
        CosineMatrix.from_matrix(values[:2], ["a", "b", "c"], width=7.4, height=6.0)


def test_fmt_cosine() -> None:
    assert [fmt_cosine(v) for v in (1.0, -1.0, 0.471, -0.148, 0.0)] == [
        "1",
        "−1",
        ".47",
        "−.15",
        ".00",
    ]

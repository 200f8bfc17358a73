"""The Dictionaries scene and its tables: every token and amplitude on screen is the trace's.

The scene reads ``trace.dictionaries`` (and ``trace.lens`` for the contrast)
of the committed example trace (the default model, which ties W_E and W_U,
on "The capital of France is"): its last frame is checked against control
data, its text against the legibility rule at every aspect and in the light
theme, and the tables' tokens, numbers and bars against the trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from manim import tempconfig
from PIL import Image
from test_blocks_residual import check_legible as check_block_legible
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.analyses.readouts import answer_row
from mechviz.errors import MechvizError
from mechviz.model.tokens import drawable, shown
from mechviz.rendering.scene import render_scene
from mechviz.scenes.dictionaries import Dictionaries
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.blocks import TraceView
from mechviz.visual.dictionaries import DictionaryTable, MiddleTable, value_text
from mechviz.visual.settings import SceneSettings, example_trace

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # schema 3: no `dictionaries` section


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    trace = load_trace(example_trace())
    assert trace.dictionaries is not None, "the example trace has no `dictionaries` section"
    return trace


def said(mob) -> str:  # type: ignore[no-untyped-def]
    """What a text on screen says, spaces kept (Manim's ``Text.text`` drops them)."""
    return getattr(mob, "original_text", mob.text)


def says(text, expected: str) -> bool:  # type: ignore[no-untyped-def]
    """A label says ``expected`` (as drawn), or its start cut with ``…``."""
    got, want = said(text), drawable(expected)
    return got == want or (got.endswith("…") and want.startswith(got[:-1].rstrip()))


def check_table(trace, table, ids: np.ndarray, values: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Tokens, first values and bar lengths of ``table`` are ``ids`` and ``values`` ``[R, E]``."""
    view = TraceView.of(trace, "dark")
    assert table.k >= 1 and len(table.cells) == len(ids)
    for r, row in enumerate(table.cell_texts):
        assert table.numbers[r].text == value_text(values[r, 0])
        assert float(table.numbers[r].text) == pytest.approx(float(values[r, 0]), abs=0.005)
        for c, text in enumerate(row):
            assert says(text, shown(view.vocab_text(int(ids[r, c])))), (r, c, text.text)
            bar, track = table.bars[r][c], table.cells[r][c][0]
            want = max(min(float(values[r, c]), 1.0), 0.0) * track.width
            assert bar.width == pytest.approx(max(want, 1e-3), abs=1e-3)
            assert bar.get_left()[0] == pytest.approx(track.get_left()[0], abs=1e-3)


# --- the scene ---------------------------------------------------------------------------


def test_dictionaries_last_frame(tmp_path: Path) -> None:
    out = render_scene(
        Dictionaries, SceneSettings(trace=example_trace()), "low", "png", tmp_path / "d.png"
    )
    frame = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.05, "the frame is almost empty"
    assert near(frame, dark.mlp, 20).sum() > 1500  # the middle dictionary's bars
    assert near(frame, dark.highlight, 30).sum() > 300  # the frame on the position read
    check_control("Dictionaries", frame)


@pytest.mark.parametrize("aspect", ["1:1", "9:16"])  # 16:9, 4:5 and light: in tests below
def test_dictionaries_legible_at_every_aspect(aspect: str, tmp_path: Path) -> None:
    check_legible(run_scene(Dictionaries, tmp_path, aspect=aspect))


def test_numbers_on_screen_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run_scene(Dictionaries, tmp_path)  # 16:9
    check_legible(scene)
    d, p = trace.dictionaries, trace.n_positions - 1
    left, right = scene.left, scene.right
    assert left.position == p and left.source == "input" and right.source == "lens"
    check_table(trace, left, d.input_ids[left.lens_rows, p], d.input_amp[left.lens_rows, p])
    rows = right.lens_rows
    check_table(trace, right, trace.lens.top_ids[rows, p], trace.lens.top_probs[rows, p])
    assert left.lens_rows == right.lens_rows  # the contrast reads the same layers
    assert {0, trace.n_layers, answer_row(trace)} <= set(left.lens_rows)
    # Tied: said on screen, and the embedding row's first match is the token itself (A = 1).
    note = said(scene.note).replace("\n", " ")
    assert trace.model.tied_embeddings and "tied: W_E = W_U" in note and "coincide" in note
    assert int(d.input_ids[0, p, 0]) == int(trace.tokens.ids[p])
    assert left.numbers[0].text == "1.00"
    middle = scene.middle
    assert middle.layer == trace.n_layers // 2 and middle.positions == list(range(p + 1))
    check_table(
        trace,
        middle,
        d.middle_ids[middle.layer + 1, middle.positions],
        d.middle_amp[middle.layer + 1, middle.positions],
    )
    basis = len(set(trace.tokens.ids.tolist()))  # SmolLM2 adds no BOS
    caption = scene.cues[-1].text
    assert f"{basis} unique tokens" in caption and f"through {d.middle_layers} layers" in caption
    view = TraceView.of(trace, "dark")
    start = "".join(shown(view.vocab_text(i)) for i in d.middle_prefix)
    assert d.middle_prefix and f"alone after {start} through" in caption  # 16:9 has the room
    assert f"after layer {middle.layer}" in said(middle.title)
    amp = d.middle_amp[:, p, 0]
    depth = said(scene.depth_note).replace("\n", " ")
    first, mid = value_text(amp[0]), value_text(amp[middle.layer + 1])
    assert f"{first} at the embedding, {mid} after layer {middle.layer}," in depth
    assert f"{value_text(amp[-1])} after layer {trace.n_layers - 1}." in depth


def test_settings_choose_position_layers_and_middle_layer(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run_scene(Dictionaries, tmp_path, aspect="4:5", query=1, layers=(3, 11), layer=5)
    check_legible(scene)
    d, rows = trace.dictionaries, [0, 4, 12, 30]
    assert scene.left.position == 1 and scene.left.lens_rows == rows
    check_table(trace, scene.left, d.input_ids[rows, 1], d.input_amp[rows, 1])
    assert scene.middle.layer == 5


def test_untied_tiny_model_shows_w_u_beside_w_e(tmp_path: Path) -> None:
    from conftest import make_tiny

    from mechviz.analyses.dictionaries import dictionaries
    from mechviz.tracing.record import with_sections

    tiny = make_tiny("gpt_neox", full=False)  # W_E and W_U apart; one token per character
    untied = with_sections(
        tiny.trace, tiny.loaded, dictionaries=dictionaries(tiny.loaded, tiny.rec)
    )
    assert not untied.model.tied_embeddings
    scene = run_scene(Dictionaries, tmp_path, trace=untied, aspect="9:16", theme="light")
    check_legible(scene)
    assert "untied" in said(scene.note) and scene.right.source == "output"
    assert said(scene.right.title).startswith("output W_U")
    d, rows, p = untied.dictionaries, scene.right.lens_rows, untied.n_positions - 1
    assert rows == scene.left.lens_rows
    check_table(untied, scene.left, d.input_ids[rows, p], d.input_amp[rows, p])
    check_table(untied, scene.right, d.output_ids[rows, p], d.output_amp[rows, p])
    shown_rows = scene.middle.positions
    assert len(shown_rows) <= 12 and shown_rows[-1] == p
    layer = scene.middle.layer
    check_table(
        untied,
        scene.middle,
        d.middle_ids[layer + 1, shown_rows],
        d.middle_amp[layer + 1, shown_rows],
    )


def test_bad_input_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "d.png"
    with pytest.raises(MechvizError) as err:
        render_scene(Dictionaries, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `dictionaries` section" in message and "mechviz analyze" in message
    assert "\n" not in message and not out.exists()
    with pytest.raises(MechvizError, match="Position 9 is out of range"):
        run_scene(Dictionaries, tmp_path, query=9)  # refused before anything is drawn
    with pytest.raises(MechvizError, match="Layer 99 is out of range"):
        run_scene(Dictionaries, tmp_path, layer=99)  # refused before anything is drawn
    with pytest.raises(MechvizError, match="Layer 30 is out of range"):
        MiddleTable.from_trace(example_trace(), 30)
    with pytest.raises(MechvizError, match="Position -6 is out of range"):
        DictionaryTable.from_trace(example_trace(), "input", -6)


# --- the blocks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, theme", [((6.5, 5.0), "dark"), ((7.4, 4.6), "light"), ((3.0, 3.0), "dark")]
)
def test_tables_fit_say_what_they_leave_out_and_are_legible(trace, size, theme, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with tempconfig({"media_dir": str(tmp_path)}):  # text SVGs of its own: no shared cache
        check_tables(trace, size, theme)


def check_tables(trace, size: tuple[float, float], theme: str) -> None:  # type: ignore[no-untyped-def]
    w, h = size
    for table in (
        DictionaryTable.from_trace(trace, "input", width=w, height=h, theme=theme),
        DictionaryTable.from_trace(trace, "lens", width=w, height=h, theme=theme),
        MiddleTable.from_trace(trace, width=w, height=h, theme=theme),
    ):
        assert table.width <= w + 1e-6 and table.height <= max(h, 3 * 0.46 + 1.4) + 1e-6
        check_block_legible(table)  # MIN_TEXT or more, no two texts overlapping
        notes = " ".join(said(n) for n in table.notes)
        if isinstance(table, DictionaryTable):
            left_out = trace.lens.top_ids.shape[0] - len(table.lens_rows)
            assert (f"{left_out} layers left out" in notes) == (left_out > 1) or "…" in notes
        if table.k < table.kept:
            assert f"top {table.k} of {table.kept}" in notes


def test_unknown_source_is_refused(trace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MechvizError, match="Unknown dictionary 'mid'"):
        DictionaryTable.from_trace(trace, "mid")


def test_values_read_as_recorded_without_a_negative_zero() -> None:
    assert [value_text(v) for v in (-0.001, -0.02, 0.126, 1.0)] == ["0.00", "-0.02", "0.13", "1.00"]

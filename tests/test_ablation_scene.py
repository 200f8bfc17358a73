"""The Ablation scene and its blocks: before and after a change, every number the trace's.

The scene reads ``trace.interventions`` of the committed example of an ablated
run (the default model on "The capital of France is", heads 23.4 and 29.1
zero-ablated): its last frame is checked against control data, its text
against the legibility rule at every aspect and theme, and the bars, the
answer's probabilities and the lens table against the trace's arrays.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from manim import tempconfig
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.scenes.ablation import Ablation
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.ablation import (
    BeforeAfter,
    HeadMap,
    LensCompare,
    Reading,
    change_lines,
    first_changed_layer,
    head_names,
    pick_rows,
)
from mechviz.visual.settings import SceneSettings, example_trace
from mechviz.visual.text import cap_share, spans

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # no `interventions` section
EXAMPLE = example_trace("Ablation")


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    trace = load_trace(EXAMPLE)
    assert trace.interventions is not None
    return trace


_SCENES: dict[tuple, Ablation] = {}


def run(tmp_path: Path, **kw: object) -> Ablation:
    """The scene run to its end (no frames drawn); the default trace's runs once per settings."""
    if "trace" in kw:
        return run_scene(Ablation, tmp_path, **kw)
    key = tuple(sorted(kw.items()))
    if key not in _SCENES:
        _SCENES[key] = run_scene(Ablation, tmp_path, trace=EXAMPLE, **kw)
    return _SCENES[key]


def expected_prob(ids: np.ndarray, probs: np.ndarray, token: int) -> str:
    """The answer's probability as the table writes it, from the raw arrays."""
    hits = np.nonzero(ids == token)[0]
    if len(hits):
        return f"{float(probs[hits[0]]):.2f}"
    return f"<{max(float(probs[-1]), 0.005):.2f}"


# --- the scene ---------------------------------------------------------------------------


def test_ablation_last_frame(tmp_path: Path) -> None:
    scene = run(tmp_path, aspect="16:9", theme="dark")  # the legibility test's run, as drawn
    frame = np.asarray(scene.renderer.get_frame())[..., :3].astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.08, "the frame is almost empty"
    # The lens table's cells are shaded by probability: the prob colour's family fills them.
    assert near(frame, style.prob_color(1.0, dark), 30).sum() > 1500
    check_control("Ablation", frame)


@pytest.mark.parametrize(
    ("aspect", "theme"),
    [("16:9", "dark"), ("1:1", "dark"), ("4:5", "light"), ("9:16", "dark"), ("9:16", "light")],
)
def test_ablation_legible(aspect: str, theme: str, tmp_path: Path) -> None:
    scene = run(tmp_path, aspect=aspect, theme=theme)
    check_legible(scene)
    assert list(scene.beat_texts) == list(Ablation.beats)


@pytest.mark.parametrize("aspect", ["16:9", "1:1", "9:16"])
def test_the_rows_the_caption_names_are_in_the_table(aspect: str, tmp_path: Path) -> None:
    """Issue 21: "different at layers 25 and 28" beside a table without rows 25 and 28."""
    scene = run(tmp_path, aspect=aspect, theme="dark")
    table = scene.table
    assert table.differ_top1, "the example's ablation changes no top-1"
    words = [c.text for c in scene.cues if c.beat == "lens"][0]
    missing = [r - 1 for r in table.differ_top1 if r not in table.lens_rows]
    for r in table.differ_top1:
        assert str(r - 1) in words  # lens row r is after layer r - 1
    if aspect == "16:9":
        assert not missing  # room for every row that differs
    if missing:  # a short table says which it left out
        assert f"{spans(missing)} not shown" in words, words


def test_numbers_on_screen_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, aspect="9:16", theme="dark")
    iv = trace.interventions
    paris = int(iv.before_output_ids[0])
    assert trace.token_text(paris) == " Paris"
    # The bars: before = interventions.before_output_*, after = the trace's own output.
    readout = scene.readout
    k = readout.k
    assert np.allclose(readout.bars[0].values, iv.before_output_probs[:k])
    assert np.allclose(readout.bars[1].values, trace.output.top_probs[-1, :k])
    assert readout.bars[1].texts == [trace.token_text(i) for i in trace.output.top_ids[-1, :k]]
    before = f"{float(iv.before_output_probs[0]):.2f}"
    after = expected_prob(trace.output.top_ids[-1], trace.output.top_probs[-1], paris)
    assert (before, after) == ("0.77", "0.17")
    assert f"{before}→{after}" in readout.answer_line.text  # Text.text drops spaces
    assert f"{before} → {after}" in scene.cues[2].text
    # The lens: each row's top-1 before and after, and p(answer) in both, from the arrays.
    table = scene.table
    Y = trace.lens.top_ids.shape[0]
    assert table.left_out == Y - len(table.lens_rows)
    assert {0, Y - 1} <= set(table.lens_rows)
    assert table.differ[0] == first_changed_layer(iv) + 1 == 24
    for i, row in enumerate(table.lens_rows):
        first, second = table.cells[i]
        assert first.token == int(iv.before_lens_ids[row, 0])
        assert second.token == int(trace.lens.top_ids[row, -1, 0])
        assert first.prob == pytest.approx(float(iv.before_lens_probs[row, 0]))
        assert second.prob == pytest.approx(float(trace.lens.top_probs[row, -1, 0]))
        a = expected_prob(iv.before_lens_ids[row], iv.before_lens_probs[row], paris)
        b = expected_prob(trace.lens.top_ids[row, -1], trace.lens.top_probs[row, -1], paris)
        assert table.probs[i].text == f"{a}→{b}"
    assert table.probs[-1].text == "0.77→0.17"
    # Only layers 25 and 28 differ in top-1 (issue 21: "from layer 23 on" was false).
    assert "different at layers 25 and 28, the same at the others" in scene.cues[3].text
    # Rows left out are marked by a line wherever two shown rows are not neighbours.
    gaps = sum(b - a > 1 for a, b in zip(table.lens_rows, table.lens_rows[1:]))
    assert len(table.gap_lines) == gaps
    if table.left_out:
        assert table.note.text.replace("\ufe0e", "") == f"─={table.left_out}layersleftout"


def test_map_lights_the_ablated_heads(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, aspect="16:9", theme="dark")
    hmap = scene.full_map
    marked = hmap.marked
    assert marked == {(23, 4): "ablate", (29, 1): "ablate"}
    dark = style.DARK
    for layer in range(trace.n_layers):
        for head in range(trace.model.n_heads):
            fill = hmap.cells[layer][head].get_fill_color().to_hex()
            want = dark.positive if (layer, head) in marked else dark.neutral
            assert fill == want.to_hex(), (layer, head)
    assert hmap.legend_texts[0].text == "23.4,29.1ablated(zero)"
    assert scene.map.marked == marked  # the compact map beside the readouts
    assert "2 heads ablated (zero: they write nothing)" in scene.cues[0].text


def test_freezing_a_whole_layer_and_an_mlp(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    iv = dataclasses.replace(
        trace.interventions,
        ablate=["23.4"],
        freeze=[f"7.{h}" for h in range(trace.model.n_heads)],
        freeze_from="The capital of Italy is",
        ablate_mlp=[12],
    )
    assert head_names(iv.freeze, trace.model.n_heads) == ["7.*"]
    assert change_lines(iv, trace.model.n_heads) == [
        ("ablate", "23.4 ablated (zero)"),
        ("freeze", '7.* frozen to "The capital of Italy is"'),
        ("mlp", "MLP 12 ablated (zero)"),
    ]
    assert first_changed_layer(iv) == 7
    changed = dataclasses.replace(trace, interventions=iv)
    scene = run(tmp_path, trace=changed, aspect="9:16", beats=("map", "before"))
    check_legible(scene)  # the narrowest frame: three legend lines, a long caption
    hmap = scene.full_map
    assert all(hmap.marked[(7, h)] == "freeze" for h in range(trace.model.n_heads))
    assert hmap.marked[(12, None)] == "ablate"
    assert hmap.mlp_cells[12].get_fill_color().to_hex() == style.DARK.positive.to_hex()
    assert hmap.cells[7][3].get_fill_color().to_hex() == style.DARK.negative.to_hex()
    assert scene.title_words() == "Before and after changing heads and MLPs"
    assert "(7.*, 12 MLP)" not in scene.cues[0].text


def test_trace_without_interventions_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    with pytest.raises(MechvizError) as err:
        render_scene(Ablation, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `interventions` section" in message and "mechviz trace" in message
    assert "\n" not in message
    assert not out.exists()


# --- the blocks ----------------------------------------------------------------------


@pytest.fixture
def own_media(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Texts rendered into this test's own folder: other test runs share the default one."""
    with tempconfig({"media_dir": str(tmp_path)}):
        yield


def test_blocks_fit_their_room(trace, own_media) -> None:  # type: ignore[no-untyped-def]
    for (w, h), theme in zip([(13.4, 5.4), (7.4, 11.0), (4.6, 5.0)], ["dark", "light", "dark"]):
        table = LensCompare.from_trace(trace, width=w, height=h, theme=theme)
        assert table.with_prob == (w > 7)  # a narrow room leaves out p(answer), not tokens
        for block in (
            HeadMap.from_trace(trace, width=w, height=h, theme=theme),
            BeforeAfter.from_trace(trace, width=w, height=h, theme=theme),
            table,
        ):
            name = type(block).__name__
            assert block.width <= w + 1e-6 and block.height <= h + 1e-6, (name, w, h)
            texts = [m for m in block.get_family() if hasattr(m, "_mv_font_size")]
            assert texts
            assert all(cap_share(t) >= style.MIN_SHARE - 1e-3 for t in texts), name
            assert not any(t.text.endswith("…") for t in texts), name


def test_readings_and_rows(trace) -> None:  # type: ignore[no-untyped-def]
    before, after = Reading.before(trace), Reading.after(trace)
    paris = before.answer
    assert before.prob(paris) == pytest.approx(float(trace.interventions.before_output_probs[0]))
    assert after.prob(paris) == pytest.approx(float(trace.lens.final_token_prob[-1, -1]), rel=1e-5)
    unseen = next(i for i in range(10**6) if i not in set(trace.output.top_ids[-1]))
    assert after.prob(unseen) is None
    assert after.floor() == pytest.approx(float(trace.output.top_probs[-1, -1]))
    rows = pick_rows(31, 9, {23, 24}, focus=24)
    assert len(rows) == 9 and {0, 23, 24, 30} <= set(rows)
    assert sum(r >= 23 for r in rows) == 9 - 2 - 1  # all but a quarter (and the embed)
    assert pick_rows(31, 40, set()) == list(range(31))
    with pytest.raises(MechvizError, match="no `interventions` section"):
        Reading.before(load_trace(MARY))

"""The Compare scene: trace A morphs into trace B at the last position, every number theirs.

By default A is the committed example trace ("The capital of France is") and
B the example of the same prompt with heads 23.4 and 29.1 ablated. The last
frame is checked against control data, the text against the legibility rule
at every aspect and theme, the bars and the lens table against both traces'
arrays; traces of another model or prompt length are refused in one sentence.
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
from mechviz.scenes.compare import Compare, check_comparable
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.ablation import LensCompare, Reading, parting_words
from mechviz.visual.settings import example_trace

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # 14 tokens
ABLATED = example_trace("Ablation")

_SCENES: dict[tuple, Compare] = {}


def run(tmp_path: Path, **kw: object) -> Compare:
    """The scene run to its end (no frames drawn); default runs once per settings."""
    if "trace" in kw or "other" in kw:
        return run_scene(Compare, tmp_path, **kw)
    key = tuple(sorted(kw.items()))
    if key not in _SCENES:
        _SCENES[key] = run_scene(Compare, tmp_path, **kw)
    return _SCENES[key]


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    return load_trace(example_trace()), load_trace(ABLATED)


def shown_prob(ids: np.ndarray, probs: np.ndarray, token: int) -> str:
    hits = np.nonzero(ids == token)[0]
    if len(hits):
        return f"{float(probs[hits[0]]):.2f}"
    return f"<{max(float(probs[-1]), 0.005):.2f}"


def test_compare_last_frame(tmp_path: Path) -> None:
    scene = run(tmp_path, aspect="16:9", theme="dark")
    frame = np.asarray(scene.renderer.get_frame())[..., :3].astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.08, "the frame is almost empty"
    assert near(frame, style.prob_color(1.0, dark), 30).sum() > 1500  # the lens cells
    check_control("Compare", frame)


@pytest.mark.parametrize(
    ("aspect", "theme"),
    [("16:9", "dark"), ("1:1", "light"), ("4:5", "dark"), ("9:16", "dark")],
)
def test_compare_legible(aspect: str, theme: str, tmp_path: Path) -> None:
    scene = run(tmp_path, aspect=aspect, theme=theme)
    check_legible(scene)
    assert list(scene.beat_texts) == list(Compare.beats)


def test_numbers_on_screen_are_both_traces(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    scene = run(tmp_path, aspect="9:16", theme="dark")
    assert scene.other.prompt == b.prompt and scene.other.interventions is not None
    names = [n.text for n in scene.names]
    assert names[0] == "A:Thecapitalof" + "Franceis"  # Text.text drops spaces
    assert names[1].replace("\n", "") == "B:ThecapitalofFranceis(23.4,29.1ablated)"
    readout = scene.readout
    k = readout.k
    assert np.allclose(readout.bars[0].values, a.output.top_probs[-1, :k])
    assert np.allclose(readout.bars[1].values, b.output.top_probs[-1, :k])
    assert readout.bars[1].texts == [b.token_text(i) for i in b.output.top_ids[-1, :k]]
    paris = int(a.output.top_ids[-1, 0])
    pa = shown_prob(a.output.top_ids[-1], a.output.top_probs[-1], paris)
    pb = shown_prob(b.output.top_ids[-1], b.output.top_probs[-1], paris)
    assert f"{pa}→{pb}" == "0.77→0.17"
    assert f"{pa}→{pb}" in readout.answer_line.text
    assert f"{pa} in A → {pb} in B" in scene.cues[1].text
    table = scene.table
    for i, row in enumerate(table.lens_rows):
        first, second = table.cells[i]
        assert first.token == int(a.lens.top_ids[row, -1, 0])
        assert second.token == int(b.lens.top_ids[row, -1, 0])
        assert second.prob == pytest.approx(float(b.lens.top_probs[row, -1, 0]))
        x = shown_prob(a.lens.top_ids[row, -1], a.lens.top_probs[row, -1], paris)
        y = shown_prob(b.lens.top_ids[row, -1], b.lens.top_probs[row, -1], paris)
        assert table.probs[i].text == f"{x}→{y}"
    assert table.differ[0] == 24  # the lens parts after layer 23, the first ablated head's
    # Only layers 25 and 28 differ in top-1 (issue 21: "from layer 23 on" was false).
    assert "different at layers 25 and 28, the same at the others" in scene.cues[2].text


def test_the_other_way_round(tmp_path: Path) -> None:
    scene = run_scene(
        Compare, tmp_path, trace=ABLATED, other=example_trace(), aspect="16:9", beats=("names",)
    )
    names = [n.text.replace("\n", "") for n in scene.names]
    assert names == ["A:ThecapitalofFranceis(23.4,29.1ablated)", "B:ThecapitalofFranceis"]
    assert "the same prompt" in scene.cues[0].text


def test_two_unlike_traces_are_refused_in_one_sentence(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _ = pair
    with pytest.raises(MechvizError) as err:
        run_scene(Compare, tmp_path, other=MARY, beats=("names",))
    message = str(err.value)
    assert message == (
        "Compare needs two prompts of the same length in tokens; A has 5 tokens and B has 14."
    )
    other_model = dataclasses.replace(
        a, model=dataclasses.replace(a.model, id="another-model", unembedding_hash="0" * 64)
    )
    with pytest.raises(MechvizError, match="of one model; A is SmolLM2-135M-Instruct and B is"):
        check_comparable(a, other_model)
    check_comparable(a, a)  # one trace with itself: fine


def test_identical_runs_read_the_same(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, _ = pair
    with tempconfig({"media_dir": str(tmp_path)}):
        table = LensCompare(Reading.after(a, "A"), Reading.after(a, "B"), style.DARK, 7.4, 9.0)
    assert table.differ == []
    assert all(t.text.split("→")[0] == t.text.split("→")[1] for t in table.probs)


def test_parting_words() -> None:
    assert parting_words([]) == "the same at every layer"
    assert parting_words([0, 1]) == "different from the embedding on"
    assert parting_words([1, 5]) == "the same at the embedding, different from layer 0 on"
    assert parting_words([24, 25]) == "the same up to layer 22, different from layer 23 on"

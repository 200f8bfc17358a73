"""Prompts a new user tried, traced on the real default model and drawn by every scene.

"The opposite of hot is": the lens table must show the layer where the
model's final token first becomes top-1 (and stays), even when the even
spacing would skip it. Russian and Japanese prompts: traced and drawn end to
end, byte fragments shown as what they are, every text legible.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_publishable import CORE, check_legible, run_scene

from mechviz.analyses.readouts import answer_row, row_name, table_rows
from mechviz.tracing.io import save_trace
from mechviz.tracing.record import TraceOptions, build_trace, record, tokenize

pytestmark = pytest.mark.slow


def traced(default_model, prompt: str, folder: Path) -> Path:  # noqa: ANN001
    ids = tokenize(default_model, prompt, 64)
    trace = build_trace(default_model, prompt, record(default_model, ids), TraceOptions())
    return save_trace(trace, folder / "trace.json")


@pytest.fixture(scope="module")
def hot(default_model, tmp_path_factory):  # noqa: ANN001, ANN201
    return traced(default_model, "The opposite of hot is", tmp_path_factory.mktemp("hot"))


def test_opposite_of_hot_table_shows_where_cold_wins(hot: Path, tmp_path: Path) -> None:
    from mechviz.tracing.io import load_trace

    trace = load_trace(hot)
    token, prob = trace.prediction
    assert trace.token_text(token) == " cold" and prob > 0.5
    row = answer_row(trace)
    ranks = trace.lens.final_token_rank[:, -1]
    assert ranks[row] == 0 and (ranks[row:] == 0).all() and ranks[row - 1] != 0
    print(f"' cold' is top-1 from lens row {row} ({row_name(row)}) on")
    for capacity in range(3, 12):
        assert row in table_rows(trace, capacity), capacity
    # The scene's own table, at every aspect (each fits a different number of rows).
    for aspect in ("16:9", "9:16", "1:1"):
        scene = run_scene("Unembedding", tmp_path, trace=hot, beats=["lens"], aspect=aspect)
        # Text.text drops spaces; ★ carries a text-style variation selector.
        names = [t.text.replace("\ufe0e", "") for t in scene.beat_texts["lens"]]
        assert f"{row_name(row)}★" in names, (aspect, names)
        assert "embed" in names and str(trace.n_layers - 1) in names


@pytest.mark.parametrize(
    "prompt", ["Москва — столица", "東京は日本の首都です"], ids=["russian", "japanese"]
)
def test_other_scripts_end_to_end(default_model, prompt: str, tmp_path: Path) -> None:  # noqa: ANN001
    path = traced(default_model, prompt, tmp_path)
    for name in CORE:
        scene = run_scene(name, tmp_path, trace=path)
        check_legible(scene)
        shown = " ".join(t.text for texts in scene.beat_texts.values() for t in texts)
        assert "<0x" not in shown, f"{name} shows a raw byte token: {shown[:200]}"

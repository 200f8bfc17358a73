"""Ranking heads (mechviz.analyses.heads): each criterion on patterns made by hand, the report."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LAYERS, CharTokenizer, build_tiny_model
from rich.console import Console

from mechviz.analyses import heads as mh
from mechviz.errors import MechvizError
from mechviz.model.load import wrap_model
from mechviz.model.tokens import shown
from mechviz.tracing.io import load_trace
from mechviz.tracing.record import TraceOptions, trace_prompt
from mechviz.tracing.schema import Attention, HeadEffects, Trace

SMALL_V1 = Path(__file__).parent / "data" / "small_trace.json"


def _uniform(L: int, H: int, P: int) -> np.ndarray:
    """Causal patterns spreading each query's weight evenly over its keys: [L, H, P, P]."""
    rows = np.tril(np.ones((P, P), dtype=np.float32))
    rows /= rows.sum(-1, keepdims=True)
    return np.broadcast_to(rows, (L, H, P, P)).copy()


def _with(trace: Trace, pattern: np.ndarray | None = None, direct: np.ndarray | None = None):  # noqa: ANN202
    changes = {}
    if pattern is not None:
        changes["attention"] = Attention(pattern=pattern)
    if direct is not None:
        changes["heads"] = dataclasses.replace(trace.heads, direct=direct.astype(np.float32))
    return dataclasses.replace(trace, **changes)


@pytest.fixture(scope="module")
def shaped(tiny_trace: Trace) -> Trace:
    """The tiny trace with hand-made patterns: one head per criterion stands out.

    (1, 2) looks from the last token at key 5 (0.8); (2, 3) at the previous token
    from every query (0.9); (0, 1) from the last token at the previous one (0.95),
    which ``from-last`` must ignore; (2, 0) at itself from every query.
    """
    L, H, P = LAYERS, 4, tiny_trace.n_positions
    pattern = _uniform(L, H, P)
    last = np.zeros(P, dtype=np.float32)
    last[0], last[5] = 0.2, 0.8
    pattern[1, 2, -1] = last
    for q in range(1, P):
        row = np.zeros(P, dtype=np.float32)
        row[q - 1], row[q] = 0.9, 0.1
        pattern[2, 3, q] = row
    row = np.zeros(P, dtype=np.float32)
    row[P - 2], row[0] = 0.95, 0.05
    pattern[0, 1, -1] = row
    pattern[2, 0] = np.eye(P, dtype=np.float32)
    direct = np.arange(L * H, dtype=np.float32).reshape(L, H) - 5.0  # (2, 3) highest, (0, 0) lowest
    return _with(tiny_trace, pattern, direct)


def test_direct_and_against_read_the_trace(shaped: Trace) -> None:
    scores, description = mh.direct_effect(shaped)
    np.testing.assert_array_equal(scores, shaped.heads.direct)
    assert "logit" in description and shown(shaped.token_text(shaped.heads.answer)) in description
    against, _ = mh.direct_against(shaped)
    np.testing.assert_array_equal(against, -shaped.heads.direct)
    assert [(r.layer, r.head) for r in mh.top_heads(shaped, "direct", 2)] == [(2, 3), (2, 2)]
    assert [(r.layer, r.head) for r in mh.top_heads(shaped, "against", 2)] == [(0, 0), (0, 1)]
    assert mh.top_heads(shaped, "direct", 1)[0].score == 6.0


def test_from_last_leaves_out_first_previous_and_itself(shaped: Trace) -> None:
    scores, description = mh.from_last(shaped)
    P = shaped.n_positions
    assert scores.shape == (LAYERS, 4)
    assert scores[1, 2] == pytest.approx(0.8)
    assert scores[0, 1] == 0.0  # all its weight on the first and the previous token
    assert scores[2, 0] == 0.0  # only itself
    assert scores[0, 0] == pytest.approx(1 / P)  # uniform: 1/P on every key
    assert "last token" in description
    top = mh.top_heads(shaped, "from-last", 1)[0]
    assert (top.layer, top.head, top.key, top.key_text) == (1, 2, 5, shaped.tokens.text[5])
    assert top.weight == pytest.approx(0.8)


def test_previous_token_is_the_mean_off_diagonal(shaped: Trace) -> None:
    scores, _ = mh.previous_token(shaped)
    P = shaped.n_positions
    assert scores[2, 3] == pytest.approx(0.9)
    assert scores[2, 0] == 0.0
    expected = np.mean([1 / (q + 1) for q in range(1, P)])  # uniform rows
    assert scores[0, 0] == pytest.approx(expected, rel=1e-6)
    assert mh.top_heads(shaped, "previous", 1)[0].layer == 2


def test_peaked_is_the_attention_scenes_rule(shaped: Trace, tiny_trace: Trace) -> None:
    from scenes.attention import head_scores

    for trace in (shaped, tiny_trace, load_trace(SMALL_V1)):
        scores, _ = mh.peaked(trace)
        np.testing.assert_array_equal(scores, head_scores(trace))


def test_short_prompts_score_zero() -> None:
    loaded = wrap_model(build_tiny_model("llama"), CharTokenizer(), "tiny-llama")
    for prompt, zero in (("a", {"from-last", "peaked"}), ("ab", {"from-last"})):
        trace = trace_prompt(loaded, prompt, TraceOptions(top_k=2))  # BOS, then a character each
        for name in ("from-last", "previous", "peaked"):
            scores, _ = mh.scores(trace, name)
            assert scores.shape == (LAYERS, 4)
            assert bool((scores == 0).all()) is (name in zero), (prompt, name)


def test_top_heads_rows(shaped: Trace) -> None:
    rows = mh.top_heads(shaped, "peaked", n=100)
    assert len(rows) == LAYERS * 4  # never more than there are heads
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    last = shaped.attention.pattern[:, :, -1]
    for row in rows:
        assert row.key == int(last[row.layer, row.head].argmax())
        assert row.weight == pytest.approx(float(last[row.layer, row.head].max()))
        assert row.key_text == shaped.tokens.text[row.key]
    # ties keep layer-major order
    tied = _with(shaped, direct=np.zeros((LAYERS, 4)))
    rows = mh.top_heads(tied, "direct", n=5)
    assert [(r.layer, r.head) for r in rows] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]


def test_bad_names_and_counts_are_one_sentence(shaped: Trace) -> None:
    with pytest.raises(MechvizError, match="No head criterion called 'nope'") as info:
        mh.top_heads(shaped, "nope")
    for name in mh.CRITERIA:
        assert name in str(info.value)
    with pytest.raises(MechvizError, match="at least 1"):
        mh.top_heads(shaped, "direct", n=0)
    with pytest.raises(MechvizError, match="at least 1"):
        mh.print_heads(shaped, Console(record=True), n=0)


def test_trace_without_heads_asks_for_a_new_trace() -> None:
    old = load_trace(SMALL_V1)
    assert old.heads is None
    for name in ("direct", "against"):
        with pytest.raises(MechvizError, match="re-trace with this version") as info:
            mh.top_heads(old, name)
        assert "\n" not in str(info.value) and str(info.value).endswith(".")
    console = Console(record=True, width=200)
    with pytest.raises(MechvizError, match="re-trace with this version"):
        mh.print_heads(old, console, criterion="direct")
    assert console.export_text() == ""  # refused before printing anything
    mh.print_heads(old, console)
    text = console.export_text()
    assert "predates direct effects" in text and "re-trace with this version" in text
    assert "previous: mean weight on the previous token" in text
    assert "peaked:" in text and "against:" not in text
    assert "from-last:" in text and "4 tokens or more" in text  # 'The cat sat': 3 tokens


def test_print_heads_prints_every_criterion(shaped: Trace) -> None:
    console = Console(record=True, width=200)
    mh.print_heads(shaped, console, n=3)
    text = console.export_text()
    for name in mh.CRITERIA:
        assert f"{name}: " in text
    assert text.count("looks at, from") == len(mh.CRITERIA)
    assert "+6.000" in text  # the signed direct effect of (2, 3)
    one = Console(record=True, width=200)
    mh.print_heads(shaped, one, criterion="from-last", n=2)
    text = one.export_text()
    assert "from-last:" in text and "direct:" not in text
    assert "(pos 5)" in text and "0.80" in text


def test_user_text_is_never_markup() -> None:
    loaded = wrap_model(build_tiny_model("llama"), CharTokenizer(), "tiny-[b]llama")
    trace = trace_prompt(loaded, "[b] x [/b]", TraceOptions(top_k=2))
    console = Console(record=True, width=200)
    mh.print_heads(trace, console, n=40)
    text = console.export_text()
    assert "tiny-[b]llama" in text and "'[b] x [/b]'" in text
    assert "looks at, from ]" in text  # the last token, as typed


def test_heads_module_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['transformers'] = None\n"
        "import mechviz.analyses.heads\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_head_effects_section_is_a_frozen_dataclass(shaped: Trace) -> None:
    assert isinstance(shaped.heads, HeadEffects)
    with pytest.raises(dataclasses.FrozenInstanceError):
        shaped.heads.answer = 3  # type: ignore[misc]

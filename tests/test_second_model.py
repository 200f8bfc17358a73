"""Layouts that hold on a second real model: Gemma 3 270M's trace (issue 21, item 6).

``tests/data/gemma3_capital_of_france.json`` is a real trace of Gemma 3 270M
(Q4_K_M GGUF from PyPI, ``mechviz trace "The capital of France is" --model
gemma-3-270m-q4_k_m.gguf``): six tokens with ``<bos>``, 18 layers of 4 heads,
a 262,144-token vocabulary and residual norms near 36,000, where the default
model has 30 layers of 9 heads and norms under 700.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_publishable import check_legible, run_scene

from mechviz.tracing.io import load_trace
from mechviz.visual import settings as scene_settings
from mechviz.visual.settings import example_trace

ROOT = Path(__file__).resolve().parents[1]
GEMMA = ROOT / "tests" / "data" / "gemma3_capital_of_france.json"
CORE = ["Embedding", "ResidualFlow", "Attention", "Unembedding"]

pytestmark = pytest.mark.slow


def test_the_gemma_trace_is_what_it_says() -> None:
    trace = load_trace(GEMMA)
    assert trace.model.architecture == "gemma3_text" and trace.model.d_vocab == 262_144
    assert (trace.model.n_layers, trace.model.n_heads) == (18, 4)
    assert trace.tokens.text[0] == "<bos>"
    assert float(trace.resid.norm.max()) > 10_000


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
@pytest.mark.parametrize("name", CORE)
def test_core_scenes_are_legible_on_gemma(name: str, aspect: str, tmp_path: Path) -> None:
    check_legible(run_scene(name, tmp_path, trace=GEMMA, aspect=aspect))


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
@pytest.mark.parametrize("trace", [GEMMA, None], ids=["gemma", "smollm2"])
def test_residual_streams_keep_their_height(
    aspect: str, trace: Path | None, tmp_path: Path
) -> None:
    # The example: at 1:1 Gemma's six streams collapsed to a 5 px line.
    scene = run_scene("ResidualFlow", tmp_path, trace=trace or example_trace(), aspect=aspect)
    x0, x1, y0, y1 = scene.streams.box
    assert y1 - y0 >= 1.25, (aspect, y1 - y0)  # 16% of the shorter side at least
    # The counters' widest value (a norm of 35,988 on Gemma) stays in the frame.
    right = max(v.get_right()[0] for v in scene.readout.counter_values)
    assert right <= scene.frame.x1 - 0.1

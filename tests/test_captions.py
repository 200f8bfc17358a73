"""A caption agrees with the picture beside it (issue 21, item 4).

Captions are computed from the same data as the table they describe; each
test holds the words against what the table's cells show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_publishable import run_scene

from mechviz.visual.ablation import parting_words

pytestmark = pytest.mark.slow


def test_parting_words_say_exactly_which_layers_differ() -> None:
    n = 31  # the embedding and 30 layers
    assert parting_words([], n) == "the same at every layer"
    assert parting_words(list(range(24, n)), n) == (
        "the same up to layer 22, different from layer 23 on"
    )
    # The example: only layers 25 and 28 differ; "from layer 23 on" was false.
    assert parting_words([26, 29], n) == "different at layers 25 and 28, the same at the others"
    assert parting_words([24, 25, 26, 29], n) == (
        "different at layers 23–25 and 28, the same at the others"
    )
    assert (
        parting_words([0, 5], n) == "different at the embedding and layer 4, the same at the others"
    )
    assert parting_words(list(range(n)), n) == "different from the embedding on"


def says_row_differs(words: str, row: int, n: int) -> bool:
    """What ``words`` (parting_words's) claim about lens row ``row``."""
    if words == "the same at every layer":
        return False
    if words.endswith(" on"):
        first = words.split("different from ")[1].removesuffix(" on")
        start = 0 if first == "the embedding" else int(first.split()[-1]) + 1
        return row >= start
    listed = words.removeprefix("different at ").split(", the same")[0]
    rows: set[int] = set()
    for part in listed.replace(" and ", ", ").split(", "):
        part = part.removeprefix("layers ").removeprefix("layer ")
        if part == "the embedding":
            rows.add(0)
        elif "–" in part:
            a, b = part.split("–")
            rows |= {r + 1 for r in range(int(a), int(b) + 1)}
        else:
            rows.add(int(part) + 1)
    return row in rows


@pytest.mark.parametrize("name", ["Compare", "Ablation"])
def test_lens_caption_agrees_with_the_table(name: str, tmp_path: Path) -> None:
    scene = run_scene(name, tmp_path, beats=("lens",))
    table = scene.table
    caption = [c.text for c in scene.cues if c.beat == "lens"][-1]
    words = caption.split("last position: top-1 ")[1].removesuffix(".")
    n = table.first.lens_ids.shape[0]
    checked = 0
    for i, row in enumerate(table.lens_rows):
        a, b = (cell[1].original_text for cell in table.cells[i])
        drawn_differ = a != b
        assert says_row_differs(words, row, n) == drawn_differ, (row, a, b, words)
        checked += 1
    assert checked >= 5


def test_outsized_stream_is_said() -> None:
    """Issue 21: the first token's stream read as empty for layers 0-10 and nothing said why."""
    from mechviz.tracing.io import load_trace
    from mechviz.visual.residual import outsized_streams, stream_scale
    from mechviz.visual.settings import example_trace

    trace = load_trace(example_trace())
    P = trace.n_positions
    flagged = outsized_streams(trace, range(P))
    assert [p for p, _ in flagged] == [0]  # the attention sink, and only it
    others = sorted(stream_scale(trace, p) for p in range(1, P))
    assert flagged[0][1] == pytest.approx(stream_scale(trace, 0) / float(np.median(others)))
    assert outsized_streams(trace, range(1, P)) == []  # without it, no column stands out


def test_streams_caption_names_the_faint_column(tmp_path: Path) -> None:
    scene = run_scene("ResidualFlow", tmp_path, beats=("streams",))
    words = scene.cues[0].text
    assert "The's scale is 13× (faint early layers)" in words, words


@pytest.mark.parametrize("aspect", ["16:9", "1:1", "9:16"])
def test_rise_caption_counts_what_the_readout_shows(aspect: str, tmp_path: Path) -> None:
    """Issue 21: the p(answer) chart dropped silently at 16:9; 1:1 said 'top 4' beside 2 bars."""
    scene = run_scene("ResidualFlow", tmp_path, beats=("streams", "rise"), aspect=aspect)
    readout = scene.readout
    words = scene.cues[-1].text.replace("\u00a0", " ")  # "top 4" is kept on one line
    assert (
        f"top {len(readout.bars.rows)}," in words or f"top {len(readout.bars.rows)} next" in words
    )
    assert ("p by layer" in words) == readout.has_chart
    drawn = readout.chart is not None and readout.chart in readout.get_family()
    assert readout.has_chart == drawn
    if aspect == "16:9":
        assert readout.has_chart  # there is room beside the counters

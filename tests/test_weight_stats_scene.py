"""The WeightStats scene and its blocks: every number on screen is the trace's `weights`.

The scene reads ``trace.weights`` of the committed example trace (the default
model, SmolLM2-135M-Instruct): its last frame is checked against control data,
its text against the legibility rule at every aspect and in both themes, and
the curves, counts and tokens it draws against the trace.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from manim import tempconfig
from PIL import Image
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.model.tokens import drawable
from mechviz.rendering.scene import render_scene
from mechviz.scenes.weight_stats import WeightStats
from mechviz.tracing.io import load_trace
from mechviz.visual import settings as scene_settings
from mechviz.visual import style
from mechviz.visual.settings import SceneSettings, example_trace
from mechviz.visual.text import cap_share
from mechviz.visual.weights import (
    GAUSSIAN,
    HeadTokens,
    ParameterTally,
    RatioPanels,
    format_count,
    ratio_ticks,
    token_label,
)

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # an older trace: no `weights` section
ROOMS = {"16:9": (13.6, 5.4), "9:16": (7.4, 11.0), "1:1": (7.4, 4.9)}


@pytest.fixture(autouse=True)
def own_media(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Blocks built outside a render write their text SVGs here, not in the shared ./media.

    Concurrent test runs in one checkout race on ./media/texts: a reader can
    find a file another process has created but not yet written (or was
    stopped while writing), and Manim then fails to parse it.
    """
    with tempconfig({"media_dir": str(tmp_path / "media")}):
        yield


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    trace = load_trace(example_trace())
    assert trace.weights is not None, "the example trace has no `weights` section"
    return trace


def _corners(line) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The corners of a polyline made with ``set_points_as_corners``, ``[n, 3]``."""
    points = line.points
    return np.concatenate([points[::4], points[-1:]])


def check_charts(trace, panels: RatioPanels) -> None:  # type: ignore[no-untyped-def]
    w = trace.weights
    assert [c.name for c in panels.charts] == w.ratio_names == ["W_Q", "W_K", "W_V", "W_O"]
    for m, chart in enumerate(panels.charts):
        ys = _corners(chart.along_line)[:, 1]
        drawn = np.array([chart.value_at(y) for y in ys])
        np.testing.assert_allclose(drawn, w.ratio_model[:, m], atol=1e-6)
        xs = _corners(chart.along_line)[:, 0]
        np.testing.assert_allclose(xs, [chart.x_of(layer) for layer in range(trace.n_layers)])
        # The dashed curve's dashes lie on the polyline through the across-heads values.
        dash_y = np.concatenate([d.points[:, 1] for d in chart.across_line.submobjects])
        values = [chart.value_at(y) for y in dash_y]
        lo, hi = w.ratio_heads[:, m].min(), w.ratio_heads[:, m].max()
        assert lo - 1e-6 <= min(values) and max(values) <= hi + 1e-6
        ref = chart.reference.submobjects[0].points[0, 1]
        assert chart.value_at(ref) == pytest.approx(GAUSSIAN, abs=1e-9)
    low, high, ticks = ratio_ticks(np.concatenate([w.ratio_model, w.ratio_heads]))
    labels = [t.text for t in panels.charts[0].tick_labels]
    assert labels and all(float(t) in [round(v, 6) for v in ticks] for t in labels)
    assert low <= min(w.ratio_model.min(), GAUSSIAN) and high >= w.ratio_heads.max()


def check_tally(trace, tally: ParameterTally) -> None:  # type: ignore[no-untyped-def]
    w = trace.weights
    written = [t.text for t in tally.count_labels]
    assert written[:-1] == [format_count(c) for c in w.tally_counts]
    assert written[-1] == tally.total_label.text == f"{w.total:,}"
    parsed = [int(t.replace(",", "")) for t in written]
    assert sum(parsed[:-1]) == parsed[-1] == w.total  # the screen adds up
    widths = np.array([s.width for s in tally.segments])
    # A group too small to see keeps a sliver of 0.001 units (of a bar 7 to 10 wide).
    np.testing.assert_allclose(widths / widths.sum(), w.tally_counts / w.total, atol=3e-4)


def check_heads(trace, block: HeadTokens) -> None:  # type: ignore[no-untyped-def]
    w = trace.weights
    assert block.shown_heads == list(range(len(block.shown_heads))) and block.shown_heads
    for h in block.shown_heads:
        for letter, ids in (("Q", w.query_ids[h]), ("K", w.key_ids[h])):
            tiles = block.lines[(h, letter)]
            assert 1 <= len(tiles) <= len(ids)
            for tile, token in zip(tiles, ids):
                want = drawable(token_label(trace.token_text(int(token)))).replace(" ", "")
                got = tile.text
                assert got == want or (got.endswith("…") and want.startswith(got[:-1])), (
                    h,
                    letter,
                    got,
                    want,
                )
    n = len(block.shown_heads)
    assert f"of{w.query_ids.shape[0]}" in block.header.text  # Text.text drops spaces
    assert (f"heads0–{n - 1}" if n > 1 else "head0") in block.header.text


# --- the scene ---------------------------------------------------------------------------


def test_weight_stats_last_frame(tmp_path: Path) -> None:
    out = render_scene(
        WeightStats, SceneSettings(trace=example_trace()), "low", "png", tmp_path / "w.png"
    )
    frame = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.05, "the frame is almost empty"
    assert near(frame, dark.faint, 6).sum() > 3000  # the token tiles
    assert near(frame, dark.negative, 30).sum() > 50 and near(frame, dark.attention, 30).sum() > 50
    check_control("WeightStats", frame)


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_weight_stats_legible_at_every_aspect(aspect: str, tmp_path: Path) -> None:
    check_legible(run_scene(WeightStats, tmp_path, aspect=aspect))


def test_numbers_on_screen_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run_scene(WeightStats, tmp_path, aspect="9:16", theme="light")
    check_legible(scene)
    assert list(scene.beat_texts) == list(WeightStats.beats)
    check_charts(trace, scene.panels)
    check_tally(trace, scene.tally)
    check_heads(trace, scene.heads)
    w = trace.weights
    ratios, tally, heads = (cue.text for cue in scene.cues)
    both = np.stack([w.ratio_model, w.ratio_heads])
    assert f"{both.max():.2f}" in ratios and f"median {np.median(both):.2f}" in ratios
    k, layer, m = np.unravel_index(int(np.argmax(both)), both.shape)
    assert f"{w.ratio_names[m]}, layer {layer}" in ratios
    mlp = w.tally_counts[w.tally_names.index("MLP")] / w.total
    assert tally.startswith(f"{w.total:,} parameters: MLP {mlp:.0%}") and "tied" in tally
    q, key = (token_label(trace.token_text(int(ids[0, 0]))) for ids in (w.query_ids, w.key_ids))
    assert f"top query token “{q}”, top key token “{key}”" in heads
    assert "Each key list serves 3 heads" in heads  # SmolLM2: 9 heads, 3 KV heads


def test_trace_without_weights_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "w.png"
    with pytest.raises(MechvizError) as err:
        render_scene(WeightStats, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `weights` section" in message and "mechviz analyze TRACE --weights" in message
    assert "\n" not in message and message.count(". ") == 0
    assert not out.exists()


# --- the blocks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aspect", "theme"), [("16:9", "dark"), ("9:16", "light"), ("1:1", "dark")]
)
def test_blocks_fit_their_room(trace, aspect: str, theme: str) -> None:  # type: ignore[no-untyped-def]
    w, h = ROOMS[aspect]
    panels = RatioPanels.from_trace(trace, width=w, height=h, theme=theme)
    tally = ParameterTally.from_trace(trace, width=w, height=h, theme=theme)
    heads = HeadTokens.from_trace(trace, width=w, height=h, theme=theme)
    for block in (panels, tally, heads):
        assert block.width <= w + 1e-6 and block.height <= h + 1e-6, (type(block), aspect)
        for part in block.get_family():
            if hasattr(part, "_mv_font_size"):
                assert cap_share(part) >= style.MIN_SHARE - 1e-3, part.text
    check_charts(trace, panels)
    check_tally(trace, tally)
    check_heads(trace, heads)


def test_untied_tally_of_every_group_fits_a_tall_frame(trace) -> None:  # type: ignore[no-untyped-def]
    names = ["embedding W_E", "position embedding", "attention", "MLP", "norms"]
    names += ["unembedding W_U", "other"]
    counts = np.array([38_597_376, 786_432, 28_348_416, 56_669_184, 38_400, 38_597_376, 7])
    weights = dataclasses.replace(
        trace.weights, tally_names=names, tally_counts=counts, total=int(counts.sum())
    )
    untied = dataclasses.replace(trace, weights=weights)
    for w, h in (ROOMS["9:16"], ROOMS["16:9"]):
        tally = ParameterTally.from_trace(untied, width=w, height=h, theme="dark")
        assert tally.width <= w + 1e-6 and tally.height <= h + 1e-6
        check_tally(untied, tally)
        assert tally.share_labels[-2].text == "<0.1%"  # 7 parameters of 163 million


def test_bad_heads_are_refused(trace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MechvizError, match="Head 9 is out of range; layer 0 has heads 0 to 8"):
        HeadTokens.from_trace(trace, [0, 9], width=13.6, height=5.0)
    block = HeadTokens.from_trace(trace, [4], width=13.6, height=5.0)
    assert block.shown_heads == [4] and "head4" in block.header.text


def test_a_tiny_untied_model_draws_legibly(tmp_path: Path) -> None:
    """Another model: a tiny Mistral, untied, 3 layers, 4 heads in 2 KV groups."""
    from conftest import make_tiny

    from mechviz.analyses.weights import weight_stats
    from mechviz.tracing.record import with_sections

    tiny = make_tiny("mistral", full=False)
    trace = with_sections(tiny.trace, tiny.loaded, weights=weight_stats(tiny.loaded))
    scene = run_scene(WeightStats, tmp_path, trace=trace, aspect="16:9")
    check_legible(scene)
    check_charts(trace, scene.panels)
    check_tally(trace, scene.tally)
    check_heads(trace, scene.heads)
    assert "unembedding W_U" in trace.weights.tally_names and "tied" not in scene.cues[1].text
    assert "Each key list serves 2 heads" in scene.cues[2].text

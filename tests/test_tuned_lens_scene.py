"""The TunedLens scene and its blocks: both lenses on the same residuals, every number the trace's.

The trace is a tiny model's with a tuned lens nudged off the identity
(:mod:`learned_scene_trace`), so the tests never wait for training: its last
frame against control data, its text against the legibility rule at every
aspect and theme, the bars, ranks, table and curves against the trace's arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from learned_scene_trace import learned_trace
from manim import tempconfig
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.scenes.tuned_lens import TunedLens
from mechviz.visual import style
from mechviz.visual.learned import LensCurves, LensPair, tuned_reading
from mechviz.visual.settings import SceneSettings
from mechviz.visual.text import cap_share

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # no `tuned_lens` section

_SCENES: dict[tuple, TunedLens] = {}


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    return learned_trace()


def run(tmp_path: Path, **kw: object) -> TunedLens:
    """The scene run to its end (no frames drawn), once per settings."""
    key = tuple(sorted(kw.items()))
    if key not in _SCENES:
        _SCENES[key] = run_scene(TunedLens, tmp_path, trace=learned_trace(), **kw)
    return _SCENES[key]


def test_tuned_lens_last_frame(tmp_path: Path) -> None:
    scene = run(tmp_path, aspect="16:9", theme="dark")
    frame = np.asarray(scene.renderer.get_frame())[..., :3].astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.04, "the frame is almost empty"
    assert near(frame, dark.highlight, 30).sum() > 300  # the tuned lens's curve
    check_control("TunedLens", frame)


@pytest.mark.parametrize(
    ("aspect", "theme"),
    [("16:9", "dark"), ("1:1", "dark"), ("4:5", "light"), ("9:16", "dark"), ("9:16", "light")],
)
def test_tuned_lens_legible(aspect: str, theme: str, tmp_path: Path) -> None:
    scene = run(tmp_path, aspect=aspect, theme=theme)
    check_legible(scene)
    assert list(scene.beat_texts) == list(TunedLens.beats)


def test_numbers_on_screen_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, aspect="9:16", theme="dark")
    t, lens = trace.tuned_lens, trace.lens
    last = t.top_ids.shape[0] - 1
    # The pair ends on the last row: both lenses read the model's output there.
    pair = scene.pair
    assert pair.row == last
    k = pair.k
    assert np.allclose(pair.bars[0].values, lens.top_probs[last, -1, :k])
    assert np.allclose(pair.bars[1].values, t.top_probs[last, -1, :k])
    assert np.allclose(pair.bars[0].values, pair.bars[1].values, atol=1e-5)
    assert pair.bars[1].texts == [scene.vocab_text(i) for i in t.top_ids[last, -1, :k]]
    assert [r.value for r in pair.ranks] == [
        int(lens.final_token_rank[last, -1]) + 1,
        int(t.final_token_rank[last, -1]) + 1,
    ]
    # What the tuned lens is, on screen, with the trace's own figures.
    texts = " ".join(c.text for c in scene.cues)
    assert "h + Ah + b" in texts and f"{t.trained_tokens:,} tokens of fortunes" in texts
    assert "the same bars" in scene.cues[2].text
    # The table: each row's top-1 in both lenses.
    table = scene.table
    for i, row in enumerate(table.lens_rows):
        first, second = table.cells[i]
        assert first.token == int(lens.top_ids[row, -1, 0])
        assert second.token == int(t.top_ids[row, -1, 0])
        assert second.prob == pytest.approx(float(t.top_probs[row, -1, 0]))
    # The curves: one point per lens row, at the held-out figures.
    curves = scene.curves
    assert f"({t.eval_bpb_model:.2f})" in curves.legend[2][1].text
    for line, values in (
        (curves.logit_line, t.eval_bpb_logit),
        (curves.tuned_line, t.eval_bpb_tuned),
    ):
        corners = _corners(line)
        assert len(corners) == len(values)
        for (_x, y), v in zip(corners, values):
            want = curves._point(0, float(v))[1]
            assert y == pytest.approx(want, abs=1e-6)
    assert f"({t.eval_tokens:,} tokens)" in scene.cues[-1].text


def _corners(line) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """The polyline's corners (each segment's start, and the last end)."""
    pts = line.points
    starts = pts[::4]
    return [(float(p[0]), float(p[1])) for p in starts] + [(float(pts[-1][0]), float(pts[-1][1]))]


def test_tuned_reading_is_the_trace_s(trace) -> None:  # type: ignore[no-untyped-def]
    reading = tuned_reading(trace)
    np.testing.assert_array_equal(reading.lens_ids, trace.tuned_lens.top_ids[:, -1])
    np.testing.assert_array_equal(reading.output_ids, trace.output.top_ids[-1])


def test_trace_without_tuned_lens_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    with pytest.raises(MechvizError) as err:
        render_scene(TunedLens, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `tuned_lens` section" in message and "\n" not in message
    assert not out.exists()


@pytest.fixture
def own_media(tmp_path: Path):  # type: ignore[no-untyped-def]
    with tempconfig({"media_dir": str(tmp_path)}):
        yield


def test_blocks_fit_their_room(trace, own_media) -> None:  # type: ignore[no-untyped-def]
    for (w, h), theme in zip([(13.4, 5.4), (7.4, 11.0), (7.4, 4.6)], ["dark", "light", "dark"]):
        for block in (
            LensPair.from_trace(trace, width=w, height=h, theme=theme),
            LensCurves.from_trace(trace, width=w, height=h, theme=theme),
        ):
            name = type(block).__name__
            assert block.width <= w + 1e-6 and block.height <= h + 1e-6, (name, w, h)
            texts = [m for m in block.get_family() if hasattr(m, "_mv_font_size")]
            assert texts and all(cap_share(x) >= style.MIN_SHARE - 1e-3 for x in texts), name

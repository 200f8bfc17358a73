"""What every frame says is true at that instant, in the middle of animations too (issue 21).

The scenes are rendered for real (a small MP4 at 15 fps) with a hook after
each frame is drawn; the hook reads what the readouts on screen say (heading,
bar tokens, bar values, counters, the chart's last point) from the very
mobjects drawn into that frame, and the test holds them against the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from learned_scene_trace import learned_trace
from manim import tempconfig

from mechviz.io import load_trace
from mechviz.scenes.residual_flow import ResidualFlow
from mechviz.scenes.tuned_lens import TunedLens
from mechviz.tokens import drawable, shown
from mechviz.visual import settings as scene_settings
from mechviz.visual.readout import lens_steps, step_name
from mechviz.visual.settings import SceneSettings, example_trace, pixel_size

pytestmark = pytest.mark.slow


def render_frames(
    cls: type, tmp_path: Path, look: Callable[[Any], Any], **kw: object
) -> tuple[Any, list[Any]]:
    """Render ``cls`` to a small MP4; ``look(scene)`` after every frame drawn."""
    kw.setdefault("trace", example_trace())
    settings = SceneSettings(**kw)  # type: ignore[arg-type]
    w, h = pixel_size(settings.aspect, 240)
    seen: list[Any] = []

    class Watched(cls):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            super().setup()
            inner = self.renderer.render

            def render(scene: Any, time: float, moving: Any = None) -> None:
                inner(scene, time, moving)
                seen.append(look(self))

            self.renderer.render = render

    Watched.__name__ = cls.__name__
    config = {
        "pixel_width": w,
        "pixel_height": h,
        "frame_rate": 15,
        "media_dir": str(tmp_path),
        "disable_caching": True,
        "verbosity": "WARNING",
        "progress_bar": "none",
        "output_file": cls.__name__,
    }
    with tempconfig(config), scene_settings.use(settings):
        scene = Watched()
        scene.render()
    return scene, seen


def bar_rows(bars: Any) -> list[tuple[str, str]]:
    """What each row of a ProbBars says: its token and its value."""
    return [(row[0].original_text, row[2].text) for row in bars.rows]


# --- ResidualFlow: the readout is one state in every frame ---------------------------------


def readout_state(scene: Any) -> tuple | None:
    readout = getattr(scene, "readout", None)
    if readout is None or readout not in scene.mobjects:
        return None
    chart = readout.chart_line.get_points()[-1][:2].round(4) if readout.has_chart else None
    return (
        readout.heading.text,
        bar_rows(readout.bars),
        [v.text for v in readout.counter_values],
        None if chart is None else tuple(chart),
    )


@pytest.mark.parametrize("aspect", ["16:9", "9:16"])
def test_residual_flow_readout_agrees_with_its_heading_in_every_frame(
    aspect: str, tmp_path: Path
) -> None:
    trace = load_trace(example_trace("ResidualFlow"))
    scene, seen = render_frames(ResidualFlow, tmp_path, readout_state, aspect=aspect)
    readout = scene.readout
    steps = {step_name(layer, mid, readout.half): (layer, mid) for layer, mid in lens_steps(trace)}
    frames = [s for s in seen if s is not None]
    assert len(frames) > 60
    runs: list[list] = []
    for heading, rows, counters, chart in frames:
        assert heading in steps, heading
        layer, mid = steps[heading]
        texts, probs, _ = readout.top(layer, len(rows), mid)
        want = [(drawable(shown(t)), f"{p:.2f}") for t, p in zip(texts, probs)]
        assert [r[1] for r in rows] == [w[1] for w in want], (heading, rows)
        for (got, _), (expected, _) in zip(rows, want):
            assert got == expected or (got.endswith("…") and expected.startswith(got[:-1])), (
                heading,
                rows,
            )
        rank, bits, norm = readout.counter_values_at(layer, mid)
        assert counters == [f"{rank:,}", f"{bits:.1f}", f"{norm:.0f}"][: len(counters)], heading
        if chart is not None:
            point = readout.chart_point(layer, mid)[:2].round(4)
            assert chart == tuple(point), heading
        if runs and runs[-1][0] == heading:
            runs[-1][1] += 1
        else:
            runs.append([heading, 1])
    # No strobing: every reading of the rise stays on screen for two frames or more
    # (the last one is held to the end).
    assert min(n for _, n in runs) >= 2, [r for r in runs if r[1] < 2][:5]
    # The readout reaches the answer and shows every slow layer's two halves.
    assert runs[-1][0] == step_name(trace.n_layers - 1, False, readout.half)
    for layer in scene.slow_layers_of():
        assert step_name(layer, True, True) in {h for h, _ in runs}, layer


def test_residual_flow_says_which_layers_go_whole(tmp_path: Path) -> None:
    scene, _ = render_frames(ResidualFlow, tmp_path, lambda s: None, beats=("streams", "rise"))
    slow = scene.slow_layers_of()
    fast = [layer for layer in range(scene.trace.n_layers) if layer not in slow]
    rise = [c.text for c in scene.cues if c.beat == "rise"][0]
    assert fast and " whole)" in rise
    first, last = str(fast[0]), str(fast[-1])
    assert first in rise and last in rise


# --- TunedLens: the lens pair is one state in every frame ----------------------------------


def pair_state(scene: Any) -> tuple | None:
    pair = getattr(scene, "pair", None)
    if pair is None or pair not in scene.mobjects:
        return None
    ranks = [r[1].text if len(r) > 1 else "" for r in pair.ranks]
    return pair.heading.text, [bar_rows(b) for b in pair.bars], ranks


def test_tuned_lens_pair_agrees_with_its_heading_in_every_frame(tmp_path: Path) -> None:
    trace = learned_trace()
    scene, seen = render_frames(TunedLens, tmp_path, pair_state, trace=trace, beats=("step",))
    frames = [s for s in seen if s is not None]
    assert len(frames) > 20
    pair = scene.pair
    for heading, bars, _ in frames:
        row = 0 if heading == "embedding" else int(heading.split()[-1]) + 1
        for tuned, rows in zip((False, True), bars):
            texts, probs = pair.top(tuned, row)
            assert [r[1] for r in rows] == [f"{p:.2f}" for p in probs[: len(rows)]], heading
            names = [drawable(shown(t)) for t in texts[: len(rows)]]
            for (got, _), want in zip(rows, names):
                assert got == want or got.endswith("…"), (heading, got, want)
    np.testing.assert_equal(len({f[0] for f in frames}) > 2, True)

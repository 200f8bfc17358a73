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
from manim import Text, tempconfig

from mechviz.model.tokens import drawable, shown
from mechviz.rendering.scene import scene_class
from mechviz.scenes import SCENES
from mechviz.scenes.residual_flow import ResidualFlow
from mechviz.scenes.tuned_lens import TunedLens
from mechviz.tracing.io import load_trace
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


# --- Every scene: text legible, inside the frame and apart in every sampled frame -------


def opaque_texts(scene: Any) -> dict[int, tuple[str, float, float, float, float]]:
    """Texts on screen now that a viewer reads as solid (fill opacity >= 0.9), with bounds.

    Keyed by the text's identity, so a later frame can tell which texts moved.
    A text fading in or out (a cross-fade) may pass over another; once it is
    solid it must stand apart. Texts under an opaque veil (a swap) count as seen.
    """
    out: dict[int, tuple[str, float, float, float, float]] = {}
    for mob in scene.mobjects:
        for part in mob.get_family():
            is_text = isinstance(part, Text) or hasattr(part, "_mv_font_size")
            if not is_text or id(part) in out:
                continue
            glyphs = part.family_members_with_points()
            if not glyphs or max(g.get_fill_opacity() for g in glyphs) < 0.9:
                continue
            left, right = part.get_left()[0], part.get_right()[0]
            out[id(part)] = (part.text, left, right, part.get_bottom()[1], part.get_top()[1])
    return out


def stale_parts(scene: Any) -> list[str]:
    """Parts on screen that the frame would not draw: rebuilt after the play listed its parts.

    Manim draws a play's frames from the moving and still parts it listed when
    the play began; a part made mid-play (a readout's new value) must be listed
    too, or the frame shows the old one beside a new bar.
    """
    from manim.utils.family import extract_mobject_family_members

    listed = {id(m) for m in [*scene.moving_mobjects, *scene.static_mobjects]}
    on_screen = extract_mobject_family_members(scene.mobjects, only_those_with_points=True)
    missing = [m for m in on_screen if id(m) not in listed]
    if not missing:
        return []
    return [f"{len(missing)} parts on screen not drawn (the play listed their old versions)"]


def frame_faults(scene: Any, texts: dict, before: dict) -> list[str]:
    """What is wrong in this frame: a text outside the frame, or two texts at rest overlapping.

    A text at rest has the bounds it had in the frame ``before``; a text in
    motion (sliding into a cell, growing) may pass over others on its way.
    """
    w, h = scene.frame.width / 2 + 0.01, scene.frame.height / 2 + 0.01
    faults = []
    for text, x0, x1, y0, y1 in texts.values():
        if x0 < -w or x1 > w or y0 < -h or y1 > h:
            faults.append(f"{text!r} leaves the frame")
    still = [
        t
        for key, t in texts.items()
        if key in before and max(abs(u - v) for u, v in zip(t[1:], before[key][1:])) < 1e-4
    ]
    for i, a in enumerate(still):
        for b in still[i + 1 :]:
            dx = min(a[2], b[2]) - max(a[1], b[1])
            dy = min(a[4], b[4]) - max(a[3], b[3])
            same = a[0] == b[0] and max(abs(u - v) for u, v in zip(a[1:], b[1:])) < 0.05
            if dx > 0.02 and dy > 0.02 and not same:  # a copy exactly on itself is unseen
                faults.append(f"{a[0]!r} overlaps {b[0]!r}")
    return faults


def sample_every_frame(cls: type, tmp_path: Path, every: int = 2, **kw: object) -> tuple:
    """Run ``cls`` frame by frame without drawing; the faults of every ``every``-th frame.

    Returns ``(frames played and checked, faults with where they happened, the scene)``.
    """
    from mechviz.visual import settings as ss

    kw.setdefault("trace", example_trace())
    settings = SceneSettings(**kw)  # type: ignore[arg-type]
    w, h = pixel_size(settings.aspect, 240)
    faults: dict[str, int] = {}
    count = [0, 0]  # frames played, frames checked
    last: list[dict] = [{}]  # the texts of the frame checked before

    class Sampled(cls):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            super().setup()

            def render(scene: Any, time: float, moving: Any = None) -> None:
                count[0] += 1
                if count[0] % every:
                    return
                count[1] += 1
                where = f"{self._beat} t={self.renderer.time:.2f}"
                for fault in stale_parts(self):
                    faults.setdefault(fault, []).append(where)
                texts = opaque_texts(self)
                for fault in frame_faults(self, texts, last[0]):
                    faults.setdefault(fault, []).append(where)
                last[0] = texts

            self.renderer.render = render  # no pixels: the mobjects are what is checked
            self.renderer.scene_finished = lambda scene: None  # and no movie to write

    Sampled.__name__ = cls.__name__
    config = {
        "pixel_width": w,
        "pixel_height": h,
        "frame_rate": 10,
        "media_dir": str(tmp_path),
        "disable_caching": True,
        "write_to_movie": False,
        "save_last_frame": False,
        "verbosity": "WARNING",
        "progress_bar": "none",
    }
    with tempconfig(config), ss.use(settings):
        scene = Sampled()
        scene.render()
    return count, faults, scene


SAMPLED = [n for n in SCENES if n != "Story"]  # Story chains the others


@pytest.mark.parametrize("aspect", ["16:9", "1:1", "9:16"])
@pytest.mark.parametrize("name", SAMPLED)
def test_every_sampled_frame_keeps_its_text_apart_and_inside(
    name: str, aspect: str, tmp_path: Path
) -> None:
    """Issue 21: overlaps and clipping in the middle of animations, not only at beat ends."""
    count, faults, scene = sample_every_frame(scene_class(name), tmp_path, aspect=aspect)
    check_reading_time(scene)
    assert count[1] >= 20, count
    seen = [f"{fault} ({len(at)} frames, first at {at[0]})" for fault, at in faults.items()]
    assert not seen, f"{count[1]} frames checked; " + "; ".join(seen[:6])


GEMMA = Path(__file__).parent / "data" / "gemma3_capital_of_france.json"


@pytest.mark.parametrize("aspect", ["16:9", "1:1", "9:16"])
@pytest.mark.parametrize("name", ["Embedding", "ResidualFlow", "Attention", "Unembedding"])
def test_every_sampled_frame_holds_on_a_second_model(
    name: str, aspect: str, tmp_path: Path
) -> None:
    """The same in every sampled frame with Gemma 3 270M's trace (norms of 36,000, 18 layers)."""
    count, faults, scene = sample_every_frame(
        scene_class(name), tmp_path, trace=GEMMA, aspect=aspect
    )
    assert count[1] >= 20, count
    seen = [f"{fault} ({len(at)} frames, first at {at[0]})" for fault, at in faults.items()]
    assert not seen, f"{count[1]} frames checked; " + "; ".join(seen[:6])
    check_reading_time(scene)


def check_reading_time(scene: Any) -> None:
    """Issue 23: every caption stays up long enough to read at 17 characters a second."""
    from mechviz.visual.style import READING_CPS

    assert scene.cues
    for cue in scene.cues:
        shown_for = cue.end - cue.start
        assert shown_for + 1e-6 >= len(cue.text) / READING_CPS, (
            f"{len(cue.text)} characters for {shown_for:.2f} s: {cue.text!r}"
        )

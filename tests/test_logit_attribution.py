"""The LogitAttribution scene and its blocks: every bar, label and sum is the trace's.

The scene reads ``trace.attribution`` and ``trace.lens_mid`` of the committed
example trace (the default model on "The capital of France is", versus
" London"). Bars are measured against the axis numbers drawn under them, so a
bar drawn at the wrong length or place fails; the sum identity on screen is
checked against the recorded logit, the lens readouts against ``lens_mid`` and
``lens``, the named heads against ``heads``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from manim import tempconfig
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.scenes.logit_attribution import LogitAttribution
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.attribution import (
    LensTrack,
    LogitWaterfall,
    PartLegend,
    TopHeads,
    part_names,
    spread,
)
from mechviz.visual.settings import SceneSettings, example_trace
from mechviz.visual.text import cap_share

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # schema 3: no `attribution` section
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_SCENES: dict[tuple, LogitAttribution] = {}


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    trace = load_trace(example_trace())
    assert trace.attribution is not None and trace.lens_mid is not None
    return trace


def scene_at(tmp_path: Path, aspect: str = "16:9", theme: str = "dark", **kw: object):  # type: ignore[no-untyped-def]
    """The scene run to its end (no frames drawn), once per settings in this module."""
    key = (aspect, theme, tuple(sorted(kw.items())))
    if key not in _SCENES:
        _SCENES[key] = run_scene(LogitAttribution, tmp_path, aspect=aspect, theme=theme, **kw)
    return _SCENES[key]


def numbers(text: str) -> list[float]:
    """The numbers in a drawn text (``Text.text`` drops spaces: "sumofparts17.37=logit17.37")."""
    text = text.replace("−", "-").replace("±", "").replace(",", "")
    return [float(n) for n in NUMBER.findall(text)]


def axis_scale(fall: LogitWaterfall) -> tuple[float, float]:
    """Scene units per logit and the x of logit 0, from two tick numbers drawn under the chart."""
    ticks = [(float(t.text), t.get_center()[0]) for t in fall.axis]
    assert len(ticks) >= 2, "fewer than two numbers on the axis"
    (v0, x0), (v1, x1) = ticks[0], ticks[-1]
    scale = (x1 - x0) / (v1 - v0)
    return scale, x0 - v0 * scale


def check_waterfall(fall: LogitWaterfall, parts: np.ndarray, bias: float, logit: float) -> None:
    """Every bar spans the running sum before and after its part, on the drawn axis."""
    values = np.append(np.asarray(parts, dtype=np.float64), bias)
    running = np.concatenate([[0.0], np.cumsum(values)])
    scale, zero = axis_scale(fall)
    assert len(fall.bars) == len(values) + 1
    for i, bar in enumerate(fall.bars):
        a, b = (running[i], running[i + 1]) if i < len(values) else (0.0, running[-1])
        lo, hi = sorted((zero + a * scale, zero + b * scale))
        if hi - lo > 0.03:  # wider than the sliver a tiny part keeps
            assert bar.get_left()[0] == pytest.approx(lo, abs=2e-3), i
            assert bar.get_right()[0] == pytest.approx(hi, abs=2e-3), i
        else:
            assert bar.get_left()[0] <= hi + 2e-3 and bar.get_right()[0] >= lo - 2e-3, i
    # Rows rise: the embedding at the bottom, the total on top.
    ys = [bar.get_center()[1] for bar in fall.bars]
    assert ys == sorted(ys)
    # The named parts are the largest, each label says its recorded value, its leader ends at it.
    names = part_names((len(parts) - 1) // 2)
    by_size = [int(i) for i in np.argsort(-np.abs(parts[1:]), kind="stable") + 1]
    named = []
    for text, leader in zip(fall.labels, fall.leaders):
        row = text.row
        assert leader[0].get_start()[1] == pytest.approx(fall.bars[row].get_center()[1], abs=1e-6)
        assert leader[1].get_end()[1] == pytest.approx(text.get_center()[1], abs=0.2)
        if row == len(values):  # the total: the recorded logit
            assert numbers(text.text) == [pytest.approx(round(logit, 2))]
            continue
        name = "bias" if row == len(parts) else names[row]
        assert text.text.startswith(name.replace(" ", "")), (text.text, name)
        assert numbers(text.text)[-1] == pytest.approx(round(float(values[row]), 2), abs=1e-9)
        if 0 < row < len(parts):
            named.append(row)
    assert sorted(named) == sorted(by_size[: len(named)]) and len(named) >= 3
    # The note counts the unnamed parts and bounds them honestly.
    unnamed = [i for i in range(1, len(parts)) if i not in named]
    got = numbers(fall.note.text)
    assert got[0] == len(unnamed)
    assert got[-1] == pytest.approx(round(max(abs(float(parts[i])) for i in unnamed), 2))


def check_sum(fall: LogitWaterfall, parts: np.ndarray, bias: float, logit: float) -> None:
    """The sum line says sum of the bars = the recorded logit, with both numbers."""
    shown_sum, shown_logit = numbers(fall.sum_text.text)[-2:]
    assert shown_sum == pytest.approx(round(float(np.sum(parts) + bias), 2), abs=1e-9)
    assert shown_logit == pytest.approx(round(logit, 2), abs=1e-9)
    assert shown_sum == shown_logit  # the identity holds to the digits drawn
    assert fall.sum_text.text.startswith("sum")


# --- the scene ---------------------------------------------------------------------------


def test_last_frame(tmp_path: Path) -> None:
    scene = scene_at(tmp_path)  # the legibility test's 16:9 dark run: its last frame as drawn
    frame = np.asarray(scene.renderer.get_frame())[..., :3].astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.04, "the frame is almost empty"
    # The last beat names the heads: red bars raise the logit, blue ones lower it.
    assert near(frame, dark.positive, 20).sum() > 1500
    assert near(frame, dark.negative, 20).sum() > 800
    check_control("LogitAttribution", frame)


@pytest.mark.parametrize(
    ("aspect", "theme"),
    [("16:9", "dark"), ("1:1", "dark"), ("4:5", "dark"), ("9:16", "dark")]
    + [("16:9", "light"), ("9:16", "light")],
)
def test_legible(aspect: str, theme: str, tmp_path: Path) -> None:
    scene = scene_at(tmp_path, aspect, theme)
    check_legible(scene)
    assert list(scene.beat_texts) == list(LogitAttribution.beats)


def test_bars_labels_and_sum_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = scene_at(tmp_path, "9:16", "light")
    a, p = trace.attribution, trace.n_positions - 1
    assert scene.position == p
    for fall, t in ((scene.fall, 0), (scene.versus_fall, 1)):
        check_waterfall(fall, a.parts[t, p], float(a.bias[t, p]), float(a.logit[t, p]))
        check_sum(fall, a.parts[t, p], float(a.bias[t, p]), float(a.logit[t, p]))
    # The largest part overall is named (L29 MLP in this trace), at least 8 on a tall frame.
    largest = int(np.argmax(np.abs(a.parts[0, p])))
    assert largest in [text.row for text in scene.fall.labels]
    assert scene.fall.n_named >= 8
    assert "London" in scene.versus_fall.sum_text.text and "Paris" in scene.fall.sum_text.text
    said = next(c.text for c in scene.cues if c.beat == "versus")
    assert "London" in said and f"{a.logit[1, p]:.2f}" in said


def test_stack_reads_the_lens_at_every_half_step(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = scene_at(tmp_path, "9:16", "light")
    a, p, L = trace.attribution, trace.n_positions - 1, trace.n_layers
    # Row 0 is the embedding (lens 'embed'); 2l + 1 after attention (lens_mid l); 2l + 2 after
    # the MLP (lens l + 1, '{l}_post').
    rank = [trace.lens.final_token_rank[0, p]]
    prob = [trace.lens.final_token_prob[0, p]]
    for layer in range(L):
        rank += [
            trace.lens_mid.final_token_rank[layer, p],
            trace.lens.final_token_rank[layer + 1, p],
        ]
        prob += [
            trace.lens_mid.final_token_prob[layer, p],
            trace.lens.final_token_prob[layer + 1, p],
        ]
    track = scene.track
    assert list(track.rank) == [int(r) for r in rank]
    xs = [dot.get_center()[0] for dot in track.dots]
    for i, j in zip(range(len(rank)), range(1, len(rank))):
        if rank[i] != rank[j]:
            assert (xs[i] < xs[j]) == (rank[i] > rank[j]), (i, j)  # a better rank is further right
    ys = [dot.get_center()[1] for dot in track.dots]
    assert ys == pytest.approx([scene.fall.bars[i].get_center()[1] for i in range(len(rank))])
    running = np.cumsum(a.parts[0, p])
    assert scene.stops[-1] == len(rank) - 1
    gain = -np.diff(np.log10(np.asarray(rank, dtype=np.float64) + 1))
    assert int(np.argmax(gain)) + 1 in scene.stops  # the half-step that moved the lens most
    assert len(scene.readouts) == len(scene.stops) >= 4
    for readout in scene.readouts:
        row = readout.row
        first, second = (numbers(t.text) for t in readout)
        assert first[-1] == pytest.approx(round(float(running[row]), 2), abs=1e-9)
        assert second[0] == int(rank[row]) + 1  # drawn from 1
        assert second[1] == round(100 * float(prob[row]))
    assert "own norm" in scene.cues[1].text  # the lens is labelled apart from the sum


def test_heads_are_the_largest_by_name(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = scene_at(tmp_path, "9:16", "light")
    heads = trace.attribution.heads[0, trace.n_positions - 1]
    H = heads.shape[1]
    top = np.argsort(-np.abs(heads).ravel(), kind="stable")[: len(scene.heads.names)]
    assert [t.text for t in scene.heads.name_labels] == [f"L{i // H}.H{i % H}" for i in top]
    assert scene.heads.names[0] == "L23.H4"  # this trace's largest head
    widths = np.array([bar.width for bar in scene.heads.bars])
    values = heads.ravel()[top]
    assert np.allclose(widths / widths[0], np.abs(values) / abs(values[0]), atol=0.01)
    for text, value in zip(scene.heads.numbers, values):
        assert numbers(text.text) == [pytest.approx(round(float(value), 2))]
    assert numbers(scene.heads.note.text)[-1] == pytest.approx(round(float(heads.sum()), 2))
    assert "L23.H4 +2.82" in scene.cues[-1].text


def test_another_position(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run_scene(LogitAttribution, tmp_path, query=1, beats=("waterfall",))
    a = trace.attribution
    assert scene.position == 1
    token = trace.token_text(int(a.token[1]))
    check_waterfall(scene.fall, a.parts[0, 1], float(a.bias[0, 1]), float(a.logit[0, 1]))
    check_sum(scene.fall, a.parts[0, 1], float(a.bias[0, 1]), float(a.logit[0, 1]))
    assert token.strip() in scene.cues[0].text
    assert float(a.logit[0, 1]) != pytest.approx(float(a.logit[0, -1]))
    check_legible(scene)


def test_without_versus_says_how_to_add_it(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = trace.attribution
    one = dataclasses.replace(
        a,
        versus=None,
        **{
            f: getattr(a, f)[:1] for f in ("parts", "heads", "attn_bias", "bias", "logit", "output")
        },
    )
    scene = run_scene(
        LogitAttribution,
        tmp_path,
        trace=dataclasses.replace(trace, attribution=one),
        aspect="4:5",
        beats=("versus", "heads"),
    )
    check_legible(scene)
    said = next(c.text for c in scene.cues if c.beat == "versus")
    assert "No versus token" in said and "--versus" in said
    assert not hasattr(scene, "versus_fall")
    on_screen = {id(m) for m in scene.mobjects}
    assert id(scene.heads) in on_screen
    assert not on_screen & {id(scene.fall), id(scene.track), id(scene.marker), id(scene.readout)}


def test_bad_position_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(MechvizError, match="Position 9 is out of range; the prompt has positions"):
        run_scene(LogitAttribution, tmp_path, query=9)


def test_trace_without_attribution_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    with pytest.raises(MechvizError) as err:
        render_scene(LogitAttribution, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `attribution` section" in message and "mechviz analyze" in message
    assert "\n" not in message and message.count(". ") == 0
    assert not out.exists()


# --- the blocks ----------------------------------------------------------------------


@pytest.fixture
def own_media(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Texts rendered into this test's own folder: other test runs share the default one."""
    with tempconfig({"media_dir": str(tmp_path)}):
        yield


def test_blocks_from_trace_fit_their_room(trace, own_media) -> None:  # type: ignore[no-untyped-def]
    a, p = trace.attribution, 2
    for w, h in ((13.6, 6.0), (7.4, 11.0)):
        fall = LogitWaterfall.from_trace(trace, p, width=w, height=h, theme="light")
        assert fall.width <= w + 1e-6 and fall.height <= h + 1e-6
        check_waterfall(fall, a.parts[0, p], float(a.bias[0, p]), float(a.logit[0, p]))
        for text in (*fall.labels, *fall.ticks, *fall.axis, fall.sum_text, fall.note):
            assert cap_share(text) >= style.MIN_SHARE - 1e-3
        track = LensTrack.from_trace(trace, p, width=w, height=h, theme="light")
        assert track.width <= 3.0 + 1e-6 and len(track.dots) == a.parts.shape[-1]
        heads = TopHeads.from_trace(trace, p, width=w, height=h, n=5)
        assert heads.width <= w + 1e-6 and heads.height <= h + 1e-6 and len(heads.bars) == 5
        legend = PartLegend.from_trace(trace, width=w)
        assert legend.width <= w + 1e-6
    with pytest.raises(MechvizError, match="Position -9 is out of range"):
        LogitWaterfall.from_trace(trace, -9)


def test_soft_cap_output_is_shown_beside_the_logit(own_media) -> None:  # type: ignore[no-untyped-def]
    parts = np.array([0.5, 1.0, 2.0, -0.5, 3.0])
    fall = LogitWaterfall(parts, 0.25, 6.25, 5.9, style.DARK, 13.6, 6.0)
    assert numbers(fall.sum_text.text) == [6.25, 6.25, 5.9]
    assert "softcap" in fall.sum_text.text


def test_spread_keeps_order_and_room() -> None:
    desired = np.array([0.0, 0.05, 0.1, 3.0, 2.95])
    ys = spread(desired, 0.4, -0.5, 3.2)
    order = np.argsort(desired, kind="stable")
    assert np.all(np.diff(ys[order]) >= 0.4 - 1e-9)
    assert ys.min() >= -0.5 + 0.2 - 1e-9 and ys.max() <= 3.2 - 0.2 + 1e-9

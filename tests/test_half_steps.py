"""ResidualFlow's readout by half-layers: after each attention (``lens_mid``), then each MLP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from manim import tempconfig

from mechviz.analyses.readouts import answer_row
from mechviz.errors import MechvizError
from mechviz.scenes.residual_flow import ResidualFlow
from mechviz.tracing.io import load_trace
from mechviz.tracing.schema import Trace
from mechviz.visual import settings as scene_settings
from mechviz.visual.readout import LensReadout, answer_step, lens_steps, step_name
from mechviz.visual.settings import SceneSettings, example_trace

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # schema 3: no lens_mid, on purpose
TRACE = load_trace(example_trace())
L = TRACE.n_layers
ROOM = (6.0, 6.5)


def run(animations: list) -> None:  # type: ignore[type-arg]
    for anim in animations:
        anim.begin()
        anim.finish()


def with_ranks(trace: Trace, mid_from: int, post_from: int, dips: tuple[int, ...] = ()) -> Trace:
    """The trace with the answer top-1 from ``{mid_from}_mid`` and lens row ``post_from`` on."""
    mid = trace.lens_mid.final_token_rank.copy()
    post = trace.lens.final_token_rank.copy()
    mid[:, -1], post[:, -1] = 7, 7
    mid[mid_from:, -1], post[post_from:, -1] = 0, 0
    for layer in dips:  # the answer drops out after this layer's attention
        mid[layer, -1] = 3
    return dataclasses.replace(
        trace,
        lens_mid=dataclasses.replace(trace.lens_mid, final_token_rank=mid),
        lens=dataclasses.replace(trace.lens, final_token_rank=post),
    )


def test_steps_interleave_attention_and_mlp() -> None:
    steps = lens_steps(TRACE)
    assert len(steps) == 2 * L + 1 and steps[:4] == [
        (None, False),
        (0, True),
        (0, False),
        (1, True),
    ]
    assert steps[-1] == (L - 1, False)
    assert len(lens_steps(TRACE, half=False)) == L + 1
    old = load_trace(MARY)
    assert old.lens_mid is None and len(lens_steps(old)) == old.n_layers + 1
    with pytest.raises(MechvizError, match="no lens_mid"):
        lens_steps(old, half=True)
    assert step_name(12, True) == "layer 12 · after attention"
    assert step_name(12, False) == "layer 12 · after MLP"
    assert step_name(12, False, half=False) == "after layer 12"


@pytest.mark.parametrize("layer", [0, L // 2, L - 1])
def test_readout_at_a_half_step_shows_lens_mid(layer: int) -> None:
    readout = LensReadout.from_trace(TRACE, width=ROOM[0], height=ROOM[1], theme="dark")
    assert readout.half and readout.has_chart
    run(readout.step_to(layer, mid=True))
    mid = TRACE.lens_mid
    k = len(readout.bars.rows)
    assert readout.bars.texts == [readout.view.vocab_text(i) for i in mid.top_ids[layer, -1, :k]]
    assert readout.bars.values == pytest.approx(mid.top_probs[layer, -1, :k])
    assert readout.bars.rows[0][2].text == f"{mid.top_probs[layer, -1, 0]:.2f}"
    rank = int(mid.final_token_rank[layer, -1]) + 1
    bits = float(mid.entropy[layer, -1]) / np.log(2)
    norm = float(TRACE.resid.norm[TRACE.resid.labels.index(f"{layer}_mid"), -1])
    assert [m.text for m in readout.counter_values] == [f"{rank:,}", f"{bits:.1f}", f"{norm:.0f}"]
    assert readout.heading.text == f"layer {layer} · after attention"
    # The chart's line ends half a layer before the layer's end, at lens_mid's p(answer).
    end, box = readout.chart_line.get_points()[-1], readout.chart_box
    assert end[0] == pytest.approx(box.get_left()[0] + box.width * (layer + 0.5) / L)
    p = mid.final_token_prob[layer, -1]
    assert end[1] == pytest.approx(box.get_bottom()[1] + box.height * p)
    # ...and it passed through every earlier half-step.
    assert len(readout.chart_line.get_anchors()) >= 2 * layer + 2
    # The layer's end reads lens row layer + 1 again.
    run(readout.step_to(layer))
    assert readout.heading.text == f"layer {layer} · after MLP"
    assert readout.bars.values == pytest.approx(TRACE.lens.top_probs[layer + 1, -1, :k])
    end = readout.chart_line.get_points()[-1]
    assert end[0] == pytest.approx(box.get_left()[0] + box.width * (layer + 1) / L)


def test_the_heading_fits_and_keeps_its_words() -> None:
    for width in (3.0, 5.0, 13.6):
        readout = LensReadout.from_trace(TRACE, width=width, height=6.5)
        run(readout.step_to(L - 1, mid=True))
        assert readout.heading.width <= width + 1e-6
        assert readout.heading.submobjects[1].text.startswith("·")


def test_first_top1_uses_the_finer_grain() -> None:
    # Real trace: recomputed by brute force over the interleaved steps.
    steps = lens_steps(TRACE)
    mid, post = TRACE.lens_mid.final_token_rank[:, -1], TRACE.lens.final_token_rank[:, -1]
    top1 = [
        (post[0] if layer is None else mid[layer] if m else post[layer + 1]) == 0
        for layer, m in steps
    ]
    first = min(i for i in range(len(steps)) if all(top1[i:]))
    assert answer_step(TRACE) == steps[first]
    # Attention of layer 20 made it top-1: the lens by whole layers says only "layer 20".
    early = with_ranks(TRACE, mid_from=20, post_from=21)
    assert answer_row(early) == 21 and answer_step(early) == (20, True)
    # Top-1 after layer 20 but lost again in layer 25's attention: the finer grain sees it.
    dip = with_ranks(TRACE, mid_from=20, post_from=21, dips=(25,))
    assert answer_row(dip) == 21 and answer_step(dip) == (25, False)
    assert answer_step(dip, half=False) == (20, False)


def test_old_trace_steps_by_whole_layers() -> None:
    old = load_trace(MARY)
    readout = LensReadout.from_trace(old, width=ROOM[0], height=ROOM[1])
    assert not readout.half
    run(readout.step_to(3))
    assert readout.heading.text == "after layer 3"
    assert readout.bars.values == pytest.approx(old.lens.top_probs[4, -1, : len(readout.bars.rows)])
    with pytest.raises(MechvizError, match="whole layers"):
        readout.step_to(3, mid=True)
    assert answer_step(old) == (None, False) or answer_step(old) == (answer_row(old) - 1, False)


class _Timed(ResidualFlow):
    """ResidualFlow that records what each beat plays (nothing rendered)."""

    def setup(self) -> None:
        super().setup()
        self.played: list[tuple[str, float]] = []

    def let_read(self) -> None:
        self._reading = True  # a hold for the caption: set by its length, not by the layers
        try:
            super().let_read()
        finally:
            self._reading = False

    def play(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if not getattr(self, "_reading", False):
            self.played.append((self._beat or "", float(kwargs.get("run_time", 1.0))))
        super().play(*args, **kwargs)


def timed(trace: Trace, tmp_path: Path) -> _Timed:
    config = {"dry_run": True, "media_dir": str(tmp_path), "verbosity": "WARNING"}
    config |= {"pixel_width": 854, "pixel_height": 480, "progress_bar": "none"}
    with tempconfig(config), scene_settings.use(SceneSettings(trace=trace)):
        scene = _Timed(skip_animations=True)  # every animation to its end, no frames
        scene.render()
    return scene


def test_scene_steps_by_half_layers_in_about_the_same_time(tmp_path: Path) -> None:
    early = with_ranks(TRACE, mid_from=20, post_from=21)
    half = timed(early, tmp_path)
    whole = timed(dataclasses.replace(early, lens_mid=None), tmp_path)
    rise = [t for beat, t in half.played if beat == "rise"]
    # caption (2), fade in, both halves of the slow layers and the others whole, the mark
    slow = half.slow_layers_of()
    assert 20 in slow and len(rise) == 2 * len(slow) + (L - len(slow)) + 4
    assert len([t for beat, t in whole.played if beat == "rise"]) == L + 4
    total_half, total_whole = sum(rise), sum(t for b, t in whole.played if b == "rise")
    assert total_half == pytest.approx(total_whole, rel=0.1)
    # The mark sits on the stream row after layer 20's attention, and the caption says so.
    assert half.readout.heading.text == f"layer {L - 1} · after MLP"
    line = half.answer_mark[0]
    assert line.get_y() == pytest.approx(half.boundary_y(20, True))
    assert line.get_y() < half.streams.y_of(20)
    assert "layer 20's attention" in half.cues[-1].text
    assert "from layer 20 on" in whole.cues[-1].text

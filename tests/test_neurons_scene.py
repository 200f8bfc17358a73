"""The Neurons scene and its blocks: colours from the recorded activations, honest counts.

The scene reads ``trace.neurons`` of the committed example trace (the default
model on "The capital of France is"): its last frame is checked against
control data, its text against the legibility rule at every aspect and theme,
and every tile's colour and every count on screen against the trace.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.scenes.neurons import Neurons
from mechviz.tracing.io import load_trace
from mechviz.tracing.neurons import activation_class, select
from mechviz.visual import settings as scene_settings
from mechviz.visual import style
from mechviz.visual.neurons import (
    ActivationLegend,
    LayerCounts,
    NeuronRow,
    class_colors,
    tile_box,
)
from mechviz.visual.settings import SceneSettings, example_trace
from mechviz.visual.text import cap_share

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # schema 3: no `neurons` section
ROOMS = {"16:9": (13.6, 7.4), "9:16": (7.4, 13.6)}  # the frame less margins, scene units


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    trace = load_trace(example_trace())
    assert trace.neurons is not None, "the example trace has no `neurons` section"
    return trace


def run(tmp_path: Path, scene: type[Neurons] = Neurons, **kw: object) -> Neurons:
    """Run the scene to its end without drawing frames (test_publishable.run_scene)."""
    return run_scene(scene, tmp_path, **kw)


def expected_class(trace, layer: int, value: float) -> str:  # type: ignore[no-untyped-def]
    """The class under the trace's own rule, from its fields (absolute or relative)."""
    n = trace.neurons
    unit = float(np.float32(n.std[layer])) if n.relative else 1.0
    hi, lo = np.float32(n.above) * np.float32(unit), np.float32(n.below) * np.float32(unit)
    return activation_class(value, float(hi), float(lo), 0.5 * unit)


def check_row_colors(trace, row: NeuronRow, theme: style.Theme) -> None:  # type: ignore[no-untyped-def]
    n = trace.neurons
    stored = list(n.ids[row.layer])
    values = n.values[row.layer, stored.index(row.neuron)]
    colors = class_colors(theme)
    assert len(row.tiles) >= 1
    for p, tile in enumerate(row.tiles):
        kind = expected_class(trace, row.layer, float(values[p]))
        assert row.classes[p] == kind
        assert tile[0].get_fill_color().to_hex() == colors[kind].to_hex(), (row.layer, p)


# --- the scene ---------------------------------------------------------------------------


def test_neurons_last_frame(tmp_path: Path) -> None:
    out = render_scene(
        Neurons,
        SceneSettings(trace=example_trace()),
        "low",
        "png",
        tmp_path / "n.png",
        progress=False,
    )
    frame = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.05, "the frame is almost empty"
    # The last frame holds the first and the last layer: blue and red tiles, and the marked bar.
    assert near(frame, dark.negative, 20).sum() > 800
    assert near(frame, dark.positive, 20).sum() > 300
    assert near(frame, dark.highlight, 30).sum() > 100
    check_control("Neurons", frame)


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_neurons_legible_at_every_aspect(aspect: str, tmp_path: Path) -> None:
    check_legible(run(tmp_path, aspect=aspect))


def test_neurons_legible_light(tmp_path: Path) -> None:
    check_legible(run(tmp_path, aspect="9:16", theme="light"))
    check_legible(run(tmp_path, aspect="16:9", theme="light"))


class RelativeNeurons(Neurons):
    """The scene under the rule in units of each layer's std (as ``--relative`` would ask)."""

    def get_selection(self):  # type: ignore[no-untyped-def]
        return select(self.trace, relative=True)


def test_relative_thresholds_read_in_sigma(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, RelativeNeurons, aspect="9:16")
    check_legible(scene)
    assert "above 3σ or below 0" in scene.cues[0].text
    assert "σ: the layer's std" in scene.cues[0].text
    assert "above 3σ on" in scene.cues[-1].text
    recount = select(trace, relative=True).count
    assert list(scene.counts.count) == list(recount) != list(trace.neurons.count)
    std = trace.neurons.std
    for page in scene.pages:
        for row in page.rows:
            assert row.hi == pytest.approx(3.0 * float(std[row.layer]), rel=1e-6)


def test_drawn_colors_and_counts_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, aspect="1:1", theme="light")
    n = trace.neurons
    assert list(scene.beat_texts) == list(Neurons.beats)
    layers = [page.layer for page in scene.pages]
    assert layers[0] == 0 and layers[-1] == trace.n_layers - 1
    for page in scene.pages:
        count = int(n.count[page.layer])
        assert "…" not in page.header.text
        assert f"{len(page.rows)}of{count:,}" in page.header.text  # Text.text drops spaces
        stored = [int(i) for i in n.ids[page.layer] if i >= 0]
        assert [row.neuron for row in page.rows] == stored[: len(page.rows)]  # extreme first
        for row in page.rows:
            check_row_colors(trace, row, style.LIGHT)
    # The chart's bars are the recorded counts out of d_mlp.
    chart = scene.counts
    assert list(chart.count) == list(n.count) and chart.d_mlp == trace.model.d_mlp
    full = chart.area.height
    heights = np.array([bar.height for bar in chart.bars])
    assert np.allclose(heights, full * n.count / trace.model.d_mlp, atol=2e-3)
    rule = scene.cues[0].text
    assert f"{int(n.count.min()):,} to {int(n.count.max()):,} of {trace.model.d_mlp:,}" in rule


def test_contrast_caption_states_the_recorded_shares(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, beats=("contrast",))
    n, L = trace.neurons, trace.n_layers
    third = math.ceil(L / 3)

    def shares(layers: range) -> tuple[float, float]:
        above, below = [], []
        for layer in layers:
            for k in np.nonzero(n.ids[layer] >= 0)[0]:
                values = n.values[layer, k]
                above.append(
                    np.mean([expected_class(trace, layer, v) in ("high", "mid") for v in values])
                )
                below.append(np.mean([expected_class(trace, layer, v) == "neg" for v in values]))
        return float(np.mean(above)), float(np.mean(below))

    ae, be = shares(range(third))
    al, bl = shares(range(L - third, L))
    text = scene.cues[-1].text
    assert f"above 3 on {ae:.0%} of tokens in layers 0–{third - 1}, {al:.0%} in" in text
    assert f"below 0 on {be:.0%}, {bl:.0%}" in text


def test_trace_without_neurons_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "n.png"
    with pytest.raises(MechvizError) as err:
        render_scene(Neurons, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `neurons` section" in message and "mechviz trace" in message
    assert "\n" not in message and message.count(". ") == 0
    assert not out.exists()


def test_layers_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MechvizError, match="Layer 99 is out of range"):
        run(tmp_path, layers=(0, 99))


# --- the blocks ----------------------------------------------------------------------


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("aspect", list(ROOMS))
def test_blocks_fit_their_room(trace, theme: str, aspect: str) -> None:  # type: ignore[no-untyped-def]
    w, h = ROOMS[aspect]
    palette = style.get_theme(theme)
    for layer in (0, 9, trace.n_layers - 1):
        row = NeuronRow.from_trace(trace, layer, width=w, height=h, theme=theme)
        assert row.width <= w + 1e-6 and row.height <= h + 1e-6
        assert row.neuron == int(trace.neurons.ids[layer, 0])  # the most extreme by default
        assert row.name.text == f"L{layer} N{row.neuron}"
        check_row_colors(trace, row, palette)
        high, low = (float(v) for v in trace.neurons.peak[layer, row.neuron])
        peak = high if abs(high) >= abs(low) else low
        assert float(row.peak_label.text) == pytest.approx(peak, abs=0.051 * max(1, abs(peak)))
        for text in (*[t[1] for t in row.tiles], row.name[0], row.name[1], row.peak_label):
            assert cap_share(text) >= style.MIN_SHARE - 1e-3
    chart = LayerCounts.from_trace(trace, 5, width=w, height=1.6, theme=theme)
    assert chart.width <= w + 0.1 and chart.height <= 1.6 + 1e-6
    assert chart.layer == 5
    assert chart.bars[5].get_fill_color().to_hex() == palette.highlight.to_hex()
    assert chart.bars[4].get_fill_color().to_hex() == palette.muted.to_hex()
    legend = ActivationLegend.from_trace(trace, width=w, theme=theme)
    assert legend.width <= w + 1e-6
    assert [t.text for t in legend.labels] == [">3.5", "3–3.5", "0–3", "<0"]  # Text drops spaces
    assert [s.get_fill_color().to_hex() for s in legend.swatches] == [
        c.to_hex() for c in class_colors(palette).values()
    ]


def test_row_thresholds_and_bad_neurons(trace) -> None:  # type: ignore[no-untyped-def]
    n = trace.neurons
    layer, neuron = 27, int(n.ids[27, 0])
    strict = NeuronRow.from_trace(trace, layer, neuron, above=1.0, below=-1.0, width=13.6)
    values = n.values[layer, 0]
    assert strict.classes == [activation_class(float(v), 1.0, -1.0) for v in values]
    relative = NeuronRow.from_trace(trace, layer, neuron, relative=True, width=13.6)
    std = float(n.std[layer])
    assert relative.classes == [
        activation_class(float(v), float(np.float32(3.0) * np.float32(std)), 0.0, 0.5 * std)
        for v in values
    ]
    unstored = next(i for i in range(trace.model.d_mlp) if i not in set(n.ids[layer]))
    with pytest.raises(MechvizError, match="is not stored"):
        NeuronRow.from_trace(trace, layer, unstored)
    with pytest.raises(MechvizError, match="out of range"):
        NeuronRow.from_trace(trace, trace.n_layers, 0)
    with pytest.raises(MechvizError, match="must be greater"):
        LayerCounts.from_trace(trace, above=0.0, below=1.0)


def test_long_prompt_rows_count_what_they_leave_out(trace) -> None:  # type: ignore[no-untyped-def]
    texts = [f" tok{i}" for i in range(40)]
    row = NeuronRow(texts, np.linspace(-1, 5, 40), 3.0, 0.0, 0.5, 3, 7, 5.0, style.DARK, 7.4, 1.3)
    assert row.more is not None and row.height <= 1.3 + 1e-6
    assert row.more.text == f"+{40 - len(row.tiles)}"
    box = tile_box(2.0, 0.5, style.DARK.positive)
    assert box.width == pytest.approx(2.0) and box.height == pytest.approx(0.5)

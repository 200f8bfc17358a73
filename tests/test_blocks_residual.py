"""Residual-stream and lens-readout blocks: ResidualStreams, WriteBars, LensReadout."""

from __future__ import annotations

import numpy as np
import pytest
from manim import Animation, Mobject, Text

from mechviz.model.tokens import drawable, shown
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.readout import LensReadout
from mechviz.visual.residual import GAP_COLS, WRITE_COLS, ResidualStreams, WriteBars
from mechviz.visual.settings import example_trace
from mechviz.visual.text import cap_share

TRACE = load_trace(example_trace())
L, P = TRACE.n_layers, TRACE.n_positions
WIDE, TALL = (13.6, 7.4), (7.4, 13.0)  # 16:9 and 9:16 rooms (scene units)
ROOMS = [WIDE, TALL, (7.4, 5.5), (5.8, 6.5), (3.0, 6.0)]  # and the scene's panels, a narrow one


def texts_of(mob: Mobject) -> list[Text]:
    return [p for p in mob.get_family() if isinstance(p, Text) or hasattr(p, "_mv_font_size")]


def drawn_bounds(parts: list[Mobject]) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)`` of the parts that draw something (empty groups left out)."""
    boxes = []
    for part in parts:
        if not any(len(m.points) for m in part.get_family()):
            continue
        boxes.append((part.get_left()[0], part.get_right()[0]))
        boxes[-1] += (part.get_bottom()[1], part.get_top()[1])
    return (
        min(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def check_fits(parts: list[Mobject], width: float, height: float) -> None:
    """Everything drawn lies in the room centred on the origin."""
    x0, x1, y0, y1 = drawn_bounds(parts)
    eps = 1e-6
    assert -width / 2 - eps <= x0 and x1 <= width / 2 + eps, (x0, x1, width)
    assert -height / 2 - eps <= y0 and y1 <= height / 2 + eps, (y0, y1, height)


def check_legible(mob: Mobject) -> None:
    """All text at MIN_TEXT or more, and no two texts overlap."""
    texts = texts_of(mob)
    assert texts
    for t in texts:
        assert cap_share(t) >= style.MIN_SHARE - 1e-3, f"{t.text!r} is too small"
    boxes = [(t.get_left()[0], t.get_right()[0], t.get_bottom()[1], t.get_top()[1]) for t in texts]
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            dx, dy = min(a[1], b[1]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[2], b[2])
            assert dx <= 0.02 or dy <= 0.02, f"{texts[i].text!r} overlaps {texts[j].text!r}"


def run(animations: list[Animation]) -> None:
    """Play ``animations`` to their end without a scene."""
    for anim in animations:
        anim.begin()
        anim.finish()


def says(mob: Mobject, expected: str) -> bool:
    """A label says ``expected`` (or its start cut with ``…``)."""
    got, want = getattr(mob, "original_text", mob.text), drawable(expected)
    return got == want or (got.endswith("…") and want.startswith(got[:-1].rstrip()))


def column_parts(block: ResidualStreams | WriteBars) -> list[Mobject]:
    return [block.images, block.token_labels, block.axis, block.legend, block.note]


# --- common: builds in both themes, fits the room, legible -------------------------------
@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", ROOMS)
def test_streams_build_fit_and_are_legible(theme: str, size: tuple[float, float]) -> None:
    streams = ResidualStreams.from_trace(
        example_trace(), width=size[0], height=size[1], theme=theme
    )
    assert streams.theme is style.get_theme(theme)
    assert np.allclose(streams.extent.get_center(), 0)
    check_fits(column_parts(streams), *size)
    check_legible(streams)


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", ROOMS)
def test_write_bars_build_fit_and_are_legible(theme: str, size: tuple[float, float]) -> None:
    bars = WriteBars.from_trace(TRACE, width=size[0], height=size[1], theme=theme)
    assert bars.theme is style.get_theme(theme)
    check_fits(column_parts(bars), *size)
    check_legible(bars)


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", ROOMS)
def test_readout_builds_fits_and_is_legible(theme: str, size: tuple[float, float]) -> None:
    readout = LensReadout.from_trace(TRACE, width=size[0], height=size[1], theme=theme)
    assert readout.theme is style.get_theme(theme)
    assert np.allclose(readout.get_center(), 0)
    for layer in (None, 0, L // 2, L - 1):  # "after layer 29" is wider than "embedding"
        run(readout.step_to(layer))
        assert readout.width <= size[0] + 1e-6 and readout.height <= size[1] + 1e-6
        check_legible(readout)


# --- ResidualStreams ---------------------------------------------------------------------
def test_streams_keep_the_last_positions_and_say_so_when_narrow() -> None:
    wide = ResidualStreams.from_trace(TRACE, width=WIDE[0], height=WIDE[1], theme="dark")
    assert wide.positions == list(range(P)) and wide.note_text == ""
    assert not texts_of(wide.note)
    narrow = ResidualStreams.from_trace(TRACE, width=3.0, height=7.0, theme="dark")
    n = len(narrow.positions)
    assert 1 <= n < P
    assert narrow.positions == list(range(P - n, P))
    assert narrow.note_text == f"last {n} of {P} tokens"
    assert says(narrow.note, f"last {n} of {P} tokens")
    assert len(narrow.images) == len(narrow.token_labels) == n
    for p, mob in zip(narrow.positions, narrow.token_labels):
        assert says(mob, shown(wide.view.token_texts[p]))
    # Positions asked for are kept, the last of them when they do not all fit.
    picked = ResidualStreams.from_trace(TRACE, [0, 2], width=WIDE[0], height=WIDE[1])
    assert picked.positions == [0, 2] and picked.note_text == ""
    quiet = ResidualStreams.from_trace(TRACE, width=3.0, height=7.0, note=False)
    assert quiet.note_text and not texts_of(quiet.note)  # the caller says it instead


@pytest.mark.parametrize("size", [WIDE, TALL])
def test_y_of_rises_with_the_layer_and_x_of_with_the_position(size: tuple[float, float]) -> None:
    streams = ResidualStreams.from_trace(TRACE, width=size[0], height=size[1]).shift([1.0, -2.0, 0])
    ys = [streams.y_of(None)] + [streams.y_of(layer) for layer in range(L)]
    assert all(a < b for a, b in zip(ys, ys[1:]))
    assert ys[-1] == pytest.approx(streams.images.get_top()[1])
    assert ys[0] > streams.images.get_bottom()[1]  # the embedding's row lies below it
    xs = [streams.x_of(i) for i in range(len(streams.positions))]
    assert all(a < b for a, b in zip(xs, xs[1:]))
    assert [img.get_x() for img in streams.images] == pytest.approx(xs)


def test_stream_images_are_the_recorded_rows() -> None:
    with_writes = ResidualStreams.from_trace(TRACE, width=WIDE[0], height=WIDE[1])
    plain = ResidualStreams.from_trace(TRACE, width=WIDE[0], height=WIDE[1], writes=False)
    B, _, R = TRACE.resid.pooled.shape
    p = P - 1
    image = plain.images[p].pixel_array[::-1, :, :3]  # the embedding row last on screen
    assert image.shape == (B, R, 3)
    values = TRACE.resid.pooled[:, p]
    expected = style.diverging_rgb(values, style.robust_scale(values), plain.theme)
    assert np.array_equal(image, expected)
    full = with_writes.images[p].pixel_array[::-1, :, :3]
    assert full.shape == (B, R + GAP_COLS + WRITE_COLS, 3)
    assert np.array_equal(full[:, :R], expected)
    assert len(plain.legend) == 0 and len(with_writes.legend) > 0


def test_reveal_to_uncovers_up_to_the_layer() -> None:
    streams = ResidualStreams.from_trace(TRACE, width=WIDE[0], height=WIDE[1])
    cover = streams.get_cover()
    assert cover.get_bottom()[1] < streams.y_of(None) and cover.get_top()[1] > streams.y_of(L - 1)
    marker = streams.get_marker()
    for layer in (None, 3, L - 1):
        run(streams.reveal_to(layer))
        assert cover.get_bottom()[1] == pytest.approx(streams.y_of(layer) + 0.02, abs=2e-3)
        assert marker.get_y() == pytest.approx(streams.y_of(layer))


# --- WriteBars ---------------------------------------------------------------------------
def test_write_bars_show_recorded_norms_and_frame_the_largest() -> None:
    attn, mlp = TRACE.blocks.attn_out_norm, TRACE.blocks.mlp_out_norm
    top = WriteBars.full_norm(TRACE)
    assert top == pytest.approx(np.quantile(np.r_[attn[:, 1:].ravel(), mlp[:, 1:].ravel()], 0.95))
    theme = style.DARK
    bg = (theme.rgb(theme.background) * 255).astype(np.uint8)
    pixels = WriteBars.pixels(TRACE, 2, theme, top)
    for layer in (0, L // 2, L - 1):
        for row, norm in ((2 * layer + 1, attn[layer, 2]), (2 * layer + 2, mlp[layer, 2])):
            drawn = int((pixels[row] != bg).any(axis=-1).sum())
            assert drawn == min(WRITE_COLS, round(WRITE_COLS * norm / top))
    largest = WriteBars.largest(TRACE, range(P))
    for (_kind, layer, p), values in zip(largest, (attn, mlp)):
        assert values[layer, p] == values[:, 1:].max() and p > 0
    assert WriteBars.largest(TRACE, [0]) == []
    bars = WriteBars.from_trace(TRACE, width=WIDE[0], height=WIDE[1], theme="dark")
    marks = bars.get_write_marks()
    assert len(marks) == 2
    for frame, (kind, layer, p) in zip(marks, largest):
        boundary = 2 * layer + (1 if kind == "attention" else 2)
        assert frame.get_y() == pytest.approx(bars.row_center(boundary))
        assert frame.get_x() == pytest.approx(bars.x_of(bars.positions.index(p)))
    streams = ResidualStreams.from_trace(TRACE, width=WIDE[0], height=WIDE[1])
    assert len(streams.get_write_marks()) == 2
    assert len(ResidualStreams.from_trace(TRACE, writes=False).get_write_marks()) == 0


# --- LensReadout -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [WIDE, TALL, (5.8, 6.5)])
def test_readout_ends_on_the_models_prediction(size: tuple[float, float]) -> None:
    readout = LensReadout.from_trace(TRACE, width=size[0], height=size[1], theme="dark")
    token, prob = TRACE.prediction
    for layer in range(L):
        run(readout.step_to(layer))
    assert readout.heading.text == f"layer {L - 1} · after MLP"  # the trace has lens_mid
    bars = readout.bars
    answer = readout.view.vocab_text(token)
    assert bars.texts[0] == answer and says(bars.rows[0][0], shown(answer))
    assert bars.values[0] == pytest.approx(TRACE.lens.top_probs[-1, -1, 0])
    assert bars.values[0] == pytest.approx(prob, abs=5e-3)  # the lens's last row is the output
    assert bars.rows[0][2].text == f"{TRACE.lens.top_probs[-1, -1, 0]:.2f}"
    assert readout.counter_values[0].text == "1"
    assert readout.counter_values[0].get_color() == readout.theme.highlight


def test_readout_counters_show_recorded_values_at_a_middle_layer() -> None:
    readout = LensReadout.from_trace(TRACE, width=WIDE[0] * 0.44, height=6.5, theme="dark")
    layer = L // 2
    run(readout.step_to(layer))
    rank = int(TRACE.lens.final_token_rank[layer + 1, -1]) + 1
    bits = float(TRACE.lens.entropy[layer + 1, -1]) / np.log(2)
    norm = float(TRACE.resid.norm[TRACE.resid.labels.index(f"{layer}_post"), -1])
    shown_values = [mob.text for mob in readout.counter_values]
    assert shown_values == [f"{rank:,}", f"{bits:.1f}", f"{norm:.0f}"]
    assert rank != 1 or readout.counter_values[0].get_color() == readout.theme.highlight
    texts = [readout.view.vocab_text(i) for i in TRACE.lens.top_ids[layer + 1, -1, :4]]
    assert readout.bars.texts == texts
    assert readout.bars.values == pytest.approx(TRACE.lens.top_probs[layer + 1, -1, :4])
    # The chart's line has reached this layer, at the recorded p(answer).
    assert readout.has_chart
    end = readout.chart_line.get_points()[-1]
    box = readout.chart_box
    assert end[0] == pytest.approx(box.get_left()[0] + box.width * (layer + 1) / L)
    p = TRACE.lens.final_token_prob[layer + 1, -1]
    assert end[1] == pytest.approx(box.get_bottom()[1] + box.height * p)
    tick = readout.answer_tick(layer)
    assert tick is not None and tick.get_start()[1] == pytest.approx(box.get_bottom()[1])


def test_readout_drops_parts_in_a_short_room_and_reads_any_position() -> None:
    short = LensReadout.from_trace(TRACE, width=5.8, height=2.4, theme="dark")
    assert not short.has_chart and short.answer_tick(0) is None
    assert short.height <= 2.4 + 1e-6
    no_chart = LensReadout.from_trace(TRACE, width=WIDE[0], height=WIDE[1], chart=False)
    assert no_chart.chart is None and not no_chart.has_chart
    first = LensReadout.from_trace(TRACE, 1, width=WIDE[0] * 0.44, height=6.5)
    assert first.position == 1
    assert first.answer_id == int(TRACE.output.top_ids[1, 0])
    assert first.bars.values == pytest.approx(TRACE.lens.top_probs[0, 1, :4])


@pytest.mark.parametrize("width", [4.0, 5.4, 6.6, 7.0, 7.4, 9.0, 13.6])
def test_readout_bars_keep_a_readable_length(width: float) -> None:
    """Counters beside the bars only when the bars keep their length there (was 0.02 at 6.6)."""
    readout = LensReadout.from_trace(example_trace(), width=width, height=6.0)
    assert readout.bars.bar_width >= 0.8
    assert readout.width <= width + 1e-6

"""Attention building blocks: AttentionGrid, AttentionArcs, HeadGallery, built from traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from manim import Mobject, Text, tempconfig

from mechviz.errors import MechvizError
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.attention import (
    AttentionArcs,
    AttentionGrid,
    HeadGallery,
    strongest_keys,
)
from mechviz.visual.settings import example_trace
from mechviz.visual.text import cap_share

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"
ROOMS = {"16:9": (13.4, 6.4), "9:16": (7.4, 13.0), "half": (6.0, 4.5)}
LAYER, HEAD = 3, 4


@pytest.fixture(scope="module", autouse=True)
def own_media_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Text SVGs go to a directory of this module's own (other runs may share ./media)."""
    with tempconfig({"media_dir": str(tmp_path_factory.mktemp("media"))}):
        yield


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    return load_trace(example_trace())


@pytest.fixture(scope="module")
def mary():  # type: ignore[no-untyped-def]
    return load_trace(MARY)


def build(kind: str, trace, width: float, height: float, theme: str):  # type: ignore[no-untyped-def]
    if kind == "grid":
        return AttentionGrid.from_trace(trace, LAYER, HEAD, width=width, height=height, theme=theme)
    if kind == "arcs":
        return AttentionArcs.from_trace(trace, LAYER, HEAD, width=width, height=height, theme=theme)
    return HeadGallery.from_trace(
        trace, LAYER, width=width, height=height, theme=theme, highlight=HEAD
    )


def texts_of(mob: Mobject) -> list[Mobject]:
    return [m for m in mob.get_family() if isinstance(m, Text) or hasattr(m, "_mv_font_size")]


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("room", list(ROOMS))
@pytest.mark.parametrize("kind", ["grid", "arcs", "gallery"])
@pytest.mark.parametrize("which", ["example", "mary"])
def test_block_fits_its_room_with_legible_text(
    kind: str,
    room: str,
    theme: str,
    which: str,
    trace,
    mary,  # type: ignore[no-untyped-def]
) -> None:
    t = trace if which == "example" else mary
    width, height = ROOMS[room]
    block = build(kind, t, width, height, theme)
    assert block.width <= width + 1e-6, f"{block.width:.2f} > {width}"
    assert block.height <= height + 1e-6, f"{block.height:.2f} > {height}"
    assert np.allclose(block.get_center(), 0, atol=1e-6)  # built centred on the origin
    texts = texts_of(block)
    assert texts
    for text in texts:
        assert cap_share(text) >= style.MIN_SHARE - 1e-3, f"{text.text!r} is too small"


def test_blocks_take_a_path_and_the_current_theme() -> None:
    grid = AttentionGrid.from_trace(example_trace(), 0, 0, width=6, height=5)
    assert grid.theme is style.DARK
    assert (grid.layer, grid.head) == (0, 0)


def test_out_of_range_is_one_sentence(trace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MechvizError, match="Layer 99 is out of range"):
        AttentionGrid.from_trace(trace, 99, 0)
    with pytest.raises(MechvizError, match="Head 99 is out of range"):
        HeadGallery.from_trace(trace, 0, highlight=99)
    with pytest.raises(MechvizError, match="Query 9 is out of range"):
        AttentionArcs.from_trace(trace, 0, 0, 9)


# --- AttentionArcs ---------------------------------------------------------------------
def check_strongest_key(t, layer: int, head: int, height: float) -> None:  # type: ignore[no-untyped-def]
    pattern = t.attention.pattern[layer, head]
    for q in range(t.n_positions):
        arcs = AttentionArcs.from_trace(t, layer, head, q, width=6.0, height=height)
        row = pattern[q, : q + 1]
        best = int(row.argmax())
        assert q in arcs.positions  # the query is always there, framed
        if best == q:  # it reads itself most: no arc, its own weight written
            assert any(n.text == f"{row[q]:.2f}" for n in arcs.numbers)
        else:
            assert best in arcs.arc_keys, (layer, head, q, arcs.arc_keys)
        if q > 0:  # and the strongest other key always has its arc
            other = max(range(q), key=lambda k: (row[k], -k))
            assert other in arcs.arc_keys, (layer, head, q, arcs.arc_keys)
        assert len(arcs.arcs) == len(arcs.arc_keys)


@pytest.mark.parametrize("height", [13.0, 1.2])  # a tall room and one of three rows
@pytest.mark.parametrize("layer", [0, LAYER])
def test_arcs_always_hold_the_strongest_key(layer: int, height: float, trace) -> None:  # type: ignore[no-untyped-def]
    for head in range(trace.model.n_heads):
        check_strongest_key(trace, layer, head, height)


@pytest.mark.parametrize("height", [5.0, 1.2])
def test_arcs_hold_the_strongest_key_of_a_long_prompt(height: float, mary) -> None:  # type: ignore[no-untyped-def]
    check_strongest_key(mary, LAYER, HEAD, height)


def test_arcs_width_follows_the_weight(mary) -> None:  # type: ignore[no-untyped-def]
    q = mary.n_positions - 1
    arcs = AttentionArcs.from_trace(mary, LAYER, HEAD, q, width=7, height=12)
    weights = [float(mary.attention.pattern[LAYER, HEAD, q, k]) for k in arcs.arc_keys]
    strokes = [a.get_stroke_width() for a in arcs.arcs]
    assert (
        np.argsort(weights, kind="stable").tolist() == np.argsort(strokes, kind="stable").tolist()
    )
    assert arcs.keys == strongest_keys(mary.attention.pattern[LAYER, HEAD], q)


def test_arcs_mark_left_out_tokens(mary) -> None:  # type: ignore[no-untyped-def]
    arcs = AttentionArcs.from_trace(mary, LAYER, HEAD, width=6, height=2.5)
    assert len(arcs.positions) < mary.n_positions
    dots = [m for m in texts_of(arcs.tokens) if getattr(m, "text", "") == "…"]
    gaps = sum(1 for a, b in zip(arcs.positions, arcs.positions[1:]) if b - a > 1)
    assert len(dots) == gaps >= 1


# --- AttentionGrid ---------------------------------------------------------------------
def neutral_distance(grid: AttentionGrid) -> np.ndarray:
    """How far each drawn cell's colour is from the colour of weight 0, ``[n, n]``."""
    pixels = grid.heatmap.cell_colors().astype(float)
    zero = style.sequential_rgb(np.zeros((1, 1)), high=grid.theme.attention, theme=grid.theme)
    return np.abs(pixels - zero[0, 0]).sum(axis=-1)


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("room", [(13.4, 6.4), (5.0, 3.0)])
def test_grid_colours_follow_the_recorded_weights(
    theme: str,
    room: tuple[float, float],
    mary,  # type: ignore[no-untyped-def]
) -> None:
    for head in range(mary.model.n_heads):
        grid = AttentionGrid.from_trace(
            mary, LAYER, head, width=room[0], height=room[1], theme=theme
        )
        recorded = mary.attention.pattern[LAYER, head]
        shown = recorded[np.ix_(grid.positions, grid.positions)]
        np.testing.assert_array_equal(grid.weights, shown)
        drawn = neutral_distance(grid)
        assert drawn.shape == shown.shape
        for i, q in enumerate(grid.positions):
            readable = [j for j, k in enumerate(grid.positions) if k <= q]  # the rest: masked
            row, weights = drawn[i][readable], shown[i][readable]
            brightest = int(row.argmax())
            assert weights[brightest] == pytest.approx(weights.max(), abs=0.02), (head, i)
            # and stronger cells are never drawn paler
            order = np.argsort(weights)
            assert np.all(np.diff(row[order]) >= -1e-9)


def test_grid_windows_and_says_so(mary) -> None:  # type: ignore[no-untyped-def]
    P = mary.n_positions
    grid = AttentionGrid.from_trace(mary, LAYER, HEAD, width=5.0, height=3.5)
    n = len(grid.positions)
    assert n < P
    assert grid.note is not None and grid.note.original_text.startswith(f"{n} of {P} tokens; ")
    q = P - 1
    assert q in grid.positions
    assert set(strongest_keys(mary.attention.pattern[LAYER, HEAD], q)[: n - 2]) <= set(
        grid.positions
    )
    full = AttentionGrid.from_trace(mary, LAYER, HEAD, width=13.4, height=12.0)
    assert full.positions == list(range(P)) and " of " not in full.note.original_text


def test_grid_cell_center_and_highlight(trace) -> None:  # type: ignore[no-untyped-def]
    grid = AttentionGrid.from_trace(trace, LAYER, HEAD, width=8, height=6)
    P = trace.n_positions
    heat = grid.heatmap.frame
    top_left = grid.cell_center(0, 0)
    assert top_left[0] < grid.cell_center(0, P - 1)[0]
    assert top_left[1] > grid.cell_center(P - 1, 0)[1]
    for q, k in [(0, 0), (P - 1, 1), (2, 2)]:
        point = grid.cell_center(q, k)
        assert heat.get_left()[0] < point[0] < heat.get_right()[0]
        assert heat.get_bottom()[1] < point[1] < heat.get_top()[1]
        frame = grid.highlight(q, k)
        assert np.allclose(frame.get_center(), point)
        assert frame.width == pytest.approx(grid.heatmap.cell)
    row = grid.highlight_row(P - 1)
    assert row.width == pytest.approx(heat.width)
    assert row.get_center()[1] == pytest.approx(grid.cell_center(P - 1, 0)[1])
    small = AttentionGrid.from_trace(MARY, LAYER, HEAD, width=5, height=3.5)
    left_out = next(p for p in range(MARY_P) if p not in small.positions)
    with pytest.raises(ValueError, match="not shown"):
        small.cell_center(left_out, 0)


MARY_P = 14


# --- HeadGallery -----------------------------------------------------------------------
@pytest.mark.parametrize("room", list(ROOMS))
def test_gallery_has_every_head_and_frames_one(room: str, trace) -> None:  # type: ignore[no-untyped-def]
    width, height = ROOMS[room]
    H = trace.model.n_heads
    gallery = HeadGallery.from_trace(trace, LAYER, width=width, height=height, highlight=2)
    assert len(gallery.panels) == len(gallery.heatmaps) == H
    assert [n.original_text for n in gallery.names] == [f"head {h}" for h in range(H)]
    P = trace.n_positions
    masked = np.triu(np.ones((P, P), dtype=bool), 1)
    for h, heat in enumerate(gallery.heatmaps):
        cells = heat.cell_colors()
        expected = style.sequential_rgb(
            trace.attention.pattern[LAYER, h], high=style.DARK.attention, theme=style.DARK
        )
        np.testing.assert_array_equal(cells[~masked], expected[~masked])
        background = (style.DARK.rgb(style.DARK.background) * 255).round()
        assert np.all(cells[masked] == background)  # masked: never the colour of weight 0
    assert "hatched" in gallery.note.original_text
    assert gallery.frame is not None
    assert np.allclose(gallery.frame.get_center(), gallery.heatmaps[2].get_center())
    assert gallery.names[2].get_color() == style.DARK.highlight
    plain = HeadGallery.from_trace(trace, LAYER, width=width, height=height)
    assert plain.frame is None


def test_masked_cells_are_hatched_not_zero(trace) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: the heads page drew masked cells (later keys) like zero-weight ones."""
    grid = AttentionGrid.from_trace(trace, LAYER, HEAD, width=8, height=6)
    image = np.asarray(grid.heatmap.image.pixel_array)[..., :3]
    px = style.MASK_PX
    zero = style.sequential_rgb(np.zeros((1, 1)), high=grid.theme.attention, theme=grid.theme)
    faint = (grid.theme.rgb(grid.theme.faint) * 255).round()
    n = len(grid.positions)
    for i in range(n):
        for j in range(n):
            block = image[i * px : (i + 1) * px, j * px : (j + 1) * px].reshape(-1, 3)
            if grid.positions[j] > grid.positions[i]:  # masked: stripes, no weight colour
                assert (block == faint).all(axis=1).any() and not (block == zero[0, 0]).all(1).any()
            else:  # readable: one flat colour
                assert (block == block[0]).all()
    assert "hatched" in grid.note.original_text


def test_gallery_names_the_query_tokens(trace) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: the heads page had no token labels."""
    gallery = HeadGallery.from_trace(trace, LAYER, width=13.0, height=5.6)
    assert len(gallery.token_labels) >= 1
    P = trace.n_positions
    for labels in gallery.token_labels:
        assert len(labels) == P
    first = gallery.token_labels[0]
    heat = gallery.heatmaps[0]
    for p, mob in enumerate(first):
        assert mob.get_center()[1] == pytest.approx(heat.cell_center(p, 0)[1], abs=0.05)
        assert mob.get_right()[0] < heat.get_left()[0]
    assert [m.original_text for m in first][1] == "·capital"

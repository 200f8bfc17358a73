"""The Patching scene and its blocks: the maps' colours are the recorded values, named honestly.

The scene reads the ``patching`` section of the committed example (the default
model, "The capital of France is" patched into "The capital of Italy is",
answer " Paris", wrong " Rome"): its last frame is checked against control
data, its text against the legibility rule at every aspect and in the light
theme, every map's pixels and every number on screen against the trace.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from manim import tempconfig
from PIL import Image
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.scenes.patching import Patching
from mechviz.tracing.io import load_trace
from mechviz.visual import settings as scene_settings
from mechviz.visual import style
from mechviz.visual.patching import (
    KINDS,
    PatchingLegend,
    PatchingMaps,
    SiteList,
    column_texts,
    fmt,
    kind_values,
    patch_rgb,
    strongest_sites,
)
from mechviz.visual.settings import SceneSettings, example_trace
from mechviz.visual.text import cap_share

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # no `patching` section
EXAMPLE = example_trace("Patching")


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    trace = load_trace(EXAMPLE)
    assert trace.patching is not None, "the Patching example has no `patching` section"
    return trace


_RUNS: dict[tuple[str, str], Patching] = {}


def run(tmp_path: Path, aspect: str = "16:9", theme: str = "dark") -> Patching:
    """The scene run to its end once per aspect and theme (the example is drawn by default)."""
    key = (aspect, theme)
    if key not in _RUNS:
        _RUNS[key] = run_scene(Patching, tmp_path, aspect=aspect, theme=theme)
    return _RUNS[key]


@cache
def _media(name: str) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"patching-{name}-"))


# --- the scene ---------------------------------------------------------------------------


def test_patching_last_frame(tmp_path: Path) -> None:
    out = render_scene(
        Patching,
        SceneSettings(trace=example_trace()),  # the generic example: the scene picks its own
        "low",
        "png",
        tmp_path / "p.png",
        progress=False,
    )
    frame = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.05, "the frame is almost empty"
    assert near(frame, dark.positive, 20).sum() > 1500  # the restoring stream runs, red
    assert near(frame, dark.highlight, 40).sum() > 150  # the strongest sites, framed
    check_control("Patching", frame)


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_patching_legible_at_every_aspect(aspect: str) -> None:
    scene = run(_media(aspect), aspect=aspect)
    check_legible(scene)
    assert list(scene.beat_texts) == list(Patching.beats)
    plan = scene.plan
    assert plan.together or plan.groups == (("resid",), ("heads", "mlp"))
    assert plan.pitch > 0.05  # 31 rows, every one drawn, at least 0.4% of the short side each
    best = next(s for s in scene.sites if s.kind == "heads")
    assert best.name == "head 23.4"  # the strongest head is framed on screen at the end
    centre = scene.maps.frame_site(best).get_center()
    assert any(np.allclose(f.get_center(), centre) for f in scene.frames)


def test_patching_legible_light() -> None:
    check_legible(run(_media("9:16light"), aspect="9:16", theme="light"))


@pytest.mark.parametrize(("aspect", "theme"), [("16:9", "dark"), ("9:16", "light")])
def test_colours_and_numbers_are_the_trace_s(trace, aspect: str, theme: str) -> None:  # type: ignore[no-untyped-def]
    scene = run(_media(aspect + ("light" if theme == "light" else "")), aspect=aspect, theme=theme)
    palette = style.get_theme(theme)
    p = trace.patching
    maps = scene.maps
    assert maps.kinds == KINDS and scene.plan.together  # side by side at 16:9 and 9:16
    for kind in KINDS:
        recorded = kind_values(trace, kind)[::-1]  # the last layer on top
        assert np.array_equal(maps.values[kind], recorded)
        pixels = np.asarray(maps.grids[kind].image.pixel_array)[..., :3]
        assert np.array_equal(pixels, patch_rgb(recorded, palette)), kind
    # Rows from the embedding up: slot 0 is the bottom row, the last layer the top one.
    grid = maps.grids["resid"]
    assert maps.slot_y(0) == pytest.approx(grid.cell_center(trace.n_layers, 0)[1])
    assert maps.slot_y(trace.n_layers) == pytest.approx(grid.cell_center(0, 0)[1])
    L = trace.n_layers
    for kind in ("heads", "mlp"):  # layer l of every map is the stream row after layer l
        assert maps.grids[kind].get_top()[1] == pytest.approx(grid.get_top()[1])
        assert maps.slot_y(24) == pytest.approx(maps.grids[kind].cell_center(L - 24, 0)[1])
    head = next(s for s in scene.sites if s.kind == "heads")
    frame = maps.frame_site(head)
    cell = maps.grids["heads"].cell_center(L - head.first, head.col)
    assert np.allclose(frame.get_center()[:2], cell[:2], atol=1e-6)
    labels = [t.text for t in maps.col_labels["resid"]]
    assert labels == [t.replace(" ", "") for t in column_texts(trace)]
    assert "·France/Italy" in labels
    assert maps.row_labels[0].text == "embed"
    assert len(maps.row_labels) >= 5
    # The setup's numbers and names.
    facts = " ".join(scene.facts())
    assert fmt(p.clean_diff) in facts and fmt(p.corrupt_diff) in facts
    assert trace.prompt in facts and p.corrupt_prompt in facts
    assert "·Paris" in facts and "·Rome" in facts
    # The list: each site's value as recorded.
    listed = scene.site_list
    assert listed.sites and listed.sites[0].kind == "resid"
    for site, number in zip(listed.sites, listed.numbers):
        if site.kind == "heads":
            assert number.text == fmt(float(p.heads[site.first - 1, site.col]))
        elif site.kind == "mlp":
            assert number.text == fmt(float(p.mlp[site.first - 1]))
        else:
            run_values = p.resid[site.first : site.last + 1, site.col]
            assert fmt(float(run_values.max())) in number.text
            assert (run_values >= 0.5).all()
    names = [s.name for s in listed.sites]
    assert "head 23.4" in names and "MLP 0" in names
    assert "head 23.4 (0.93)" in scene.cues[-1].text


def test_trace_without_patching_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    with pytest.raises(MechvizError) as err:
        render_scene(Patching, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `patching` section" in message and "mechviz patch" in message
    assert "\n" not in message
    assert not out.exists()


# --- the blocks ----------------------------------------------------------------------


def test_strongest_sites_are_the_largest_values(trace) -> None:  # type: ignore[no-untyped-def]
    p = trace.patching
    sites = strongest_sites(trace)
    heads = [s for s in sites if s.kind == "heads"]
    top = np.unravel_index(np.argmax(p.heads), p.heads.shape)
    assert (heads[0].first - 1, heads[0].col) == (int(top[0]), int(top[1]))
    assert heads[0].name == f"head {top[0]}.{top[1]}" and heads[0].value == float(p.heads.max())
    low = [s for s in heads if s.value < 0]
    assert low and low[0].value == pytest.approx(float(p.heads.min()))
    mlps = [s for s in sites if s.kind == "mlp"]
    assert mlps[0].name == f"MLP {int(np.argmax(p.mlp))}"
    runs = [s for s in sites if s.kind == "resid"]
    assert [s.col for s in runs] == [3, 4]  # France/Italy up to layer 22, then the last position
    assert runs[0].first == 0 and runs[1].last == trace.n_layers


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize(("w", "h"), [(8.0, 5.5), (7.4, 7.0)])
def test_blocks_fit_their_room(trace, theme: str, w: float, h: float, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with tempconfig({"media_dir": str(tmp_path / "media")}):  # text SVGs in a room of its own
        check_blocks(trace, theme, w, h)


def check_blocks(trace, theme: str, w: float, h: float) -> None:  # type: ignore[no-untyped-def]
    maps = PatchingMaps.from_trace(trace, width=w, height=h, theme=theme)
    assert maps.width <= w + 1e-6 and maps.height <= h + 1e-6
    texts = [*maps.row_labels, *maps.col_labels["resid"], *maps.titles.values()]
    for text in texts:
        assert cap_share(text) >= style.MIN_SHARE - 1e-3
    if maps.layout.step > 1:
        assert maps.note is not None and f"every{maps.layout.step}" in maps.note.text
    legend = PatchingLegend.from_trace(trace, width=4.0, theme=theme)
    assert legend.width <= 4.0 + 1e-6
    every = np.concatenate([kind_values(trace, k).ravel() for k in KINDS])
    assert legend.clipped == int((np.abs(every) > 1).sum()) > 0
    assert "·Paris" in legend.lines[0].text and "·Rome" in legend.lines[0].text
    sites = strongest_sites(trace)
    listed = SiteList(sites, style.get_theme(theme), 4.0, 1.6)
    assert listed.height <= 1.6 + 1e-6
    assert {s.kind for s in listed.sites} == {"resid", "heads", "mlp"}  # every kind's first
    with pytest.raises(MechvizError, match="Unknown patching site"):
        PatchingMaps.from_trace(trace, kinds=("neurons",))


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_summary_speaks_only_of_maps_on_screen(aspect: str) -> None:
    """Issue 21: at 1:1 the stream's map is gone by the summary; its caption said the stream."""
    scene = run(_media(aspect), aspect=aspect)
    text = scene.cues[-1].text
    assert ("stream" in text) == ("resid" in scene.maps.kinds), (scene.maps.kinds, text)
    for site in scene.site_list.sites:  # every map the caption names is on screen
        if site.kind != "resid" and site.name in text:
            assert site.kind in scene.maps.kinds


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_framed_rows_are_named_on_the_axis(aspect: str) -> None:
    """Issue 21: with every 5th row labelled, head 23.4's frame sat beside the label 24."""
    scene = run(_media(aspect), aspect=aspect)
    maps = scene.maps
    names = {t.text: t for t in scene.row_names}
    head = next(s for s in scene.sites if s.kind == "heads")
    assert head.name == "head 23.4"
    mob = names["23"]
    assert mob.get_center()[1] == pytest.approx(maps.slot_y(head.first), abs=0.03)
    # The regular labels it displaced left the screen (check_legible: nothing overlaps).
    texts = [t.text for t in scene.beat_texts["summary"]]
    assert texts.count("23") == 1
    check_legible(scene)

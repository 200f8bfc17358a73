"""WholeModel: the full-resolution still (size, bands, colour maps) and the animated scene."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_publishable import check_legible, run_scene
from test_scenes import check_control

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.tracing.io import load_trace
from mechviz.tracing.schema import Trace
from mechviz.visual import settings as scene_settings
from mechviz.visual.settings import SceneSettings, example_trace, from_environment
from mechviz.visual.wholemodel import (
    CMAPS,
    get_cmap,
    legend_number,
    resample,
    whole_image,
    whole_picture,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "data" / "small_trace.json"


def with_whole(trace: Trace) -> Trace:
    """``trace`` itself when it has a ``whole`` section; else one made from its pooled rows.

    The stand-in repeats ``resid.pooled`` / ``mlp.pooled`` to the contract's widths
    (C, M = ceil(1000 / P)), so the picture has the real trace's structure.
    """
    if getattr(trace, "whole", None) is not None:
        return trace
    P = trace.n_positions
    C = min(trace.model.d_model, -(-1000 // P))
    M = min(trace.model.d_mlp, -(-1000 // P))
    resid = trace.resid.pooled[0::2]  # embed, then each {l}_post: [Q, P, R]
    resid = np.repeat(resid, -(-C // resid.shape[-1]), axis=-1)[..., :C]
    mlp = np.repeat(trace.mlp.pooled, -(-M // trace.mlp.pooled.shape[-1]), axis=-1)[..., :M]
    object.__setattr__(trace, "whole", types.SimpleNamespace(width=1000, resid=resid, mlp=mlp))
    return trace


@pytest.fixture(scope="module")
def trace() -> Trace:
    return with_whole(load_trace(example_trace()))


def background_runs(column: np.ndarray, background: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of non-background pixels down a column of pixels."""
    painted = (np.abs(column.astype(int) - background).max(axis=-1) > 0).astype(int)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], painted, [0]])))
    return list(zip(edges[0::2], edges[1::2]))


# --- the still ------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1000, 4000])
def test_still_is_width_pixels_wide_with_a_band_per_block(
    trace: Trace, width: int, tmp_path: Path
) -> None:
    out = render_scene(
        "WholeModel", SceneSettings(trace=trace, width=width), "low", "png", tmp_path / "w.png"
    )
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[1] == width  # not a 854-px video frame
    pic = whole_picture(trace, width)
    assert image.shape == pic.image.shape
    L = trace.n_layers
    assert pic.n_blocks == L and len(pic.of("resid")) == len(pic.of("mlp")) == L
    assert len(pic.of("embed")) == len(pic.of("output")) == 1
    # Measured on the pixels: down a column of the rows there is one run for the
    # embedding, one per block (its MLP row above its residual row) and one for the output.
    x = pic.of("embed")[0].x0 + 2
    runs = background_runs(image[:, x], np.array(pic.background))
    body = [r for r in runs if pic.bands[0].y0 <= r[0] < pic.bands[-1].y1]
    assert len(body) == L + 2
    # Down the first head's patterns: one run per block.
    x = pic.of("attention")[0].x0 + 1
    body = [r for r in background_runs(image[:, x], np.array(pic.background))
            if pic.bands[0].y0 <= r[0] < pic.bands[-1].y1]  # fmt: skip
    assert len(body) == L
    # The text (title, labels, legend) is there: painted pixels above and below the bands.
    assert (image[: pic.bands[0].y0 - 2] != pic.background).any()
    assert (image[pic.bands[-1].y1 + 2 :] != pic.background).any()


def test_width_follows_the_setting_and_environment(trace: Trace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert whole_image(trace, 640).shape[1] == 640
    monkeypatch.setenv("MECHVIZ_WIDTH", "1200")
    monkeypatch.setenv("MECHVIZ_CMAP", "matrix")
    s = from_environment()
    assert (s.width, s.cmap) == (1200, "matrix")
    with pytest.raises(MechvizError, match="width must be 300 to 8000"):
        SceneSettings(trace=SMALL, width=100)


def test_colour_maps_are_named_and_differ(trace: Trace) -> None:
    assert list(CMAPS) == ["default", "matrix", "gray", "viridis"]
    images = {name: whole_picture(trace, 400, name) for name in CMAPS}
    for a in CMAPS:
        for b in CMAPS:
            if a < b:
                assert not np.array_equal(images[a].image, images[b].image), (a, b)
    matrix = images["matrix"]
    assert matrix.background == (0, 0, 0)  # green on black in either theme
    band = matrix.of("resid")[-1]
    rows = matrix.image[band.y0 : band.y1, band.x0 : band.x1].reshape(-1, 3).astype(int)
    assert (rows[:, 1] >= rows[:, 0]).all() and (rows[:, 1] >= rows[:, 2]).all()  # greens
    light = whole_picture(trace, 400, "default", "light")
    assert np.mean(light.background) > 200 > np.mean(images["default"].background)


def test_unknown_cmap_is_one_sentence_with_the_names(trace: Trace) -> None:
    for call in (
        lambda: get_cmap("jet"),
        lambda: whole_image(trace, 1000, "jet"),
        lambda: SceneSettings(trace=SMALL, cmap="jet"),
    ):
        with pytest.raises(MechvizError) as err:
            call()
        assert str(err.value) == (
            "Unknown colour map 'jet'; choose one of default, matrix, gray, viridis."
        )


def test_trace_without_whole_is_one_sentence(tmp_path: Path) -> None:
    old = load_trace(SMALL)
    if getattr(old, "whole", None) is not None:
        old = dataclasses.replace(old, whole=None)
    with pytest.raises(MechvizError) as err:
        whole_image(old)
    message = str(err.value)
    assert "no `whole` section" in message and "mechviz trace" in message
    assert message.endswith(".") and ". " not in message and "\n" not in message  # one sentence
    out = tmp_path / "old.png"
    with pytest.raises(MechvizError, match="no `whole` section"):
        render_scene("WholeModel", SceneSettings(trace=old), "low", "png", out)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written


def test_resample_keeps_the_sign_of_the_largest_and_repeats_when_growing() -> None:
    rows = np.array([[1.0, -5.0, 2.0, 3.0]])
    assert resample(rows, 2).tolist() == [[-5.0, 3.0]]
    assert resample(rows, 8).tolist() == [[1, 1, -5, -5, 2, 2, 3, 3]]


def test_transparent_still_has_alpha(trace: Trace, tmp_path: Path) -> None:
    out = render_scene(
        "WholeModel", SceneSettings(trace=trace, transparent=True, width=400), "low", "png",
        tmp_path / "t.png",
    )  # fmt: skip
    rgba = np.asarray(Image.open(out))
    assert rgba.shape[-1] == 4 and rgba[0, 0, 3] == 0 and (rgba[..., 3] == 255).mean() > 0.3


# --- the scene ------------------------------------------------------------------------------


def run(trace: Trace, tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    """Run the scene to its end, keeping its last frame; returns (scene, frame)."""
    scene = run_scene("WholeModel", tmp_path, trace=trace, **kw)
    frame = np.asarray(scene.renderer.get_frame())[..., :3].astype(np.int16)
    return scene, frame


def test_last_frame(trace: Trace, tmp_path: Path) -> None:
    scene, frame = run(trace, tmp_path)
    assert frame.shape == (480, 854, 3)
    assert scene.cover not in scene.mobjects  # the whole picture is uncovered
    # The picture fills its box: few background pixels inside it.
    b = scene.box
    px = 854 / scene.frame.width
    x0, x1 = int((b.x0 - scene.frame.x0) * px) + 2, int((b.x1 - scene.frame.x0) * px) - 2
    y0, y1 = int((scene.frame.y1 - b.y1) * px) + 2, int((scene.frame.y1 - b.y0) * px) - 2
    bg = np.array(scene.theme.background.to_rgb()) * 255
    inside = np.abs(frame[y0:y1, x0:x1] - bg).max(axis=-1) > 12
    assert inside.mean() > 0.6
    assert y1 - y0 > 180  # a large picture, not a thumbnail (its token labels take the rest)
    check_control("WholeModel", frame)


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_legible_at_every_aspect(trace: Trace, aspect: str, tmp_path: Path) -> None:
    scene, _ = run(trace, tmp_path, aspect=aspect)
    check_legible(scene)


@pytest.mark.parametrize("aspect", ["9:16", "16:9"])
def test_legible_light_long_and_matrix(aspect: str, tmp_path: Path) -> None:
    long = with_whole(load_trace(ROOT / "tests" / "data" / "mary_john.json"))
    check_legible(run(long, tmp_path, aspect=aspect, theme="light")[0])
    check_legible(run(long, tmp_path, aspect=aspect, cmap="matrix")[0])


def test_numbers_on_screen_are_the_trace_values(trace: Trace, tmp_path: Path) -> None:
    scene, _ = run(trace, tmp_path)
    texts = " ".join(t.text for t in scene.beat_texts["output"])
    token, prob = trace.prediction
    assert f"{prob:.2f}" in texts
    pic = whole_picture(trace, 400)
    assert legend_number(pic.resid_scale) in texts and legend_number(pic.mlp_scale) in texts
    axis = [m.text for m in scene.axis]  # layer numbers, every k-th
    assert axis[0] == "0" and len(axis) >= 3
    assert all(0 <= int(a) < trace.n_layers for a in axis)


def test_svg_is_real_vector_with_the_same_layout(trace: Trace, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    out = render_scene("WholeModel", SceneSettings(trace=trace), "low", "svg", tmp_path / "w.svg")
    root = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    pic = whole_picture(trace, 1000)
    assert root.get("width") == "1000" and root.get("height") == str(pic.image.shape[0])
    assert root.findall(f".//{ns}image") == []  # no embedded raster
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert any(trace.model.id in t for t in texts) and "29" in texts and "0" in texts
    rects = root.findall(f".//{ns}rect")
    L, H, P = trace.attention.pattern.shape[:3]
    assert len(rects) > L * H * P  # at least a run per pattern row
    # A pattern cell is a rectangle P times smaller than the pattern, at its place.
    first = pic.of("attention")[0]
    at = [(float(r.get("x", -1)), float(r.get("y", -1)), r) for r in rects]
    cells = [r for x, y, r in at if (x, y) == (first.x0, first.y0)]
    assert cells and float(cells[0].get("height")) == pytest.approx((first.y1 - first.y0) / P)
    with pytest.raises(MechvizError, match="SVG is for still pictures; Attention has none"):
        render_scene("Attention", SceneSettings(trace=trace), "low", "svg", tmp_path / "a.svg")
    assert not (tmp_path / "a.svg").exists()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_tiny_model_traces_draw_with_their_own_layer_count(family: str, tmp_path: Path) -> None:
    from conftest import make_tiny

    tiny = make_tiny(family, full=False).trace
    assert tiny.whole is not None
    for width in (300, 1000):
        pic = whole_picture(tiny, width)
        assert pic.image.shape[1] == width and pic.n_blocks == tiny.n_layers
        x = pic.of("embed")[0].x0 + 1
        runs = background_runs(pic.image[:, x], np.array(pic.background))
        body = [r for r in runs if pic.bands[0].y0 <= r[0] < pic.bands[-1].y1]
        assert len(body) == tiny.n_layers + 2
    scene, _ = run(tiny, tmp_path, aspect="9:16")
    check_legible(scene)


def test_legend_numbers_have_no_exponent() -> None:
    # Gemma's MLP scale printed as -1.07e+03 (issue 21, item 6).
    assert legend_number(-1070.4) == "-1,070" and legend_number(35988.2) == "35,988"
    assert legend_number(23.46) == "23.5" and legend_number(0.01234) == "0.0123"
    assert legend_number(4.0) == "4" and "e" not in legend_number(999.9)


def test_video_names_the_tokens_and_top1_its_captions_point_at(
    trace: Trace, tmp_path: Path
) -> None:
    """Issue 21: the video's captions spoke of tokens and a top-1 it did not draw."""
    from mechviz.model.tokens import readable, readable_tokens, shown

    for aspect in ("16:9", "1:1"):
        scene, _ = run(trace, tmp_path, aspect=aspect)
        tokens = [shown(t) for t in readable_tokens(trace.tokens.text)]
        top1 = [shown(readable(trace.token_text(int(i)))) for i in trace.output.top_ids[:, 0]]
        drawn = [m.original_text for m in scene.token_labels]
        every = scene.token_labels.every
        picks = list(range(0, len(tokens), every))
        picks[-1] = len(tokens) - 1
        assert drawn == [tokens[p] for p in picks]
        assert [m.original_text for m in scene.top1_labels][: len(picks)] == [
            top1[p] for p in picks
        ]
        assert scene.token_labels in scene.mobjects and scene.top1_labels in scene.mobjects
        words = " ".join(c.text for c in scene.cues)
        assert (f"({len(picks)} of {len(tokens)} named)" in words) == (every > 1), words
        # Each label stands over its own column: between the column's edges.
        band = scene.pic.of("embed")[0]
        x0, x1 = scene.x_of(band.x0), scene.x_of(band.x1)
        seg = (x1 - x0) / len(tokens)
        for p, m in zip(picks, scene.token_labels):
            assert x0 + seg * p - 0.02 <= m.get_center()[0] <= x0 + seg * (p + 1) + 0.02
            assert m.get_bottom()[1] >= scene.box.y1  # above the picture, not on it
        for m in scene.top1_labels:
            assert m.get_top()[1] <= scene.box.y0  # below it


def test_png_with_an_aspect_is_the_frame_not_the_still(tmp_path: Path) -> None:
    """Issue 21: `--format png --aspect 1:1` gave the 1000 x 1270 still, text 1.2% high."""
    from click.testing import CliRunner

    from mechviz.cli.main import main

    runner = CliRunner()
    out = tmp_path / "w.png"
    result = runner.invoke(main, ["scene", "WholeModel", "--format", "png", "--aspect", "1:1",
                                  "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (480, 480)
    result = runner.invoke(main, ["scene", "WholeModel", "--format", "png", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size[0] == 1000 and image.size[1] > 1000  # the still, its own shape
    result = runner.invoke(main, ["scene", "WholeModel", "--format", "png", "--aspect", "1:1",
                                  "--width", "2000", "-o", str(tmp_path / "x.png")])  # fmt: skip
    assert result.exit_code == 2 and "give one of the two" in result.output
    assert not (tmp_path / "x.png").exists()

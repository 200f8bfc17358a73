"""The Features scene and its blocks: one residual as a sum of SAE features, numbers the trace's.

The trace is a tiny model's with a small random SAE (:mod:`learned_scene_trace`),
so the tests never wait for training: its last frame against control data, its
text against the legibility rule at every aspect and theme, the bars, the dark
matter's share and the cards against the trace's arrays.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from learned_scene_trace import learned_trace
from manim import tempconfig
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.scenes.features import Features
from mechviz.visual import style
from mechviz.visual.learned import NOTE, FeatureCard, FeatureSum, dark_matter_share
from mechviz.visual.settings import SceneSettings
from mechviz.visual.text import cap_share

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # no `features` section

_SCENES: dict[tuple, Features] = {}


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    return learned_trace()


def run(tmp_path: Path, **kw: object) -> Features:
    """The scene run to its end (no frames drawn), once per settings."""
    if "trace" in kw:
        return run_scene(Features, tmp_path, **kw)
    key = tuple(sorted(kw.items()))
    if key not in _SCENES:
        _SCENES[key] = run_scene(Features, tmp_path, trace=learned_trace(), **kw)
    return _SCENES[key]


def test_features_last_frame(tmp_path: Path) -> None:
    scene = run(tmp_path, aspect="16:9", theme="dark")
    frame = np.asarray(scene.renderer.get_frame())[..., :3].astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.04, "the frame is almost empty"
    # The error's bar is hollow and muted: blue means "negative" in every other scene (issue 21).
    bar = scene.sum.row("error")[1]
    assert bar.get_fill_opacity() == 0 and bar.get_stroke_width() > 0
    assert bar.get_stroke_color().to_hex() == dark.muted.to_hex() != dark.negative.to_hex()
    assert "they do not add up" in scene.sum.note.original_text.replace("\n", " ")
    check_control("Features", frame)


@pytest.mark.parametrize("aspect", ["16:9", "1:1", "9:16"])
def test_the_bars_say_they_do_not_add_up(aspect: str, tmp_path: Path) -> None:
    """Issue 21: bars of norms beside ‖x‖ read as parts of a sum; they say they are not."""
    scene = run(tmp_path, aspect=aspect, theme="dark")
    said = [c.text for c in scene.cues if c.beat == "sum"]
    if scene.sum.note is None:  # no room under the rows: the caption says it
        assert NOTE in said, said
    else:
        assert scene.sum.note in scene.sum.get_family() and NOTE not in said


@pytest.mark.parametrize(
    ("aspect", "theme"),
    [("16:9", "dark"), ("1:1", "dark"), ("4:5", "light"), ("9:16", "dark"), ("9:16", "light")],
)
def test_features_legible(aspect: str, theme: str, tmp_path: Path) -> None:
    scene = run(tmp_path, aspect=aspect, theme=theme)
    check_legible(scene)
    assert list(scene.beat_texts) == list(Features.beats)


def test_numbers_on_screen_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, aspect="16:9", theme="dark")
    f = trace.features
    p = trace.n_positions - 1
    s = scene.sum
    assert s.position == p
    n = len(s.shown_ids)
    assert s.shown_ids == [int(i) for i in f.ids[p, :n]]
    assert s.shown_acts == pytest.approx([float(a) for a in f.acts[p, :n]])
    assert s.active == int((f.acts[p] > 0).sum())
    assert s.row("x").value == pytest.approx(float(f.resid_norm[p]))
    assert s.row("error").value == pytest.approx(float(f.error_norm[p]))
    assert s.row("bias").value == pytest.approx(float(f.bias_norm))
    share = dark_matter_share(f, p)
    assert share == pytest.approx(float(f.error_norm[p] / f.resid_norm[p]))
    assert s.row("error")[-1].text == f"darkmatter{share:.0%}"  # Text.text drops spaces
    # Bars share one scale: each length is its value times it.
    for key in ("x", "error", *(str(i) for i in s.shown_ids)):
        row = s.row(key)
        assert row[1].width == pytest.approx(row.value * s.scale, rel=1e-3)
    # Honest counts: "top n of k active".
    assert f"top {n} of {s.active} active" in scene.cues[0].text
    assert f"{share:.0%} of ‖x‖" in scene.cues[0].text
    # The quality line: the trace's held-out figures.
    assert f"{f.eval_ce_clean:.2f} → {f.eval_ce_sae:.2f} nats" in scene.cues[-1].text
    assert f"variance explained {f.eval_fve:.0%}" in scene.cues[-1].text


def test_untypical_position_says_so(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = trace.features
    for typical in (0, 1):
        marks = np.full_like(f.typical, typical)
        changed = dataclasses.replace(trace, features=dataclasses.replace(f, typical=marks))
        scene = run(tmp_path, trace=changed, aspect="9:16", beats=("sum",))
        said = any("Untypical position" in c.text for c in scene.cues)
        assert said == (typical == 0)
    check_legible(scene)


def test_query_picks_the_position(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scene = run(tmp_path, trace=trace, aspect="16:9", query=2, beats=("sum",))
    assert scene.sum.position == 2
    assert scene.sum.shown_ids[0] == int(trace.features.ids[2, 0])
    with pytest.raises(MechvizError, match="out of range"):
        run(tmp_path, trace=trace, query=99, beats=("sum",))


def test_trace_without_features_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    with pytest.raises(MechvizError) as err:
        render_scene(Features, SceneSettings(trace=MARY), "low", "png", out, progress=False)
    message = str(err.value)
    assert "no `features` section" in message and "\n" not in message
    assert not out.exists()


@pytest.fixture
def own_media(tmp_path: Path):  # type: ignore[no-untyped-def]
    with tempconfig({"media_dir": str(tmp_path)}):
        yield


def test_blocks_fit_their_room(trace, own_media) -> None:  # type: ignore[no-untyped-def]
    f = trace.features
    carded = next(int(i) for i in f.ids[-1] if int(i) in set(f.card_ids.tolist()))
    for (w, h), theme in zip([(7.0, 5.0), (7.4, 6.0), (6.2, 3.0)], ["dark", "light", "dark"]):
        card = FeatureCard.from_trace(trace, carded, width=w, theme=theme)
        mark = int(f.card_marked[list(f.card_ids).index(carded), 0])
        ctx = f.card_contexts[list(f.card_ids).index(carded), 0]
        if card.marked is not None:
            assert card.marked.text.replace(" ", "") in trace.token_text(int(ctx[mark])).replace(
                " ", "·"
            ) + trace.token_text(int(ctx[mark])).replace(" ", "")
        for block in (FeatureSum.from_trace(trace, width=w, height=h, theme=theme), card):
            name = type(block).__name__
            assert block.width <= w + 1e-6 and block.height <= h + 1e-6, (name, w, h)
            texts = [m for m in block.get_family() if hasattr(m, "_mv_font_size")]
            assert texts and all(cap_share(x) >= style.MIN_SHARE - 1e-3 for x in texts), name
    with pytest.raises(MechvizError, match="no card"):
        FeatureCard.from_trace(trace, -5)


def test_a_card_whose_marked_token_is_white_space_shows_its_marker(trace, own_media) -> None:  # type: ignore[no-untyped-def]
    """The real SAE's top feature of " is" fires on " " inside a line: it must still draw."""
    f = trace.features
    space = next(i for i, text in trace.vocab.items() if text == " ")
    contexts = f.card_contexts.copy()
    c = 0 if f.card_acts[0, 0] > 0 else 1
    mark = int(f.card_marked[0, c])
    contexts[0, c, mark] = space
    cards = dataclasses.replace(f, card_contexts=contexts)
    spaced = dataclasses.replace(trace, features=cards)
    card = FeatureCard.from_trace(spaced, int(f.card_ids[0]), width=7.0)
    assert card.marked is not None and card.marked.text.strip() != ""

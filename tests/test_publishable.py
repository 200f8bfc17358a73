"""Publishable scenes: legible text at every aspect and theme, beats, captions, honest choices.

The legibility rule: no text on screen has capitals shorter than 3% of the
frame's shorter side, none leaves the frame, none overlaps another. It is
checked on the texts on screen at the end of every beat (so on the last
frame and on middle ones), read from the scene's own mobjects.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from manim import tempconfig
from PIL import Image

from mechviz.analyses.readouts import answer_row, table_rows
from mechviz.model.tokens import LONE_SPACE, MARKS
from mechviz.rendering.scene import render_scene, scene_class
from mechviz.tracing.io import load_trace
from mechviz.visual import settings as scene_settings
from mechviz.visual import style
from mechviz.visual.settings import SceneSettings, example_trace, pixel_size
from mechviz.visual.text import Number, cap_share, label

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"
CORE = ["Embedding", "ResidualFlow", "Attention", "Unembedding"]


def run_scene(name: str | type, tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    """Run a scene (a name or a class) to its end, keeping its last frame; returns the scene."""
    kw.setdefault("trace", example_trace())
    settings = SceneSettings(**kw)  # type: ignore[arg-type]
    w, h = pixel_size(settings.aspect, 480)
    config = {
        "pixel_width": w,
        "pixel_height": h,
        "save_last_frame": True,
        "write_to_movie": False,
        "media_dir": str(tmp_path),
        "verbosity": "WARNING",
        "progress_bar": "none",
    }
    with tempconfig(config), scene_settings.use(settings):
        scene = (name if isinstance(name, type) else scene_class(name))()
        scene.render()
    return scene


def check_legible(scene) -> None:  # type: ignore[no-untyped-def]
    w, h = scene.frame.width, scene.frame.height
    assert min(w, h) == pytest.approx(style.SHORT_SIDE)
    assert scene.beat_texts, "no beat recorded its texts"
    assert not scene.cut_captions, f"captions cut to fit: {scene.cut_captions}"
    for beat, texts in scene.beat_texts.items():
        assert texts, f"{beat}: no text on screen"
        for t in texts:
            twice = [
                f"<U+{ord(m):04X}>"
                for m in [*MARKS.values(), LONE_SPACE]
                if f"<U+{ord(m):04X}>" in t.text
            ]
            assert not twice, f"{beat}: {t.text!r} shows a token twice (its mark as a code point)"
            assert t.share >= style.MIN_SHARE - 1e-3, (
                f"{beat}: {t.text!r} is too small ({t.share:.4f})"
            )
            inside = -w / 2 - 0.01 <= t.x0 and t.x1 <= w / 2 + 0.01
            inside &= -h / 2 - 0.01 <= t.y0 and t.y1 <= h / 2 + 0.01
            assert inside, f"{beat}: {t.text!r} leaves the frame"
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                dx = min(a.x1, b.x1) - max(a.x0, b.x0)
                dy = min(a.y1, b.y1) - max(a.y0, b.y0)
                assert dx <= 0.02 or dy <= 0.02, f"{beat}: {a.text!r} overlaps {b.text!r}"


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
@pytest.mark.parametrize("name", CORE)
def test_text_is_legible_at_every_aspect(name: str, aspect: str, tmp_path: Path) -> None:
    check_legible(run_scene(name, tmp_path, aspect=aspect))


@pytest.mark.parametrize("name", CORE)
def test_text_is_legible_light_and_long(name: str, tmp_path: Path) -> None:
    check_legible(run_scene(name, tmp_path, aspect="9:16", theme="light", trace=MARY))
    check_legible(run_scene(name, tmp_path, aspect="16:9", trace=MARY))


def test_min_text_meets_the_rule() -> None:
    assert style.cap_height(style.MIN_TEXT) / style.SHORT_SIDE >= style.MIN_SHARE
    assert style.cap_height(style.MIN_TEXT - 1) / style.SHORT_SIDE < style.MIN_SHARE
    small = label("tiny", 16)
    assert cap_share(small) < style.MIN_SHARE  # the measure sees small text
    turned = label("turned", 30).rotate(np.pi / 2)
    assert cap_share(turned) == pytest.approx(cap_share(label("turned", 30)), rel=1e-3)
    assert cap_share(Number("0.25", 24)) >= style.MIN_SHARE


def test_label_cuts_instead_of_shrinking() -> None:
    mob = label("an extremely long token that cannot fit", style.BODY_TEXT, max_width=2.0)
    assert mob.width <= 2.0 + 1e-6
    assert cap_share(mob) >= style.MIN_SHARE - 1e-3
    assert mob.text.endswith("…")


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_frame_pixels_follow_aspect_and_quality(aspect: str) -> None:
    for short in (480, 720, 1080, 2160):
        w, h = pixel_size(aspect, short)
        assert min(w, h) == short and w % 2 == 0 and h % 2 == 0
        a, b = scene_settings.ASPECTS[aspect]
        assert abs(w / h - a / b) < 0.01


def test_lens_table_always_holds_required_rows() -> None:
    trace = load_trace(example_trace())
    Y = trace.lens.top_ids.shape[0]
    for capacity in (3, 5, 9, 12, 40):
        rows = table_rows(trace, capacity)
        assert {0, Y - 1, answer_row(trace)} <= set(rows)
        assert len(rows) <= max(capacity, 3)
    assert table_rows(trace, 3, [4, 7]) == sorted({0, 5, 8, Y - 1, answer_row(trace)})


def test_answer_row_is_where_it_becomes_top1_and_stays() -> None:
    trace = load_trace(MARY)
    row = answer_row(trace)
    ranks = trace.lens.final_token_rank[:, -1]
    assert (ranks[row:] == 0).all()
    assert row == 0 or ranks[row - 1] != 0


def test_colour_follows_token_id_not_position() -> None:
    trace = load_trace(MARY)
    colors = style.TokenColors(trace.tokens.ids, style.DARK)
    texts = trace.tokens.text
    john = [i for i, t in enumerate(texts) if t == " John"]
    assert len(john) == 2
    assert colors(trace.tokens.ids[john[0]]) == colors(trace.tokens.ids[john[1]])
    to = [i for i, t in enumerate(texts) if t == " to"]
    assert colors(trace.tokens.ids[to[0]]) != colors(trace.tokens.ids[john[0]])
    distinct = list(dict.fromkeys(int(i) for i in trace.tokens.ids))
    shades = {colors(i).to_hex() for i in distinct[: len(style.DARK.tokens)]}
    assert len(shades) == min(len(distinct), len(style.DARK.tokens))


def test_beats_render_alone_and_unknown_beat_is_refused(tmp_path: Path) -> None:
    scene = run_scene("Unembedding", tmp_path, beats=("lens",))
    assert list(scene.beat_texts) == ["lens"]
    scene = run_scene("Unembedding", tmp_path, beats=("bars",))
    assert list(scene.beat_texts) == ["bars"]  # stops after its last chosen beat
    from mechviz.errors import MechvizError

    with pytest.raises(MechvizError, match="its beats are"):
        run_scene("Unembedding", tmp_path, beats=("nope",))


def test_every_scene_declares_and_runs_its_beats(tmp_path: Path) -> None:
    for name in CORE:
        cls = scene_class(name)
        assert cls.beats and all(len(line) < 100 for line in cls.beats.values())
        scene = run_scene(name, tmp_path)
        assert list(scene.beat_texts) == list(cls.beats)


def test_captions_srt_timed_to_the_render(tmp_path: Path) -> None:
    out = render_scene(
        "Unembedding",
        SceneSettings(trace=example_trace(), speed=4.0, hold=0.5),
        "low",
        "mp4",
        tmp_path / "u.mp4",
        progress=False,
        captions=True,
    )
    srt = out.with_suffix(".srt").read_text()
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(.+)\n", srt)
    assert len(cues) == 3  # one per beat
    assert "logit lens" in cues[-1][3].lower()

    def seconds(s: str) -> float:
        h, m, rest = s.split(":")
        return int(h) * 3600 + int(m) * 60 + float(rest.replace(",", "."))

    import av

    with av.open(str(out)) as video:
        duration = float(video.duration) / 1e6
    ends = [seconds(c[2]) for c in cues]
    starts = [seconds(c[1]) for c in cues]
    assert starts == sorted(starts) and all(e > s for s, e in zip(starts, ends))
    assert abs(ends[-1] - duration) < 0.25  # the last cue lasts to the end (with the hold)


def test_transparent_png_has_alpha_and_light_theme_is_light(tmp_path: Path) -> None:
    png = render_scene(
        "Unembedding",
        SceneSettings(trace=example_trace(), transparent=True, beats=("bars",)),
        "low",
        "png",
        tmp_path / "t.png",
        progress=False,
    )
    rgba = np.asarray(Image.open(png))
    assert rgba.shape[-1] == 4
    assert (rgba[..., 3] == 0).mean() > 0.5  # mostly see-through
    assert (rgba[..., 3] == 255).sum() > 1000  # but the bars and text are solid
    light = render_scene(
        "Unembedding",
        SceneSettings(trace=example_trace(), theme="light", aspect="9:16"),
        "low",
        "png",
        tmp_path / "l.png",
        progress=False,
    )
    rgb = np.asarray(Image.open(light).convert("RGB")).astype(int)
    assert rgb.shape == (854, 480, 3)
    assert rgb.mean() > 180  # a light background


def cli(*args: str, cwd: Path):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "mechviz", *args], cwd=cwd, capture_output=True, text=True
    )


def test_list_beats_and_story(tmp_path: Path) -> None:
    result = cli("scene", "Unembedding", "--list-beats", cwd=tmp_path)
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["pipeline", "bars", "lens"]
    story = cli("scene", "Story", "--list-beats", cwd=tmp_path)
    names = [line.split()[0] for line in story.stdout.splitlines()]
    assert names[0] == "Embedding.prompt" and names[-1] == "Unembedding.lens"
    assert not list(tmp_path.iterdir())  # listing writes nothing


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--beats", "nope", "--format", "png"], "its beats are"),
        (["--transparent", "--format", "gif"], "cannot keep a transparent"),
        (["--transparent", "--format", "mp4"], "cannot keep a transparent"),
        (["--gif-width", "300", "--format", "mp4"], "apply to GIFs"),
        (["--aspect", "3:2"], "'3:2' is not one of"),
        (["--theme", "sepia"], "'sepia' is not one of"),
        (["--layers", "0,99"], "out of range"),
        (["--layers", "a,b"], "comma-separated"),
        (
            ["--query", "3"],
            "applies to the Attention, LogitAttribution and Dictionaries scenes only",
        ),
    ],
)
def test_scene_option_errors_are_one_sentence(args: list[str], needle: str, tmp_path: Path) -> None:
    result = cli("scene", "Unembedding", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_gif_budget_and_width_through_the_cli(tmp_path: Path) -> None:
    result = cli(
        "scene",
        "Unembedding",
        "--beats",
        "bars",
        "--speed",
        "3",
        "--hold",
        "0.3",
        "--gif-width",
        "400",
        "--max-mb",
        "0.2",
        "--aspect",
        "1:1",
        "--captions",
        "-o",
        "u.gif",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "u.gif"
    assert out.stat().st_size <= 200_000
    with Image.open(out) as gif:
        assert gif.size[0] <= 400 and gif.size[0] == gif.size[1]
        assert gif.info.get("loop") == 0
    assert (tmp_path / "u.srt").read_text().startswith("1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.gif", "u.srt"]


def test_heads_command_lists_direct_effect_heads(tmp_path: Path) -> None:
    result = cli("heads", str(MARY), "-c", "direct", "-n", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "direct effect" in result.stdout and result.stdout.count("Mary") >= 3

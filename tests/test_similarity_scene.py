"""The EmbeddingSimilarity scene and its blocks: every number on screen is the trace's.

The scene reads ``trace.similarity`` of the committed example trace (the
default model's W_E on the seed's ten words, and the share of positive inner
products over 2,000 random tokens).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_publishable import check_legible, run_scene
from test_scenes import check_control, near

from mechviz.errors import MechvizError
from mechviz.rendering.scene import render_scene
from mechviz.scenes.embedding_similarity import EmbeddingSimilarity
from mechviz.tracing.io import load_trace
from mechviz.visual import settings as scene_settings
from mechviz.visual import style
from mechviz.visual.embedding import fmt_cosine
from mechviz.visual.settings import SceneSettings, example_trace
from mechviz.visual.similarity import (
    SEED_REFERENCE,
    PairList,
    ShareBars,
    WordMatrix,
    ranked_pairs,
    word_text,
)

ROOT = Path(__file__).resolve().parents[1]
MARY = ROOT / "tests" / "data" / "mary_john.json"  # schema 3: no `similarity` section


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    trace = load_trace(example_trace())
    assert trace.similarity is not None, "the example trace has no `similarity` section"
    return trace


def _text(mob) -> str:  # type: ignore[no-untyped-def]
    return mob.text.replace(" ", "")  # Text.text drops spaces


# --- the scene ---------------------------------------------------------------------------


def test_last_frame(tmp_path: Path) -> None:
    out = render_scene(
        EmbeddingSimilarity,
        SceneSettings(trace=example_trace()),
        "low",
        "png",
        tmp_path / "s.png",
        progress=False,
    )
    frame = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert frame.shape == (480, 854, 3)
    dark = style.DARK
    assert (~near(frame, dark.background, 12)).mean() > 0.05, "the frame is almost empty"
    # The matrix's diagonal and the share's bar are full red; the framed pairs are green.
    assert near(frame, dark.positive, 20).sum() > 1500
    assert near(frame, dark.highlight, 30).sum() > 50
    check_control("EmbeddingSimilarity", frame)


@pytest.mark.parametrize("aspect", list(scene_settings.ASPECTS))
def test_legible_at_every_aspect(aspect: str, tmp_path: Path) -> None:
    scene = run_scene(EmbeddingSimilarity, tmp_path, aspect=aspect)
    check_legible(scene)
    assert list(scene.beat_texts) == list(EmbeddingSimilarity.beats)
    W = len(scene.similarity.words)
    if aspect == "1:1":  # the legend of marks takes a line: the matrix may say it is cut
        said = (
            any(f"first{scene.matrix.n}of{W}words" in t.text for t in scene.beat_texts["matrix"])
            or scene.matrix.n == W
        )
        assert scene.matrix.n >= W - 3 and said, f"{aspect}: the matrix leaves words out unsaid"
    else:
        assert scene.matrix.n == W, f"{aspect}: the matrix leaves words out"


def test_legible_light(tmp_path: Path) -> None:
    check_legible(run_scene(EmbeddingSimilarity, tmp_path, aspect="9:16", theme="light"))
    # 16:9 light: test_numbers_on_screen_are_the_trace_s


def test_numbers_on_screen_are_the_trace_s(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = trace.similarity
    scene = run_scene(EmbeddingSimilarity, tmp_path, aspect="16:9", theme="light")
    check_legible(scene)
    np.testing.assert_array_equal(scene.matrix.values, s.cosine)
    assert [_text(t) for t in scene.matrix.row_labels] == [
        word_text(w).replace(" ", "") for w in s.words
    ]
    # The framed cells are the most and the least alike pairs.
    i, j = np.unravel_index(np.argmax(np.where(np.eye(len(s.words)), -2, s.cosine)), s.cosine.shape)
    k, n = np.unravel_index(np.argmin(s.cosine), s.cosine.shape)
    centres = {tuple(np.round(f.get_center()[:2], 6)) for f in scene.frames}
    for a, b in ((i, j), (j, i), (k, n), (n, k)):
        assert tuple(np.round(scene.matrix.cell_center(a, b)[:2], 6)) in centres
    pairs = scene.cues[1].text
    assert f"{word_text(s.words[min(i, j)])} and {word_text(s.words[max(i, j)])}" in pairs
    assert f"({fmt_cosine(s.cosine[i, j])})" in pairs and f"({fmt_cosine(s.cosine[k, n])})" in pairs
    # The listed pairs and their values.
    for row in [*scene.pairs.most, scene.pairs.least]:
        a, b, value = row.pair
        assert value == float(s.cosine[a, b])
        assert _text(row[1]) == fmt_cosine(value).replace(" ", "")
    # The share: its value, its bar, its sample, and the seed's figure labelled as such.
    share = scene.share
    assert _text(share.texts[0]) == f"{100 * s.positive_share:.1f}%"
    assert _text(share.texts[1]) == "81%"
    track = share.tracks[0].width
    assert share.fills[0].width == pytest.approx(track * s.positive_share, rel=1e-6)
    assert share.fills[1].width == pytest.approx(track * SEED_REFERENCE.share, rel=1e-6)
    assert share.tracks[1].width == pytest.approx(track)
    pairs_count = s.sample * (s.sample - 1) // 2
    assert f"{pairs_count:,}pairsof{s.sample:,}randomtokens" in _text(share.bars[0].note)
    assert "seed'sfigure,foranothermodel" in _text(share.bars[1].note)
    assert "Llama-27B" in _text(share.bars[1].name)
    text = scene.cues[-1].text
    assert f"{100 * s.positive_share:.1f}% of {pairs_count:,} pairs" in text
    assert "the seed found 81% for Llama-2 7B" in text


def test_trace_without_similarity_is_one_sentence(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    with pytest.raises(MechvizError) as err:
        render_scene(
            EmbeddingSimilarity, SceneSettings(trace=MARY), "low", "png", out, progress=False
        )
    message = str(err.value)
    assert "no `similarity` section" in message and "mechviz analyze" in message
    assert "\n" not in message
    assert not out.exists()


# --- the blocks ----------------------------------------------------------------------------


def test_ranked_pairs_against_a_sort() -> None:
    cosine = np.array(
        [[1, 0.2, -0.5, 0.2], [0.2, 1, 0.9, 0.0], [-0.5, 0.9, 1, 0.1], [0.2, 0, 0.1, 1]]
    )
    assert ranked_pairs(cosine) == [
        (1, 2, 0.9),
        (0, 1, 0.2),
        (0, 3, 0.2),  # a tie: in order of the pair
        (2, 3, 0.1),
        (1, 3, 0.0),
        (0, 2, -0.5),
    ]


ROOMS = [(13.6, 5.4), (4.2, 5.4), (7.4, 2.8), (7.4, 10.3)]  # ShareBars: 2.7 high at least


@pytest.mark.parametrize(
    ("width", "height", "theme"), [(w, h, "dark") for w, h in ROOMS] + [(7.4, 4.8, "light")]
)
def test_blocks_fit_their_room(trace, width: float, height: float, theme: str) -> None:  # type: ignore[no-untyped-def]
    for block in (
        PairList.from_trace(trace, 4, width=width, height=height, theme=theme),
        ShareBars.from_trace(trace, width=width, height=height, theme=theme),
    ):
        assert block.width <= width + 1e-6 and block.height <= height + 1e-6, type(block)
        assert np.allclose(block.get_center()[:2], 0, atol=1e-6)
    pairs = PairList.from_trace(trace, 4, width=width, height=height, theme=theme)
    ranked = ranked_pairs(trace.similarity.cosine.astype(np.float64))
    assert pairs.pairs == [*ranked[: len(pairs.most)], ranked[-1]]
    assert 1 <= len(pairs.most) <= 4


def test_word_matrix_fits_ten_words_below_a_title(trace) -> None:  # type: ignore[no-untyped-def]
    for width, height in ((13.6, 5.4), (7.4, 4.9)):  # 16:9 and 1:1 content rooms
        m = WordMatrix.from_trace(trace, width=width, height=height, theme="dark")
        assert m.n == len(trace.similarity.words)
        assert m.width <= width + 1e-6 and m.height <= height + 1e-6
    m = WordMatrix.from_trace(trace, width=7.4, height=2.0, theme="dark")
    assert m.n < len(trace.similarity.words)  # and says what it leaves out:
    assert _text(m.note) == f"first{m.n}of{len(trace.similarity.words)}words"
    assert m.note in m.labels and abs(m.note.get_bottom()[1] - m.grid.get_top()[1]) < 2.5


def test_share_bars_without_a_reference(trace) -> None:  # type: ignore[no-untyped-def]
    bars = ShareBars.from_trace(trace, width=7.4, height=5, theme="dark", reference=None)
    assert len(bars.bars) == 1 and bars.values == [trace.similarity.positive_share]


# --- other word lists ----------------------------------------------------------------------


def _with_words(trace, keep: list[int]):  # type: ignore[no-untyped-def]
    """The trace with its similarity cut to the words ``keep`` (their recorded cosines)."""
    s = trace.similarity
    cut = dataclasses.replace(
        s,
        words=[s.words[i] for i in keep],
        ids=s.ids[keep],
        cosine=s.cosine[np.ix_(keep, keep)],
    )
    return dataclasses.replace(trace, similarity=cut)


def test_three_words(trace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small = _with_words(trace, [4, 5, 8])  # male, female, girl
    scene = run_scene(EmbeddingSimilarity, tmp_path, trace=small, aspect="9:16")
    check_legible(scene)
    assert scene.matrix.n == 3 and len(scene.matrix.numbers) == 9  # room for every value
    assert len(scene.pairs.most) == 2 if scene.pairs is not None else True


@pytest.mark.slow
def test_many_words(default_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mechviz.analyses.dictionaries import similarity
    from mechviz.tracing.record import with_sections

    words = " cat, dog, horse, cow, red, blue, green, one, two, three, Paris, London, run, walk"
    sim = similarity(default_model, words.split(","), sample=300)
    big = with_sections(load_trace(example_trace()), default_model, similarity=sim)
    for aspect in ("16:9", "1:1"):
        scene = run_scene(EmbeddingSimilarity, tmp_path, trace=big, aspect=aspect)
        check_legible(scene)
        assert scene.matrix.n < 14 and scene.matrix.note is not None  # says what it leaves out
        assert "(" in scene.cues[1].text  # the pairs are named even when not in view

"""Text in every script: byte-fragment tokens made readable, real glyphs (not tofu) on screen."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mechviz.model.tokens import display_text, drawable, readable, readable_tokens, shown

# --- byte fragments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "short", "long"),
    [
        ("<0xD0>", "⟨D0:Cyr⟩", "byte D0 (starts a Cyrillic letter)"),
        ("<0xD1>", "⟨D1:Cyr⟩", "byte D1 (starts a Cyrillic letter)"),
        ("<0xD7>", "⟨D7:Heb⟩", "byte D7 (starts a Hebrew letter)"),
        ("<0xD9>", "⟨D9:Ara⟩", "byte D9 (starts an Arabic letter)"),
        ("<0xCE>", "⟨CE:Grk⟩", "byte CE (starts a Greek letter)"),
        ("<0xC3>", "⟨C3:Lat⟩", "byte C3 (starts an accented Latin letter)"),
        ("<0xE2>", "⟨E2:sym⟩", "byte E2 (starts punctuation or a symbol like — “ ” € → ✓)"),
        ("<0xE3>", "⟨E3:kana⟩", "byte E3 (starts a Japanese kana or CJK punctuation)"),
        ("<0xE9>", "⟨E9:CJK⟩", "byte E9 (starts a CJK ideograph: a Chinese character or kanji)"),
        ("<0xEC>", "⟨EC:Hang⟩", "byte EC (starts a Korean Hangul syllable)"),
        ("<0xF0>", "⟨F0:emoji⟩", "byte F0 (starts an emoji or another supplementary character)"),
    ],
)
def test_lone_lead_byte_names_its_script(token: str, short: str, long: str) -> None:
    assert readable(token) == short
    assert readable(token, long=True) == long


def test_more_bytes_narrow_the_script() -> None:
    assert readable("<0xE3><0x81>") == "⟨E381:kana⟩"  # U+3040-307F: hiragana
    assert readable("<0xE3><0x80>") == "⟨E380:punct⟩"  # U+3000-303F: 、。「」
    assert readable("<0xF0><0x9F>") == "⟨F09F:emoji⟩"
    assert readable("<0xEF><0xBC>") == "⟨EFBC:wide⟩"  # fullwidth ，！（
    assert readable("<0xE0><0xA4>") == "⟨E0A4:Deva⟩"
    assert readable("<0xE3><0x81>", long=True) == "bytes E3 81 (start a Japanese kana)"


def test_continuation_and_invalid_bytes() -> None:
    assert readable("<0x9C>") == "⟨9C:cont⟩"
    assert readable("<0x83><0xBD>") == "⟨83BD:cont⟩"
    assert readable("<0x9C>", long=True) == "byte 9C (continues a character begun earlier)"
    assert readable("<0x83><0xBD>", long=True) == "bytes 83 BD (continue a character begun earlier)"
    assert readable("<0xC0>") == "⟨C0:bad⟩"
    assert readable("<0xFF>", long=True) == "byte FF (never valid in UTF-8)"


def test_two_tokens_complete_a_cyrillic_letter() -> None:
    tokens = ["<0xD0>", "<0x9C>", "о", "ск", "в", "а"]  # SmolLM2 on "Москва"
    assert readable_tokens(tokens) == ["М…", "…М", "о", "ск", "в", "а"]
    long = readable_tokens(tokens, long=True)
    assert long[:2] == ["М… (token 1 of 2 spelling «М»)", "…М (token 2 of 2 spelling «М»)"]


def test_three_tokens_complete_a_cjk_ideograph() -> None:
    # 首 is E9 A6 96; SmolLM2 splits it one byte a token.
    assert readable_tokens(["<0xE9>", "<0xA6>", "<0x96>", "<0xE9>", "<0x83><0xBD>"]) == [
        "首…",
        "…首…",
        "…首",
        "都…",
        "…都",
    ]
    assert readable_tokens(["<0xE6><0x9D>", "<0xB1>", "<0xE4><0xBA>", "<0xAC>"]) == [
        "東…",
        "…東",
        "京…",
        "…京",
    ]


def test_four_tokens_complete_an_emoji() -> None:
    tokens = [" rockets", " <0xF0>", "<0x9F>", "<0x9A>", "<0x80>"]
    assert readable_tokens(tokens) == [" rockets", " 🚀…", "…🚀…", "…🚀…", "…🚀"]
    assert readable_tokens(tokens, long=True)[4] == "…🚀 (token 4 of 4 spelling «🚀»)"
    # SmolLM2's real split of 🍕 (F0 9F 8D 95), and a token ending one emoji and starting another.
    assert readable_tokens([" <0xF0><0x9F>", "<0x8D>", "<0x95>"]) == [" 🍕…", "…🍕…", "…🍕"]
    assert readable_tokens(["<0xF0><0x9F><0x9A>", "<0x80><0xF0><0x9F>", "<0x99><0x82>"]) == [
        "🚀…",
        "…🚀🙂…",
        "…🙂",
    ]


def test_text_with_a_trailing_fragment() -> None:
    assert readable("abc<0xE2>") == "abc⟨E2:sym⟩"
    assert readable("abc<0xE2>", long=True) == (
        "abc + byte E2 (starts punctuation or a symbol like — “ ” € → ✓)"
    )
    assert readable("о<0xD0>") == "о⟨D0:Cyr⟩"  # a real SmolLM2 token
    # ... and completed by the next token.
    assert readable_tokens(["о<0xD0>", "<0xB2>"]) == ["ов…", "…в"]
    # A fragment cut off by text does not join with bytes after the text.
    assert readable_tokens(["<0xD0>", "x", "<0x9C>"]) == ["⟨D0:Cyr⟩", "x", "⟨9C:cont⟩"]
    # A lead byte whose sequence never completes stays a fragment.
    assert readable_tokens(["Москва", " <0xD0>"]) == ["Москва", " ⟨D0:Cyr⟩"]


def test_a_prediction_read_with_its_prompt() -> None:
    prompt = ["Моск", "ва", " <0xD0>"]
    assert readable_tokens([*prompt, "<0xBE>"])[-1] == "…о"
    assert readable("<0xBE>") == "⟨BE:cont⟩"


def test_ordinary_tokens_unchanged() -> None:
    tokens = ["The", " capital", " of", " France", " is", "\n", " Москва", "東京", " 🚀", "", "<0x"]
    assert readable_tokens(tokens) == tokens
    assert [readable(t) for t in tokens] == tokens
    assert readable_tokens([]) == []
    # Long forms are caption text: the token's own spaces already visible.
    assert readable(" Paris", long=True) == "·Paris"


def test_composes_with_shown() -> None:
    assert shown(readable(" <0xD0>")) == "·⟨D0:Cyr⟩"
    assert [shown(t) for t in readable_tokens([" <0xF0><0x9F>", "<0x8D>", "<0x95>"])] == [
        "·🍕…",
        "…🍕…",
        "…🍕",
    ]
    assert shown(readable("  ")) == "␣␣"  # spaces only: open boxes, not dots


def test_drawable_marks_rtl_and_emoji() -> None:
    assert drawable("Paris") == "Paris"
    assert drawable("שלום") == "\u200eשלום"
    assert drawable("مصر") == "\u200eمصر"
    assert drawable("🙂ok") == "🙂\ufe0eok"
    assert drawable("❤\ufe0f") == "❤\ufe0e"  # an emoji-style request becomes text style
    assert drawable("🚀\ufe0e") == "🚀\ufe0e"


def test_real_tokenizer_fragments_all_join(default_model) -> None:  # noqa: ANN001
    """Every fragment of a whole prompt joins up: SmolLM2 on Russian, Japanese, emoji."""
    tokenizer = default_model.tokenizer
    for prompt in ["Москва — столица", "東京は日本の首都です", "I love pizza 🍕 and rockets 🚀🙂"]:
        ids = tokenizer(prompt)["input_ids"]
        texts = [display_text(tokenizer, i) for i in ids]
        assert any("<0x" in t for t in texts), texts  # the case under test happens
        out = readable_tokens(texts)
        assert not any("⟨" in t or "<0x" in t for t in out), out
        assert set(prompt) <= set("".join(out)), out


# --- real glyphs, not tofu ----------------------------------------------------------


def _fonts() -> str:
    if shutil.which("fc-list") is None:
        return ""
    return subprocess.run(["fc-list"], capture_output=True, text=True, check=False).stdout


NEEDED = ("DejaVuSans", "NotoSansCJK-Regular", "Symbola")
needs_fonts = pytest.mark.skipif(
    not all(name in _fonts() for name in NEEDED),
    reason=f"fonts {', '.join(NEEDED)} not installed (`make system` installs them)",
)


def _glyphs(text: str, media: Path) -> list[np.ndarray]:
    """The outline points of each glyph Manim draws for ``text`` in the house font."""
    from manim import Text, tempconfig

    from mechviz.visual import style

    with tempconfig({"media_dir": str(media)}):  # a fresh SVG cache: no stale tofu
        mob = Text(text, font=style.FONT)
    return [np.asarray(glyph.points) for glyph in mob.submobjects]


def _shape(points: np.ndarray) -> np.ndarray:
    """Points scaled into the unit box, to compare outlines regardless of size and place."""
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / np.where(high - low > 0, high - low, 1)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(_shape(a), _shape(b), atol=0.02)


@needs_fonts
def test_cjk_and_cyrillic_draw_real_glyphs(tmp_path: Path) -> None:
    """Pango's tofu is a hollow box plus the code point's hex digits; a real glyph is one shape.

    U+FFFF is a noncharacter, so no font has it: its tofu box is the reference.
    """
    tofu = _glyphs("\uffff", tmp_path)
    assert len(tofu) > 1  # the box, then the digits F F F F
    box = tofu[0]
    for char in "東京Москва":
        glyphs = _glyphs(char, tmp_path)
        assert len(glyphs) == 1, f"{char!r} drew {len(glyphs)} shapes (tofu or nothing)"
        assert not _same(glyphs[0], box), f"{char!r} is drawn as the tofu box"
    assert len(_glyphs("東京", tmp_path)) == 2
    assert len(_glyphs("Москва", tmp_path)) == 6


@needs_fonts
def test_rtl_and_emoji_draw_through_drawable(tmp_path: Path) -> None:
    """Alone on a line, Hebrew and Arabic need ``drawable``; emoji come from Symbola."""
    tofu = _glyphs("\uffff", tmp_path)[0]
    for text, count in [("שלום", 4), ("مصر", 3), ("🙂", 1), ("🚀", 1)]:
        glyphs = _glyphs(drawable(text), tmp_path)
        assert len(glyphs) == count, f"{text!r} drew {len(glyphs)} shapes, not {count}"
        assert not any(_same(g, tofu) for g in glyphs), f"{text!r} is drawn as tofu"

"""Text that stays legible: cached labels, fitting by cutting or wrapping, never shrinking.

Manim builds each ``Text`` through Pango and an SVG parse (tens of ms), so
labels are built once per (text, size, font, weight) and copied after that.
Fitting a label into a width never goes below :data:`style.MIN_TEXT`: a long
token is cut with ``…``, a sentence wraps onto more lines.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from manim import RIGHT, Mobject, Text, VGroup

from mechviz.model.tokens import drawable
from mechviz.visual import style

_CACHE: dict[tuple[str, float, str, str], Text] = {}
_CACHE_LIMIT = 4000


def _spread(text: Text) -> float:
    points = text.get_all_points()
    if len(points) == 0:
        return 0.0
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))


def label(
    text: str,
    size: float = style.BODY_TEXT,
    color: object = None,
    font: str = style.FONT,
    weight: str = "NORMAL",
    max_width: float | None = None,
) -> Text:
    """One line of text in the house font (token text should go through ``shown`` first).

    Args:
        text: What to write.
        size: Manim font size; sizes below ``style.MIN_TEXT`` break the legibility rule.
        color: Text colour (default: the dark theme's foreground).
        font: Font family.
        weight: Pango weight, ``"NORMAL"`` or ``"BOLD"``.
        max_width: Width in scene units to fit: shrink to ``style.MIN_TEXT`` at most,
            then cut the end with ``…``.

    """
    if max_width is not None:
        smallest = min(size, max(style.MIN_TEXT, size * 0.85))
        if measure(text, smallest, font) > max_width:
            text = label_text_fit(text, smallest, font, max_width)
            size = smallest
    mob = _cached(text, size, font, weight)
    if max_width is not None and mob.width > max_width:
        mob.scale(max_width / mob.width)  # a small overshoot of the estimate; slight shrink
    mob.set_color(color if color is not None else style.DARK.foreground)
    return mob


def paragraph(
    text: str,
    size: float = style.BODY_TEXT,
    color: object = None,
    max_width: float = 12.0,
    font: str = style.FONT,
    max_lines: int = 3,
) -> Text:
    """``text`` wrapped onto as few lines as fit ``max_width`` (at ``size``, never smaller).

    Lines break at spaces and newlines only: a no-break space (U+00A0) keeps two
    words on one line (``"top\u00a04"``).
    """
    words = _words(text)
    lines: list[str] = []
    for word in words:
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and measure(trial, size, font) <= max_width:
            lines[-1] = trial
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [" ".join(lines[max_lines - 1 :])]
    body = "\n".join(label_text_fit(line, size, font, max_width) for line in lines)
    mob = _cached(body, size, font, "NORMAL")
    mob.set_color(color if color is not None else style.DARK.foreground)
    mob._mv_cut = _words(body) != words  # cut to fit: a caption should never be
    return mob


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[ \t\n]+", text) if w]


def label_text_fit(text: str, size: float, font: str, max_width: float) -> str:
    """The longest start of ``text`` (with ``…``) that fits ``max_width`` at ``size``."""
    if measure(text, size, font) <= max_width:
        return text
    cut = text
    while len(cut) > 1:
        cut = cut[:-1]
        if measure(cut.rstrip() + "…", size, font) <= max_width:
            break
    return cut.rstrip() + "…"


@lru_cache(maxsize=8)
def _pil_font(font: str) -> tuple[object, float] | None:
    """A PIL font for ``font`` and its scale to scene units per font-size point."""
    try:
        import subprocess

        from PIL import ImageFont

        path = subprocess.run(
            ["fc-match", "-f", "%{file}", font], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        pil = ImageFont.truetype(path, 100)
    except Exception:  # no fontconfig or PIL: fall back to building the Text
        return None
    sample = "Hamburgefonstiv 0123"
    box = pil.getbbox(sample)
    return pil, float(style.make_text(sample, font=font, font_size=48).width) / (
        box[2] - box[0]
    ) / 48


def measure(text: str, size: float, font: str = style.FONT) -> float:
    """Width of ``text`` (its longest line) at ``size``, in scene units, without a ``Text``."""
    found = _pil_font(font)
    if found is None:
        return float(_cached(text, size, font, "NORMAL").width)
    pil, scale = found
    em = size / 72  # DejaVu's em in scene units; a CJK glyph is about one em wide
    widest = 0.0
    for line in text.split("\n"):
        wide = sum(unicodedata.east_asian_width(c) in "WF" for c in line)
        narrow = "".join(c for c in line if unicodedata.east_asian_width(c) not in "WF")
        width = wide * em
        if narrow.strip():
            box = pil.getbbox(narrow)  # type: ignore[attr-defined]
            width += (box[2] - box[0]) * scale * size
        widest = max(widest, width)
    return widest


def _cached(text: str, size: float, font: str, weight: str) -> Text:
    key = (text, float(size), font, weight)
    mob = _CACHE.get(key)
    if mob is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        mob = style.make_text(
            drawable(text), font=font, font_size=size, weight=weight, line_spacing=0.8
        )
        for glyph in mob.family_members_with_points():
            glyph.path_obj = None  # parse state; dropping it makes copies ~3x cheaper
        mob._mv_font_size = float(size)  # what the legibility check reads
        mob._mv_font = font
        mob._mv_spread = _spread(mob)
        mob._mv_drop = ink_drop(text, font, weight)
        _CACHE[key] = mob
    return _clone(mob)


def _clone(mob: Mobject) -> Mobject:
    """A copy of a cached label, ~10x cheaper than ``Mobject.copy`` (a deepcopy).

    Points and colour arrays are copied; read-only parse state (the SVG path
    objects) is shared.
    """
    new = copy.copy(mob)
    for key, value in mob.__dict__.items():
        if isinstance(value, np.ndarray):
            new.__dict__[key] = value.copy()
    new.updaters = []
    new.submobjects = [_clone(sub) for sub in mob.submobjects]
    if isinstance(getattr(mob, "chars", None), VGroup):
        new.chars = VGroup(*new.submobjects) if mob.chars.submobjects == mob.submobjects else None
    return new


def font_size_of(text: Text) -> float:
    """The font size ``text`` is drawn at now, after any scaling (rotation-proof)."""
    size = getattr(text, "_mv_font_size", None)
    spread0 = getattr(text, "_mv_spread", 0.0)
    if size is None or not spread0:
        return float(text.font_size)
    return size * _spread(text) / spread0


def cap_share(text: Text, frame_short_side: float = style.SHORT_SIDE) -> float:
    """Height of ``text``'s capitals as a share of the frame's shorter side."""
    font = getattr(text, "_mv_font", style.FONT)
    return style.cap_height(font_size_of(text), font) / frame_short_side


def _glyph_drop(ch: str, font: str, weight: str) -> float | None:
    """Where ``ch``'s ink ends, above (+) or below (-) the baseline, in capital heights.

    Measured from Pango's own drawing, once per character: ``ch`` and a capital
    ``H`` on one line, whose bottom is the baseline. None for a character that
    draws no ink (a blank, a format control).
    """
    key = (ch, font, weight)
    if key in _DROPS:
        return _DROPS[key]
    drop = None
    if not (ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc", "Zs", "Zl", "Zp")):
        mob = style.make_text(drawable(ch) + "H", font=font, font_size=48, weight=weight)
        glyphs = [g for g in mob.submobjects if g.has_points()]
        if len(glyphs) >= 2:
            ref = max(glyphs, key=lambda g: g.get_right()[0])
            ink = [g.get_bottom()[1] for g in glyphs if g is not ref]
            drop = (min(ink) - ref.get_bottom()[1]) / ref.height
    _DROPS[key] = drop
    return drop


_DROPS: dict[tuple[str, str, str], float | None] = {}


def ink_drop(text: str, font: str = style.FONT, weight: str = "NORMAL") -> float | None:
    """How far the lowest ink of one line of ``text`` is from its baseline, in capital heights.

    Positive when every character sits above the baseline (``·``, ``'``, ``-``),
    negative with a descender (``g``, ``y``). None for several lines or no ink.
    """
    if "\n" in text:
        return None
    drops = [d for d in (_glyph_drop(ch, font, weight) for ch in set(text)) if d is not None]
    return min(drops) if drops else None


def baseline(text: Text) -> float:
    """The y of ``text``'s baseline, from the font: where its capitals stand.

    Labels made here know how far their lowest ink is from the baseline
    (:func:`ink_drop`), so ``·a``, ``by``, ``-`` and ``·`` stand on the same line
    as ``Paris``. Other texts fall back to the median bottom of their glyphs.
    """
    drop = getattr(text, "_mv_drop", None)
    if drop is not None:
        size = font_size_of(text)
        cap = style.cap_height(size, getattr(text, "_mv_font", style.FONT))
        return float(text.get_bottom()[1]) - drop * cap
    bottoms = [c.get_bottom()[1] for c in text.family_members_with_points()]
    return float(np.median(bottoms)) if bottoms else float(text.get_bottom()[1])


def center_on(text: Text, point: np.ndarray | tuple[float, float, float]) -> Text:
    """Put ``text`` with its capitals' band centred on ``point`` (so rows share a baseline)."""
    size = font_size_of(text)
    cap = style.cap_height(size, getattr(text, "_mv_font", style.FONT))
    text.set_x(point[0])
    text.shift(np.array([0.0, point[1] - cap / 2 - baseline(text), 0.0]))
    return text


_DIGITS = "0123456789.,+-%"


class Number(VGroup):
    """A number in the mono font, built from cached glyphs (no Pango, no SVG parse).

    Counters that change every frame (probabilities, ranks, norms) use this:
    a fresh ``Text`` per value costs tens of milliseconds, a ``Number`` a few
    glyph copies. ``text`` is what it says; characters other than digits and
    ``.,+-%`` (or spaces) fall back to :func:`label`.
    """

    def __init__(
        self, text: str, size: float = style.MIN_TEXT, color: object = None, font: str = style.MONO
    ) -> None:
        super().__init__()
        self.text = text
        glyphs, advance, offsets = _digit_glyphs(float(size), font)
        # Only the digits share one advance in a proportional font.
        allowed = offsets if font == style.MONO else "0123456789"
        if any(c not in allowed and c != " " for c in text):
            self.add(*_clone(label(text, size, color, font=font)).submobjects)
        else:
            for k, char in enumerate(text):
                if char == " ":
                    continue
                glyph = _clone(glyphs[char])
                glyph.shift(np.array([k * advance + offsets[char] - glyph.get_center()[0], 0, 0]))
                self.add(glyph)
        self.set_color(color if color is not None else style.DARK.foreground)
        self._mv_font_size = float(size)
        self._mv_font = font
        self._mv_spread = _spread(self)
        self._mv_drop = ink_drop(text, font)


_NUMBERS: dict[tuple[str, float, str, str], Number] = {}


def number(
    text: str, size: float = style.MIN_TEXT, color: object = None, font: str = style.MONO
) -> Number:
    """A :class:`Number`, copied from a cache (counters repeat their values)."""
    key = (text, float(size), str(color), font)
    mob = _NUMBERS.get(key)
    if mob is None:
        if len(_NUMBERS) >= _CACHE_LIMIT:
            _NUMBERS.clear()
        mob = _NUMBERS[key] = Number(text, size, color, font)
    return _clone(mob)


def numbered(
    prefix: str, value: str, size: float = style.BODY_TEXT, color: object = None
) -> VGroup:
    """``prefix`` then ``value`` (digits) on one baseline, e.g. "after layer" and "12".

    A label that changes every step ("after layer 0", "after layer 1", ...)
    costs one ``Text`` per value; this builds the words once (cached) and the
    digits from glyphs.
    """
    words = label(prefix, size, color)
    digits = number(value, size, color, font=style.FONT)
    space = style.cap_height(size, style.FONT) * 0.45
    digits.next_to(words, RIGHT, buff=space)
    digits.shift(np.array([0.0, baseline(words) - baseline(digits), 0.0]))
    group = VGroup(words, digits)
    group.text = f"{prefix} {value}"
    return group


@lru_cache(maxsize=16)
def _digit_glyphs(
    size: float, font: str = style.MONO
) -> tuple[dict[str, Mobject], float, dict[str, float]]:
    """Glyphs of :data:`_DIGITS` in ``font``, the digits' advance, each glyph's offset.

    The digits share one advance in the house fonts (tabular figures).
    """
    ref = style.make_text(_DIGITS, font=font, font_size=size)
    zeros = style.make_text("0" * 8, font=font, font_size=size)
    advance = (zeros.submobjects[-1].get_center()[0] - zeros.submobjects[0].get_center()[0]) / 7
    glyphs, offsets = {}, {}
    for i, (char, glyph) in enumerate(zip(_DIGITS, ref.submobjects)):
        glyph.path_obj = None  # parse state; dropping it makes copies cheap
        glyphs[char] = glyph
        offsets[char] = glyph.get_center()[0] - ref.submobjects[0].get_center()[0] - i * advance
    return glyphs, float(advance), offsets


def block_height(lines: int, size: float = style.BODY_TEXT, font: str = style.FONT) -> float:
    """Height of a :func:`paragraph` of ``lines`` lines at ``size``, in scene units."""
    return float(_cached("\n".join(["Hg"] * lines), size, font, "NORMAL").height)


def spans(numbers: Sequence[int]) -> str:
    """Sorted whole numbers in words: ``[23, 24, 25, 28]`` is ``"23–25 and 28"`` (en dash)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

"""Readable token text: byte-level BPE pieces shown as the text they stand for."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mechviz.errors import MechvizError

REPLACEMENT = "\ufffd"


#: The marks that stand for invisible characters on screen (the legend's entries).
#: A character that is itself one of these marks is written as its code point
#: (``<U+00B7>``), so a mark always means the character it stands for.
MARKS = {" ": "·", "\xa0": "◦", "\n": "⏎", "\t": "⇥", "\r": "␍"}
#: What each mark means, for a legend.
MARK_NAMES = {
    "·": "space",
    "␣": "space",
    "◦": "no-break space",
    "⏎": "newline",
    "⇥": "tab",
    "␍": "return",
}
#: A token of spaces only is drawn with this mark for each space: a lone ``·`` is
#: too easily read as a full stop.
LONE_SPACE = "␣"
EMPTY = "∅"  # a token with no text at all
_RESERVED = set(MARK_NAMES) | {EMPTY}
_ZWJ = "\u200d"


def shown(text: str) -> str:
    """Token text made visible on screen, each invisible character by a mark of its own.

    A space is ``·`` (``␣`` in a token of spaces only, which a lone dot would
    pass for a full stop), a no-break space ``◦`` (hollow; ``⍽`` passed for ``␣``
    at 480p), a newline ``⏎``, a tab ``⇥``,
    a carriage return ``␍`` (:data:`MARKS`); other blanks and zero-width
    characters are written as their code point (``<U+200B>``), as is a character
    that is itself a mark, so no two different tokens look alike and nothing is
    drawn as an empty box. A token with no text is ``∅``.
    """
    if text and set(text) == {" "}:
        return LONE_SPACE * len(text)
    out = []
    for k, ch in enumerate(text):
        if ch in MARKS:
            out.append(MARKS[ch])
        elif ch == _ZWJ and 0 < k < len(text) - 1 and _emoji_like(text[k - 1]):
            out.append(ch)  # joins an emoji sequence (👩‍💻): part of what is drawn
        elif ch in _RESERVED or ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc"):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out) or EMPTY


def marks_in(texts: Sequence[str]) -> list[str]:
    """The marks :func:`shown` draws for ``texts`` (token texts), in legend order."""
    found = {ch for text in texts for ch in shown(text) if ch in MARK_NAMES}
    return [mark for mark in MARK_NAMES if mark in found]


def legend(texts: Sequence[str]) -> str:
    """What the marks drawn for ``texts`` stand for: ``"· = space, ⏎ = newline"``, or ""."""
    marks = marks_in(texts)
    names: dict[str, list[str]] = {}
    for mark in marks:
        names.setdefault(MARK_NAMES[mark], []).append(mark)
    return ", ".join(f"{'/'.join(m)} = {name}" for name, m in names.items())


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` table (``Ġ`` -> space, ...)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def display_text(tokenizer: Any, token_id: int) -> str:
    """What a token means as text; a lone fragment of a UTF-8 character as ``<0xE2>``."""
    text = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
    if REPLACEMENT not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(token_id)
    table = _byte_decoder()
    if isinstance(piece, str) and piece and all(ch in table for ch in piece):
        return _hex(bytes(table[ch] for ch in piece))
    return piece if isinstance(piece, str) else text


def _hex(raw: bytes) -> str:
    """Decode what is valid UTF-8 and show the stray bytes as ``<0xE2>``."""
    out = []
    text = raw.decode("utf-8", errors="surrogateescape")
    for ch in text:
        code = ord(ch)
        out.append(f"<0x{code - 0xDC00:02X}>" if 0xDC80 <= code <= 0xDCFF else ch)
    return "".join(out)


# --- byte fragments made readable -------------------------------------------------

_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
SPAN = "…"  # marks the side on which a character continues into a neighbouring token

# What a lone lead byte starts: (first byte, last byte, short tag, long description).
_LEADS: tuple[tuple[int, int, str, str], ...] = (
    (0xC2, 0xC2, "sym", "a Latin-1 sign like £ ° © or a no-break space"),
    (0xC3, 0xC9, "Lat", "an accented Latin letter"),
    (0xCA, 0xCB, "IPA", "a phonetic letter or modifier"),
    (0xCC, 0xCD, "mark", "a combining accent"),
    (0xCE, 0xCF, "Grk", "a Greek letter"),
    (0xD0, 0xD4, "Cyr", "a Cyrillic letter"),
    (0xD5, 0xD5, "Arm", "an Armenian letter"),
    (0xD6, 0xD6, "Arm/Heb", "an Armenian letter or a Hebrew point"),
    (0xD7, 0xD7, "Heb", "a Hebrew letter"),
    (0xD8, 0xDB, "Ara", "an Arabic letter"),
    (0xDC, 0xDF, "Syr", "a Syriac, Thaana or N'Ko letter"),
    (0xE0, 0xE0, "Ind", "an Indic, Thai, Lao or Tibetan letter"),
    (0xE1, 0xE1, "misc", "a Georgian, Ethiopic, Khmer, Vietnamese or other letter"),
    (0xE2, 0xE2, "sym", "punctuation or a symbol like — “ ” € → ✓"),
    (0xE3, 0xE3, "kana", "a Japanese kana or CJK punctuation"),
    (0xE4, 0xE9, "CJK", "a CJK ideograph: a Chinese character or kanji"),
    (0xEA, 0xED, "Hang", "a Korean Hangul syllable"),
    (0xEE, 0xEE, "PUA", "a private-use character"),
    (0xEF, 0xEF, "form", "a fullwidth form like ，！, a variation selector or other form"),
    (0xF0, 0xF0, "emoji", "an emoji or another supplementary character"),
    (0xF1, 0xF3, "rare", "a tag, variation selector or private-use character"),
    (0xF4, 0xF4, "PUA", "a private-use character"),
)

# Finer names once a continuation byte narrows the code point (3- and 4-byte characters).
_BLOCKS: tuple[tuple[int, int, str, str], ...] = (
    (0x0900, 0x097F, "Deva", "a Devanagari letter"),
    (0x0980, 0x0DFF, "Ind", "an Indic letter"),
    (0x0E00, 0x0E7F, "Thai", "a Thai letter"),
    (0x10A0, 0x10FF, "Geo", "a Georgian letter"),
    (0x1100, 0x11FF, "Hang", "a Hangul jamo"),
    (0x1200, 0x139F, "Eth", "an Ethiopic syllable"),
    (0x1780, 0x17FF, "Khm", "a Khmer letter"),
    (0x1E00, 0x1EFF, "Lat", "an accented Latin letter, as in Vietnamese"),
    (0x1F00, 0x1FFF, "Grk", "an accented Greek letter"),
    (0x2000, 0x206F, "punct", "punctuation like — ‘ ’ “ ” • …"),
    (0x2070, 0x209F, "sup", "a superscript or subscript"),
    (0x20A0, 0x20CF, "cur", "a currency sign like € ₽ ₹"),
    (0x2100, 0x218F, "sym", "a letter-like symbol or number form like ™ № ⅓"),
    (0x2190, 0x21FF, "arrow", "an arrow"),
    (0x2200, 0x22FF, "math", "a math symbol"),
    (0x2300, 0x24FF, "sym", "a technical or enclosed symbol"),
    (0x2500, 0x25FF, "box", "a box-drawing character or shape"),
    (0x2600, 0x27BF, "sym", "a symbol or dingbat like ☀ ✓ ❤"),
    (0x2E80, 0x2FFF, "CJK", "a CJK radical"),
    (0x3000, 0x303F, "punct", "CJK punctuation like 、 。 「 」"),
    (0x3040, 0x30FF, "kana", "a Japanese kana"),
    (0x3130, 0x318F, "Hang", "a Hangul jamo"),
    (0x3400, 0x9FFF, "CJK", "a CJK ideograph: a Chinese character or kanji"),
    (0xAC00, 0xD7AF, "Hang", "a Korean Hangul syllable"),
    (0xE000, 0xF8FF, "PUA", "a private-use character"),
    (0xF900, 0xFAFF, "CJK", "a CJK compatibility ideograph"),
    (0xFB50, 0xFDFF, "Ara", "an Arabic presentation form"),
    (0xFE00, 0xFE0F, "VS", "a variation selector: emoji or text style"),
    (0xFE70, 0xFEFE, "Ara", "an Arabic presentation form"),
    (0xFF00, 0xFFEF, "wide", "a fullwidth or halfwidth form like ，！（ ｶ"),
    (0x10000, 0x1CFFF, "rare", "a letter of a rare or historic script"),
    (0x1D000, 0x1DFFF, "math", "a math letter or musical symbol"),
    (0x1F000, 0x1FFFF, "emoji", "an emoji or pictograph"),
    (0x20000, 0x3FFFF, "CJK", "a rare CJK ideograph"),
    (0xE0000, 0xE007F, "tag", "a tag character, as in flag emoji"),
    (0xF0000, 0x10FFFF, "PUA", "a private-use character"),
)


def _needed(lead: int) -> int:
    """Length of the UTF-8 sequence ``lead`` starts (0: it starts none)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0  # a continuation byte, or C0, C1, F5-FF (never valid)


def _script(raw: bytes) -> tuple[str, str]:
    """``(short tag, long description)`` of the character that ``raw`` (incomplete) starts."""
    lead = raw[0]
    if len(raw) > 1:  # continuation bytes narrow the code point down to one range
        need = _needed(lead)
        code = lead & (0xFF >> (need + 1))
        for byte in raw[1:]:
            code = code << 6 | byte & 0x3F
        spare = 6 * (need - len(raw))
        low, high = code << spare, (code + 1 << spare) - 1
        for first, last, short, long in _BLOCKS:
            if first <= low and high <= last:
                return short, long
    for first, last, short, long in _LEADS:
        if first <= lead <= last:
            return short, long
    return "?", "a character"


@dataclass
class _Fragment:
    """Bytes of one token that make no whole character there or with their neighbours."""

    raw: bytes

    def short(self) -> str:
        digits = "".join(f"{b:02X}" for b in self.raw)
        if _needed(self.raw[0]) == 0:
            return f"⟨{digits}:{'cont' if 0x80 <= self.raw[0] <= 0xBF else 'bad'}⟩"
        return f"⟨{digits}:{_script(self.raw)[0]}⟩"

    def long(self) -> str:
        digits = " ".join(f"{b:02X}" for b in self.raw)
        many = len(self.raw) > 1
        noun = f"byte{'s' if many else ''} {digits}"
        if 0x80 <= self.raw[0] <= 0xBF:
            return f"{noun} (continu{'e' if many else 'es'} a character begun earlier)"
        if _needed(self.raw[0]) == 0:
            return f"{noun} (never valid in UTF-8)"
        return f"{noun} (start{'' if many else 's'} {_script(self.raw)[1]})"


@dataclass
class _Spanning:
    """A character whose bytes come from several tokens; ``part`` counts from 0."""

    char: str
    part: int
    parts: int

    def short(self) -> str:
        last = self.part == self.parts - 1
        return (SPAN if self.part else "") + self.char + ("" if last else SPAN)

    def note(self) -> str:
        return f"token {self.part + 1} of {self.parts} spelling «{self.char}»"


def _pieces(text: str) -> list[str | int]:
    """``text`` split into characters (str) and the bytes written as ``<0xD0>`` (int)."""
    out: list[str | int] = []
    at = 0
    for match in _BYTE.finditer(text):
        out.extend(text[at : match.start()])
        out.append(int(match.group(1), 16))
        at = match.end()
    out.extend(text[at:])
    return out


def readable_tokens(texts: Sequence[str], long: bool = False) -> list[str]:
    """Consecutive token texts with their byte fragments (``<0xD0>``) made readable.

    Byte-level BPE splits some UTF-8 characters across tokens, and the trace writes
    such a token's bytes as ``<0xD0>`` (see :func:`display_text`). Read as one
    sequence (the prompt's tokens, in order), the bytes are put back together:

    * A character spelled by several tokens is shown on each of them, with ``…`` on
      the side where it goes on into the neighbouring token: ``<0xD0>``, ``<0x9C>``
      read ``М…``, ``…М``; an emoji over three tokens reads ``🚀…``, ``…🚀…``, ``…🚀``.
    * Bytes that make no character read as what they are, in ``⟨…⟩``: a lead byte
      with the script it starts (``⟨D0:Cyr⟩``, ``⟨E381:kana⟩``, ``⟨F09F:emoji⟩``),
      a stray continuation byte as ``⟨9C:cont⟩``, a byte never valid in UTF-8
      (C0, C1, F5-FF) as ``⟨C0:bad⟩``. Script tags: Lat, Grk, Cyr, Arm, Heb, Ara,
      Ind, Deva, Thai, kana, CJK, Hang, sym, punct, emoji, ... (see ``_LEADS``).
    * Everything else, and every token without ``<0x..>``, is unchanged (a prompt that
      really contains the text ``<0xD0>`` is read as a byte too).

    Short forms fit a table cell and compose with :func:`shown` (they add no
    spaces), so scenes write ``shown(x)`` for each ``x`` in ``readable_tokens(texts)``.
    Long forms are finished caption text: the token's spaces already made visible
    with :func:`shown`, fragments in words (``byte D0 (starts a Cyrillic letter)``)
    and a note on characters spelled by several tokens
    (``М… (token 1 of 2 spelling «М»)``); do not pass them through :func:`shown`.

    For tokens that do not follow each other (the top-k predictions at one place)
    use :func:`readable`; to read a prediction in the light of the prompt, take the
    last of ``readable_tokens(prompt + [prediction])``.

    Args:
        texts: Token texts in order, as in ``trace.tokens.text``.
        long: Caption-length descriptions instead of table-cell ones.

    Returns:
        One string per token.

    """
    parsed = [_pieces(text) if "<0x" in text else [] for text in texts]
    # Every byte in reading order: (token, place among that token's pieces, byte).
    stream = [
        (t, k, piece)
        for t, pieces in enumerate(parsed)
        for k, piece in enumerate(pieces)
        if isinstance(piece, int)
    ]
    placed: dict[tuple[int, int], str | _Fragment | _Spanning | None] = {}
    i = 0
    while i < len(stream):
        t, k, lead = stream[i]
        need = _needed(lead)
        run = stream[i : i + need]
        char = _join(texts, parsed, run, need)
        if char is not None:  # one character: show it once (spanning: on every token)
            owners = sorted({tok for tok, _, _ in run})
            for j, (tok, place, _) in enumerate(run):
                first_here = j == 0 or run[j - 1][0] != tok
                if not first_here:
                    placed[(tok, place)] = None
                elif len(owners) == 1:
                    placed[(tok, place)] = char
                else:
                    placed[(tok, place)] = _Spanning(char, owners.index(tok), len(owners))
            i += need
            continue
        # A fragment: this byte and the continuation bytes right after it in this token.
        limit = len(stream) if 0x80 <= lead <= 0xBF else max(need, 1)
        j = i + 1
        while (
            j < len(stream)
            and j - i < limit
            and stream[j][0] == t
            and stream[j][1] == stream[j - 1][1] + 1
            and 0x80 <= stream[j][2] <= 0xBF
        ):
            placed[stream[j][:2]] = None
            j += 1
        placed[(t, k)] = _Fragment(bytes(b for _, _, b in stream[i:j]))
        i = j
    out = []
    for t, text in enumerate(texts):
        if not parsed[t]:
            out.append(shown(text) if long else text)
            continue
        items = [
            piece if isinstance(piece, str) else placed[(t, k)] for k, piece in enumerate(parsed[t])
        ]
        out.append(_long(items) if long else _short(items))
    return out


def readable(text: str, long: bool = False) -> str:
    """One token's text with its byte fragments made readable (see :func:`readable_tokens`).

    ``readable("<0xD0>")`` is ``"⟨D0:Cyr⟩"``, ``readable(" <0xF0><0x9F>")`` is
    ``" ⟨F09F:emoji⟩"``; with ``long=True``, ``"byte D0 (starts a Cyrillic letter)"``
    and ``"· + bytes F0 9F (start an emoji or pictograph)"``. Text without
    ``<0x..>`` comes back unchanged (short form).
    """
    return readable_tokens([text], long=long)[0]


def _join(
    texts: Sequence[str],
    parsed: list[list[str | int]],
    run: list[tuple[int, int, int]],
    need: int,
) -> str | None:
    """The character ``run`` spells, if its bytes follow each other with no text between."""
    if need == 0 or len(run) < need or any(not 0x80 <= b <= 0xBF for _, _, b in run[1:]):
        return None
    for (t, k, _), (u, m, _) in zip(run, run[1:]):
        if t == u:
            if m != k + 1:
                return None
        elif k != len(parsed[t]) - 1 or m != 0 or any(texts[s] for s in range(t + 1, u)):
            return None
    try:
        return bytes(b for _, _, b in run).decode("utf-8")
    except UnicodeDecodeError:  # overlong forms, surrogates, past U+10FFFF
        return None


def _short(items: list[str | _Fragment | _Spanning | None]) -> str:
    return "".join(item if isinstance(item, str) else item.short() for item in items if item)


def _long(items: list[str | _Fragment | _Spanning | None]) -> str:
    parts: list[str] = []
    notes: list[str] = []
    text = ""
    for item in items:
        if isinstance(item, _Fragment):
            if text:
                parts.append(shown(text))
                text = ""
            parts.append(item.long())
        elif isinstance(item, _Spanning):
            text += item.short()
            notes.append(item.note())
        elif item:
            text += item
    if text or not parts:
        parts.append(shown(text))
    note = f" ({'; '.join(notes)})" if notes else ""
    return " + ".join(parts) + note


# --- text as Manim can draw it ----------------------------------------------------

_LRM = "\u200e"  # LEFT-TO-RIGHT MARK
_VS_TEXT, _VS_EMOJI = "\ufe0e", "\ufe0f"  # variation selectors 15 (text) and 16 (emoji)


def _emoji_like(ch: str) -> bool:
    code = ord(ch)
    return 0x1F000 <= code <= 0x1FAFF or 0x2300 <= code <= 0x27BF or 0x2B00 <= code <= 0x2BFF


def drawable(text: str) -> str:
    """``text`` as Manim's ``Text`` (Pango, then an SVG parse) can draw it; looks the same.

    Two things otherwise vanish without a trace:

    * Text whose first strong character is right-to-left (Hebrew, Arabic) alone on
      its line: Pango lays the paragraph out right-to-left and nothing reaches the
      SVG. A leading LEFT-TO-RIGHT MARK keeps the paragraph left-to-right; the
      Hebrew or Arabic run inside it still reads right-to-left.
    * Emoji when a colour emoji font (Noto Color Emoji) is installed: Pango picks
      it for emoji, cairo writes its glyphs as bitmaps, and Manim drops bitmaps.
      A text-presentation selector (U+FE0E) after each emoji asks for an outline
      font instead (Symbola, from ``make system``). Without a colour font
      installed, emoji are drawn from Symbola anyway.

    Call it last, on what goes into ``Text``: ``drawable(shown(readable(x)))``.
    """
    out = []
    for k, ch in enumerate(text):
        if ch == _VS_EMOJI:
            ch = _VS_TEXT
        out.append(ch)
        after = text[k + 1 : k + 2]
        if _emoji_like(ch) and after not in (_VS_TEXT, _VS_EMOJI):
            out.append(_VS_TEXT)
    joined = "".join(out)
    if any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text):
        joined = _LRM + joined
    return joined


def token_offsets(tokenizer: Any, prompt: str, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token in ``prompt`` (``(0, 0)`` for special tokens)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(prompt, return_offsets_mapping=True)
        if enc["input_ids"] == ids:
            return [tuple(span) for span in enc["offset_mapping"]]
    spans, end = [], 0
    for i in range(len(ids)):
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=True)
        start, end = end, min(len(text), len(prompt))
        spans.append((start, end))
    return spans


def check_prompt(prompt: str) -> str:
    """One sentence for a prompt that is empty or not valid UTF-8 (checked before any work)."""
    if not isinstance(prompt, str):
        raise MechvizError(f"The prompt must be text (str), not {type(prompt).__name__}.")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = prompt[exc.start]
        byte = f"0x{ord(bad) - 0xDC00:02X}" if 0xDC80 <= ord(bad) <= 0xDCFF else repr(bad)
        raise MechvizError(
            f"The prompt is not valid UTF-8 text (byte {byte} at character {exc.start}); "
            "check your terminal's encoding."
        ) from None
    if not prompt.strip():
        raise MechvizError("The prompt is empty; give some text to trace.")
    return prompt

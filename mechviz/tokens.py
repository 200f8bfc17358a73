"""Readable token text: byte-level BPE pieces shown as the text they stand for."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from mechviz.errors import MechvizError

REPLACEMENT = "\ufffd"


_VISIBLE = {" ": "·", "\n": "⏎", "\t": "⇥", "\r": "␍"}


def shown(text: str) -> str:
    """Token text made visible on screen: spaces as ``·``, newlines as ``⏎``.

    Other blanks (no-break and zero-width spaces, ...) show as ``·`` too, so no
    token is drawn as an empty box.
    """
    out = "".join(
        _VISIBLE.get(ch, "·" if ch.isspace() or ch in "\u200b\u200c\u200d\ufeff" else ch)
        for ch in text
    )
    return out or "∅"


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

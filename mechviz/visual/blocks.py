"""What every building block shares: the trace it reads, its theme and the room it fits.

A building block is a Manim mobject made from one trace with a classmethod
``from_trace(trace, ..., width=None, height=None, theme=None)``:

* ``trace`` is a :class:`mechviz.tracing.schema.Trace` (or a path to one);
* ``width`` and ``height`` (scene units) are the room it must fit; by default the
  current frame less its margins, so a block is sized for the aspect it is
  rendered at. Text never shrinks below ``style.MIN_TEXT`` to fit: a block shows
  fewer items and says so on screen instead;
* ``theme`` is a :class:`mechviz.visual.style.Theme` or its name; by default the
  theme of the render in progress (``--theme``, ``mechviz.render(theme=...)`` or
  ``MECHVIZ_THEME``).

A block is built centred on the origin; place it with ``move_to``/``next_to``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from manim import config

from mechviz.model.tokens import readable, readable_tokens
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.style import Theme


def resolve_theme(theme: Theme | str | None = None) -> Theme:
    """``theme`` itself, the theme called ``theme``, or the current render's theme."""
    if isinstance(theme, Theme):
        return theme
    if theme is None:
        from mechviz.visual import settings

        theme = settings.current().theme
    return style.get_theme(theme)


def resolve_trace(trace: Trace | str | Path) -> Trace:
    """``trace`` itself, or the trace loaded from that path."""
    if isinstance(trace, Trace):
        return trace
    from mechviz.tracing.io import load_trace

    return load_trace(trace)


def room(width: float | None = None, height: float | None = None) -> tuple[float, float]:
    """The room a block may fill (scene units): the given sizes, else the frame less margins."""
    w = width if width is not None else config.frame_width - 2 * style.BUFF
    h = height if height is not None else config.frame_height - 2 * style.BUFF
    return float(w), float(h)


@dataclass
class TraceView:
    """A trace with what every block reads of it: readable token texts and token colours.

    Attributes:
        trace: The trace.
        theme: The theme colours come from.
        token_texts: The prompt's tokens as readable text (byte fragments joined).
        token_colors: Token id -> colour, the same id the same colour in every block.

    """

    trace: Trace
    theme: Theme
    token_texts: list[str] = field(init=False)
    token_colors: style.TokenColors = field(init=False)

    def __post_init__(self) -> None:
        self.token_texts = readable_tokens(self.trace.tokens.text)
        self.token_colors = style.TokenColors(self.trace.tokens.ids, self.theme)

    @classmethod
    def of(cls, trace: Trace | str | Path, theme: Theme | str | None = None) -> TraceView:
        """The view of ``trace`` (a Trace or a path) in ``theme`` (default: the current)."""
        return cls(resolve_trace(trace), resolve_theme(theme))

    def vocab_text(self, token_id: int) -> str:
        """A vocabulary token's text, byte fragments made readable."""
        return readable(self.trace.token_text(int(token_id)))

    def token_color(self, position: int) -> object:
        """The colour of the prompt's token at ``position``."""
        return self.token_colors(int(self.trace.tokens.ids[position]))


__all__ = ["TraceView", "resolve_theme", "resolve_trace", "room"]

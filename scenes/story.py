"""Story: the four core scenes chained into one explainer, with a transition between them."""

from __future__ import annotations

from typing import ClassVar

from manim import FadeIn, FadeOut

from mechviz.visual import style
from mechviz.visual.base import TraceScene
from mechviz.visual.text import label

from .attention import Attention
from .embedding import Embedding
from .residual_flow import ResidualFlow
from .unembedding import Unembedding

CHAPTERS: tuple[type[TraceScene], ...] = (Embedding, ResidualFlow, Attention, Unembedding)


class Story(TraceScene):
    """Embedding, ResidualFlow, Attention and Unembedding, one after another.

    Each chapter runs its own ``construct`` on this scene (they share one
    frame, theme and clock); its beats are named ``Chapter.beat`` for
    ``--beats`` and in the captions file.
    """

    chapters: ClassVar[tuple[type[TraceScene], ...]] = CHAPTERS
    beats: ClassVar[dict[str, str]] = {
        f"{c.__name__}.{name}": line for c in CHAPTERS for name, line in c.beats.items()
    }

    def construct(self) -> None:
        base_content = self.content
        for number, chapter in enumerate(self.chapters, start=1):
            self.content = base_content
            self._prefix = f"{chapter.__name__}."
            self.show_chapter_card(number, chapter)
            # Run the chapter's storyboard with this scene's state: a view of the
            # same object whose methods are the chapter's.
            view = object.__new__(chapter)
            view.__dict__ = self.__dict__
            chapter.construct(view)
            if number < len(self.chapters):
                self.clear_chapter()
        self._prefix = ""

    def beat_name(self, name: str) -> str:
        return getattr(self, "_prefix", "") + name

    def show_chapter_card(self, number: int, chapter: type[TraceScene]) -> None:
        """A short card between chapters: its number and what it shows."""
        wanted = self.settings.beats
        prefix = f"{chapter.__name__}."
        if wanted is not None and not any(b.startswith(prefix) for b in wanted):
            return
        card = label(
            f"{number}. {chapter.__name__}",
            style.TITLE_TEXT,
            self.theme.foreground,
            max_width=self.frame.width - 1,
        )
        self.play(FadeIn(card), run_time=0.5)
        self.play(FadeOut(card), run_time=0.4)

    def clear_chapter(self) -> None:
        if self.mobjects:
            self.play(FadeOut(*self.mobjects), run_time=0.5)
        self._caption = None
        self._title = None


__all__ = ["Story"]

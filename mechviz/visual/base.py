"""The base class of every mechviz scene: loads the trace, sets the look."""

from __future__ import annotations

from typing import Any

from manim import Scene

from mechviz.errors import raise_if_stopped
from mechviz.io import load_trace
from mechviz.schema import Trace
from mechviz.visual import settings as scene_settings
from mechviz.visual.style import BACKGROUND


class TraceScene(Scene):
    """A Manim scene that draws one trace (``self.trace``) and nothing else."""

    def setup(self) -> None:
        self.camera.background_color = BACKGROUND
        self.settings = scene_settings.current()
        self.trace: Trace = load_trace(self.settings.trace)

    def play(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()  # a stop signal that C code swallowed still ends the render here
        super().play(*args, **kwargs)

    def wait(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()
        super().wait(*args, **kwargs)

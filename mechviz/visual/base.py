"""The base class of every mechviz scene: loads the trace, sets the look."""

from __future__ import annotations

from manim import Scene

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

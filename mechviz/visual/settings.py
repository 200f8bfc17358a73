"""What a scene draws and how: mechviz's own settings object.

Manim's ``tempconfig`` drops keys it does not know, so these travel separately:
the CLI passes them with :func:`use`; plain ``manim`` runs read the environment
(one variable per option, listed in :data:`ENVIRONMENT` and in the README); with
neither, a scene draws the committed example trace in the dark theme at 16:9.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from mechviz.errors import MechvizError
from mechviz.tracing.schema import Trace

EXAMPLE_TRACE = "capital_of_france.json"
ASPECTS = {"16:9": (16, 9), "1:1": (1, 1), "4:5": (4, 5), "9:16": (9, 16)}
# --quality names the shorter side in pixels, and a default frame rate.
QUALITIES = {"low": (480, 15), "medium": (720, 30), "high": (1080, 60), "4k": (2160, 60)}
DEFAULT_HOLD = 1.5  # seconds the finished picture stays before the end (or the loop)


@dataclass(frozen=True)
class SceneSettings:
    """Everything a mechviz scene reads besides Manim's own config.

    Attributes:
        trace: The trace to draw: a file, or a :class:`mechviz.tracing.schema.Trace` in memory.
        other: Compare: the second trace, of a prompt with as many tokens (default:
            the example of an ablated run).
        layer, head: Attention: the head to show (default: chosen by the scene's rule).
            Dictionaries: ``layer`` is the layer the middle dictionary is read
            after (default: the middle one).
        query: Attention: the query position whose arcs are drawn; LogitAttribution:
            the position whose prediction is split; Dictionaries: the position
            read (default: the last).
        layers: Unembedding: the layers of the lens table (default: chosen, always
            holding the embedding, the last layer and where the answer becomes top-1);
            Neurons: the layers paged through; Dictionaries: the tables' layers.
        aspect: ``"16:9"``, ``"1:1"``, ``"4:5"`` or ``"9:16"``; the layout follows it.
        theme: ``"dark"`` or ``"light"``.
        transparent: Draw no background (PNG with alpha, MOV/WebM with alpha).
        fps: Frames per second (default: from the quality).
        beats: Render only these beats (default: all); see ``--list-beats``.
        speed: Run times are divided by this (2.0 plays twice as fast).
        hold: Seconds the last picture is held (default :data:`DEFAULT_HOLD`).
        fade: End with a short fade back to the empty frame (for looping GIFs).
        captions: Write an SRT file here: one cue per beat, timed to the render.
        width: WholeModel: the still's width in pixels (default 1000); its height
            follows the model's depth.
        cmap: WholeModel: the colour map, a name of :data:`mechviz.visual.wholemodel.CMAPS`.

    """

    trace: Path | Trace
    other: Path | Trace | None = None
    layer: int | None = None
    head: int | None = None
    query: int | None = None
    layers: tuple[int, ...] | None = None
    aspect: str = "16:9"
    theme: str = "dark"
    transparent: bool = False
    fps: float | None = None
    beats: tuple[str, ...] | None = None
    speed: float = 1.0
    hold: float = DEFAULT_HOLD
    fade: bool = False
    captions: Path | None = None
    width: int | None = None
    cmap: str = "default"

    def __post_init__(self) -> None:
        from mechviz.visual.wholemodel import MAX_WIDTH, MIN_WIDTH, get_cmap

        get_cmap(self.cmap)  # an unknown name: one sentence listing the names
        if self.width is not None and not (
            type(self.width) is int and MIN_WIDTH <= self.width <= MAX_WIDTH
        ):
            raise MechvizError(
                f"width must be {MIN_WIDTH} to {MAX_WIDTH} pixels; got {self.width!r}."
            )
        if self.aspect not in ASPECTS:
            raise MechvizError(
                f"Unknown aspect {self.aspect!r}; choose one of {', '.join(ASPECTS)}."
            )
        if self.theme not in ("dark", "light"):
            raise MechvizError(f"Unknown theme {self.theme!r}; choose dark or light.")
        for name, value, low in (("speed", self.speed, 0.05), ("hold", self.hold, 0.0)):
            if not (math.isfinite(value) and value >= low) or value > 100:
                raise MechvizError(f"{name} must be a number from {low:g} to 100; got {value!r}.")
        if self.fps is not None and not (math.isfinite(self.fps) and 1 <= self.fps <= 120):
            raise MechvizError(f"fps must be from 1 to 120; got {self.fps!r}.")


# Environment variables for plain `manim` runs: variable -> (field, meaning).
ENVIRONMENT = {
    "MECHVIZ_TRACE": ("trace", "trace file to draw"),
    "MECHVIZ_OTHER": ("other", "Compare: the second trace file"),
    "MECHVIZ_LAYER": ("layer", "Attention: layer; Dictionaries: middle-dictionary layer"),
    "MECHVIZ_HEAD": ("head", "Attention: head"),
    "MECHVIZ_QUERY": ("query", "Attention, LogitAttribution, Dictionaries: position"),
    "MECHVIZ_LAYERS": ("layers", "Unembedding, Neurons, Dictionaries: layers, e.g. 0,5,29"),
    "MECHVIZ_ASPECT": ("aspect", "16:9, 1:1, 4:5 or 9:16"),
    "MECHVIZ_THEME": ("theme", "dark or light"),
    "MECHVIZ_TRANSPARENT": ("transparent", "1 for no background (also manim -t)"),
    "MECHVIZ_FPS": ("fps", "frames per second"),
    "MECHVIZ_BEATS": ("beats", "comma-separated beats to render"),
    "MECHVIZ_SPEED": ("speed", "run-time divisor"),
    "MECHVIZ_HOLD": ("hold", "seconds to hold the last picture"),
    "MECHVIZ_FADE": ("fade", "1 to fade back at the end"),
    "MECHVIZ_CAPTIONS": ("captions", "write an SRT file here"),
    "MECHVIZ_WIDTH": ("width", "WholeModel: the still's width in pixels"),
    "MECHVIZ_CMAP": ("cmap", "WholeModel: default, matrix, gray or viridis"),
}

_current: SceneSettings | None = None


# Scenes whose subject the default example lacks draw their own example.
SCENE_EXAMPLES = {
    "Ablation": "france_ablated.json",  # heads 23.4 and 29.1 ablated
    "Patching": "france_italy_patch.json",  # "The capital of France/Italy is"
    # Traced with --tuned-lens --sae: the lens and SAE trained by `mechviz train-lens`, `train-sae`
    "TunedLens": "capital_of_france_learned.json",
    "Features": "capital_of_france_learned.json",
}


def example_trace(scene: str | None = None) -> Path:
    """The real example trace shipped with mechviz (default model, default prompt).

    ``scene``: a scene with an example of its own (``SCENE_EXAMPLES``, such as
    an ablated run for ``Ablation``) gets that one.
    """
    name = SCENE_EXAMPLES.get(scene or "", EXAMPLE_TRACE)
    return Path(str(resources.files("mechviz.assets").joinpath("traces", name)))


def _parse(name: str, field_name: str, value: str) -> object:
    kind = {f.name: str(f.type) for f in fields(SceneSettings)}[field_name]
    try:
        if field_name in ("trace", "other", "captions"):
            return Path(value)
        if field_name in ("transparent", "fade"):
            if value.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError
            return value.lower() in ("1", "true", "yes")
        if field_name == "layers":
            return tuple(int(v) for v in value.split(",") if v.strip())
        if field_name == "beats":
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if "int" in kind:
            return int(value)
        if "float" in kind:
            return float(value)
        return value
    except ValueError:
        raise MechvizError(f"{name} has a value that does not fit: {value!r}.") from None


def from_environment() -> SceneSettings:
    """Settings from ``MECHVIZ_*`` variables (plain ``manim`` runs)."""
    values: dict[str, object] = {"trace": example_trace()}
    for name, (field_name, _) in ENVIRONMENT.items():
        value = os.environ.get(name)
        if value not in (None, ""):
            values[field_name] = _parse(name, field_name, value)
    return SceneSettings(**values)  # type: ignore[arg-type]


def current() -> SceneSettings:
    """The settings of the render in progress: :func:`use`'s, else the environment's."""
    if _current is not None:
        return _current
    return from_environment()


@contextlib.contextmanager
def use(settings: SceneSettings) -> Iterator[SceneSettings]:
    """Render with ``settings`` in this process (what ``mechviz scene`` does)."""
    global _current
    previous, _current = _current, settings
    try:
        yield settings
    finally:
        _current = previous


def frame_size(width_px: int, height_px: int) -> tuple[float, float]:
    """Frame size in scene units for a picture of these pixels: the shorter side is 8."""
    from mechviz.visual.style import SHORT_SIDE

    if width_px >= height_px:
        return SHORT_SIDE * width_px / height_px, SHORT_SIDE
    return SHORT_SIDE, SHORT_SIDE * height_px / width_px


def pixel_size(aspect: str, short_side: int) -> tuple[int, int]:
    """Pixel width and height of ``aspect`` with the shorter side ``short_side`` (even)."""
    w, h = ASPECTS[aspect]
    long = int(round(short_side * max(w, h) / min(w, h) / 2)) * 2
    return (long, short_side) if w >= h else (short_side, long)

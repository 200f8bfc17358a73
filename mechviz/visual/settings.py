"""Which trace, layer and head a scene draws: mechviz's own settings object.

Manim's ``tempconfig`` drops keys it does not know, so these travel separately:
the CLI passes them with :func:`use`, plain ``manim`` runs read the environment
(``MECHVIZ_TRACE``, ``MECHVIZ_LAYER``, ``MECHVIZ_HEAD``), and with neither a
scene draws the committed example trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mechviz.errors import MechvizError

EXAMPLE_TRACE = "capital_of_france.json"


@dataclass(frozen=True)
class SceneSettings:
    trace: Path
    layer: int | None = None  # Attention: which layer (default: chosen by rule)
    head: int | None = None  # Attention: which head (default: chosen by rule)


_current: SceneSettings | None = None


def example_trace() -> Path:
    """The real example trace shipped with mechviz (default model, default prompt)."""
    return Path(str(resources.files("mechviz.assets").joinpath("traces", EXAMPLE_TRACE)))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise MechvizError(f"{name} must be a whole number; got {value!r}.") from None


def current() -> SceneSettings:
    if _current is not None:
        return _current
    trace = os.environ.get("MECHVIZ_TRACE")
    return SceneSettings(
        trace=Path(trace) if trace else example_trace(),
        layer=_env_int("MECHVIZ_LAYER"),
        head=_env_int("MECHVIZ_HEAD"),
    )


@contextlib.contextmanager
def use(settings: SceneSettings) -> Iterator[SceneSettings]:
    """Render with ``settings`` in this process (what ``mechviz scene`` does)."""
    global _current
    previous, _current = _current, settings
    try:
        yield settings
    finally:
        _current = previous

"""mechviz: explainer animations from one real forward pass of a language model.

The public API is this package's ``__all__`` and ``mechviz.visual.__all__``;
every other module and name is internal and may change between versions.

>>> import mechviz
>>> t = mechviz.trace("The capital of France is")      # one forward pass -> Trace
>>> t = mechviz.analyze(t, versus=" London")        # attribution, dictionaries, weights
>>> t.save("france.json")
>>> mechviz.render("ResidualFlow", t, format="gif")    # -> Path; shows inline in Jupyter
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Names resolved on first use, so `import mechviz` stays light (no torch, no Manim).
_LAZY = {
    "trace": "mechviz.api",
    "analyze": "mechviz.api",
    "patch": "mechviz.api",
    "load": "mechviz.api",
    "render": "mechviz.api",
    "Rendered": "mechviz.api",
    "Trace": "mechviz.tracing.schema",
    "SceneSettings": "mechviz.visual.settings",
    "MechvizError": "mechviz.errors",
    "SCENES": "mechviz.scenes",
}

__all__ = [
    "SCENES",
    "MechvizError",
    "Rendered",
    "SceneSettings",
    "Trace",
    "__version__",
    "analyze",
    "load",
    "patch",
    "render",
    "trace",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mechviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

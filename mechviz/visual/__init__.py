"""Manim building blocks for scenes of your own, and the base class of every scene.

Nothing here imports torch or transformers: scenes read traces, never models.
The public names are :data:`__all__`; each block is a Manim mobject with a
``from_trace(trace, ..., width=None, height=None, theme=None)`` classmethod
(see :mod:`mechviz.visual.blocks` for the convention). Names load on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    # the scene base and layout
    "TraceScene": "mechviz.visual.base",
    "Box": "mechviz.visual.base",
    "TraceView": "mechviz.visual.blocks",
    # look: themes and text sizes
    "Theme": "mechviz.visual.style",
    "DARK": "mechviz.visual.style",
    "LIGHT": "mechviz.visual.style",
    "get_theme": "mechviz.visual.style",
    "MIN_TEXT": "mechviz.visual.style",
    "BODY_TEXT": "mechviz.visual.style",
    "TITLE_TEXT": "mechviz.visual.style",
    "BIG_TEXT": "mechviz.visual.style",
    "label": "mechviz.visual.text",
    "paragraph": "mechviz.visual.text",
    # blocks
    "TokenBox": "mechviz.visual.mobjects",
    "TokenRow": "mechviz.visual.mobjects",
    "ProbBars": "mechviz.visual.mobjects",
    "MorphBars": "mechviz.visual.mobjects",
    "SwitchAt": "mechviz.visual.mobjects",
    "Heatmap": "mechviz.visual.mobjects",
    "AttentionGrid": "mechviz.visual.attention",
    "AttentionArcs": "mechviz.visual.attention",
    "HeadGallery": "mechviz.visual.attention",
    "LensTable": "mechviz.visual.lens",
    "UnembedPipeline": "mechviz.visual.lens",
    "LensReadout": "mechviz.visual.readout",
    "ResidualStreams": "mechviz.visual.residual",
    "WriteBars": "mechviz.visual.residual",
    "EmbeddingRows": "mechviz.visual.embedding",
    "CosineMatrix": "mechviz.visual.embedding",
    "NeuronRow": "mechviz.visual.neurons",
    "LayerCounts": "mechviz.visual.neurons",
    "ActivationLegend": "mechviz.visual.neurons",
    "LogitWaterfall": "mechviz.visual.attribution",
    "LensTrack": "mechviz.visual.attribution",
    "TopHeads": "mechviz.visual.attribution",
    "DictionaryTable": "mechviz.visual.dictionaries",
    "MiddleTable": "mechviz.visual.dictionaries",
    "WordMatrix": "mechviz.visual.similarity",
    "PairList": "mechviz.visual.similarity",
    "ShareBars": "mechviz.visual.similarity",
    "RatioPanels": "mechviz.visual.weights",
    "ParameterTally": "mechviz.visual.weights",
    "HeadTokens": "mechviz.visual.weights",
    "HeadMap": "mechviz.visual.ablation",
    "BeforeAfter": "mechviz.visual.ablation",
    "LensCompare": "mechviz.visual.ablation",
    "PatchingMaps": "mechviz.visual.patching",
    "PatchingLegend": "mechviz.visual.patching",
    "LensPair": "mechviz.visual.learned",
    "LensCurves": "mechviz.visual.learned",
    "FeatureSum": "mechviz.visual.learned",
    "FeatureCard": "mechviz.visual.learned",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mechviz.visual' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

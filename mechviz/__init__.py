"""mechviz: explainer animations from one real forward pass of a language model."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

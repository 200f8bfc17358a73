"""Manim building blocks for mechviz scenes: style, mobjects and the scene base.

Nothing here imports torch or transformers: scenes read traces, never models.
"""

from __future__ import annotations

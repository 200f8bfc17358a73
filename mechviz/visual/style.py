"""One visual grammar: colours, fonts, sizes and the maps from values to colour."""

from __future__ import annotations

import numpy as np
from manim import ManimColor, interpolate_color

BACKGROUND = ManimColor("#0e1116")
FOREGROUND = ManimColor("#e6e6e6")
MUTED = ManimColor("#8b949e")
FONT = "DejaVu Sans"
MONO = "DejaVu Sans Mono"
# Signed values: blue for negative, red for positive (3Blue1Brown's convention).
NEGATIVE = ManimColor("#4a90e2")
POSITIVE = ManimColor("#e5534b")
NEUTRAL = ManimColor("#1c2128")
# Probabilities and attention weights: dark to warm yellow.
PROB_LOW = ManimColor("#1c2128")
PROB_HIGH = ManimColor("#f2c14e")
ATTN_COLOR = ManimColor("#f0883e")
MLP_COLOR = ManimColor("#a371f7")
HIGHLIGHT = ManimColor("#3fb950")
TOKEN_COLORS = [
    ManimColor(c)
    for c in (
        "#58a6ff",
        "#3fb950",
        "#d29922",
        "#f778ba",
        "#a371f7",
        "#39c5cf",
        "#f0883e",
        "#8b949e",
    )
]

# Sizes in scene units (the frame is 14.2 x 8 units).
TEXT_SIZE = 22  # body labels; readable at 480p
SMALL_SIZE = 16  # secondary labels
TITLE_SIZE = 30
BUFF = 0.25


def token_color(position: int) -> ManimColor:
    return TOKEN_COLORS[position % len(TOKEN_COLORS)]


def signed_color(value: float, scale: float) -> ManimColor:
    """Diverging colour of ``value`` with ``scale`` mapping to full saturation."""
    t = float(np.clip(value / scale, -1.0, 1.0)) if scale > 0 else 0.0
    end = POSITIVE if t >= 0 else NEGATIVE
    return interpolate_color(NEUTRAL, end, abs(t) ** 0.75)


def prob_color(p: float) -> ManimColor:
    return interpolate_color(PROB_LOW, PROB_HIGH, float(np.clip(p, 0.0, 1.0)) ** 0.6)


def _rgb(color: ManimColor) -> np.ndarray:
    return np.array(color.to_rgb(), dtype=np.float64)


def diverging_rgb(values: np.ndarray, scale: float) -> np.ndarray:
    """RGB uint8 image ``[..., 3]`` of signed ``values`` (for ImageMobject grids)."""
    t = np.clip(np.asarray(values, dtype=np.float64) / max(scale, 1e-12), -1.0, 1.0)
    w = np.abs(t)[..., None] ** 0.75
    end = np.where(t[..., None] >= 0, _rgb(POSITIVE), _rgb(NEGATIVE))
    rgb = (1 - w) * _rgb(NEUTRAL) + w * end
    return (rgb * 255).round().astype(np.uint8)


def sequential_rgb(
    values: np.ndarray, low: ManimColor = PROB_LOW, high: ManimColor = PROB_HIGH
) -> np.ndarray:
    """RGB uint8 image of values in [0, 1] (probabilities, attention weights)."""
    w = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None] ** 0.6
    rgb = (1 - w) * _rgb(low) + w * _rgb(high)
    return (rgb * 255).round().astype(np.uint8)


def robust_scale(values: np.ndarray, quantile: float = 0.98) -> float:
    """A colour scale that a few outlier dimensions cannot wash out."""
    a = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    return float(np.quantile(a, quantile)) if a.size else 1.0

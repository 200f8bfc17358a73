"""One visual grammar: themes (colours), fonts, text sizes and the maps from values to colour.

A :class:`Theme` is an object passed down to every builder, so a light
background changes every colour at once and colour scales keep their meaning:
signed values go blue (< 0) to red (> 0) through the theme's neutral; weights and
probabilities go from the background's tone (0) to a strong colour (1).

Sizes are in scene units. mechviz frames always have a shorter side of 8 units
(16:9 is 14.2 x 8, 9:16 is 8 x 14.2), so a font size means the same share of
the picture at every aspect. The legibility rule: no text's capital letters are
shorter than 3% of the frame's shorter side, which :data:`MIN_TEXT` meets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from manim import ManimColor, interpolate_color

FONT = "DejaVu Sans"
MONO = "DejaVu Sans Mono"

# Text sizes (Manim font sizes). The frame's shorter side is SHORT_SIDE units.
SHORT_SIDE = 8.0
MIN_SHARE = 0.03  # the smallest capital letter, as a share of the shorter side
MIN_TEXT = 24  # secondary labels: capitals 0.243 units = 3.04% of the shorter side
BODY_TEXT = 28  # body labels and captions
READING_CPS = 17.0  # a caption stays up at least its length / this many seconds
TITLE_TEXT = 38  # scene titles
BIG_TEXT = 52  # the one number or token a beat is about
BUFF = 0.3  # margin to the frame's edges


def _c(hex_code: str) -> ManimColor:
    return ManimColor(hex_code)


@dataclass(frozen=True)
class Theme:
    """The colours of one look; every scene and block takes one.

    Attributes:
        name: ``"dark"`` or ``"light"``.
        background: Frame colour (transparent renders drop it).
        foreground: Body text.
        muted: Secondary text, frames and axes.
        faint: Grid lines and empty bar tracks.
        negative, positive: Ends of the diverging scale for signed values.
        neutral: Middle of the diverging scale (zero) and low end of sequential ones.
        prob: High end of the probability scale.
        attention: Attention weights, arcs and attention writes.
        mlp: MLP writes.
        highlight: What the beat is about (the answer, the chosen head).
        tokens: Token palette; a token id keeps its colour in every scene.

    """

    name: str
    background: ManimColor
    foreground: ManimColor
    muted: ManimColor
    faint: ManimColor
    negative: ManimColor
    positive: ManimColor
    neutral: ManimColor
    prob: ManimColor
    attention: ManimColor
    mlp: ManimColor
    highlight: ManimColor
    tokens: tuple[ManimColor, ...] = field(repr=False)

    def rgb(self, color: ManimColor) -> np.ndarray:
        """``color`` as floats in [0, 1], shape ``[3]``."""
        return np.array(color.to_rgb(), dtype=np.float64)

    def text_on(self, fill: ManimColor | np.ndarray) -> ManimColor:
        """Text colour that reads on a cell of colour ``fill`` (light or dark by luminance)."""
        rgb = np.asarray(fill.to_rgb() if isinstance(fill, ManimColor) else fill, dtype=float)
        if rgb.max() > 1.0:
            rgb = rgb / 255.0
        luminance = float(rgb @ np.array([0.2126, 0.7152, 0.0722]))
        dark, light = sorted((self.background, self.foreground), key=_luminance)
        return dark if luminance > 0.45 else light


def _luminance(color: ManimColor) -> float:
    return float(np.array(color.to_rgb()) @ np.array([0.2126, 0.7152, 0.0722]))


DARK = Theme(
    name="dark",
    background=_c("#0e1116"),
    foreground=_c("#e6e6e6"),
    muted=_c("#9aa4ae"),
    faint=_c("#30363d"),
    negative=_c("#4a90e2"),
    positive=_c("#e5534b"),
    neutral=_c("#1c2128"),
    prob=_c("#f2c14e"),
    attention=_c("#f0883e"),
    mlp=_c("#a371f7"),
    highlight=_c("#3fb950"),
    tokens=tuple(
        _c(c)
        for c in (
            "#58a6ff",
            "#3fb950",
            "#d29922",
            "#f778ba",
            "#a371f7",
            "#39c5cf",
            "#f0883e",
            "#b4bcc4",
            "#e5534b",
            "#8ddb8c",
        )
    ),
)

LIGHT = Theme(
    name="light",
    background=_c("#ffffff"),
    foreground=_c("#1f2328"),
    muted=_c("#59636e"),
    faint=_c("#d8dee4"),
    negative=_c("#1f6feb"),
    positive=_c("#cf222e"),
    neutral=_c("#f3f4f6"),
    prob=_c("#b8860b"),
    attention=_c("#d1570b"),
    mlp=_c("#8250df"),
    highlight=_c("#1a7f37"),
    tokens=tuple(
        _c(c)
        for c in (
            "#0969da",
            "#1a7f37",
            "#9a6700",
            "#bf3989",
            "#8250df",
            "#1b7c83",
            "#bc4c00",
            "#57606a",
            "#cf222e",
            "#4d7c0f",
        )
    ),
)

THEMES = {"dark": DARK, "light": LIGHT}


def get_theme(name: str) -> Theme:
    """The theme called ``name`` (``"dark"`` or ``"light"``)."""
    try:
        return THEMES[name]
    except KeyError:
        raise ValueError(f"unknown theme {name!r}; choose one of {', '.join(THEMES)}") from None


@lru_cache(maxsize=8)
def cap_height(font_size: float, font: str = FONT) -> float:
    """Height of a capital ``H`` at ``font_size``, in scene units."""
    return float(make_text("H", font=font, font_size=48).height) * font_size / 48


def make_text(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Manim's ``Text``, surviving an empty file in its SVG cache.

    Manim writes each text's SVG straight to its cache path; a render stopped
    mid-write (Ctrl-C, a killed job) or two renders writing the same text at
    once can leave it empty, and every later ``Text`` of that string fails
    to parse it. Then the empty files are removed and the text made again.
    """
    from xml.etree.ElementTree import ParseError

    from manim import Text, config

    try:
        return Text(*args, **kwargs)
    except ParseError:
        from pathlib import Path

        folder = Path(config.get_dir("text_dir"))
        for svg in folder.glob("*.svg"):
            try:
                if svg.stat().st_size == 0:
                    svg.unlink()
            except OSError:
                pass
        return Text(*args, **kwargs)


# --- value -> colour maps -----------------------------------------------------------


def signed_color(value: float, scale: float, theme: Theme = DARK) -> ManimColor:
    """Diverging colour of ``value``; ``scale`` maps to full saturation."""
    t = float(np.clip(value / scale, -1.0, 1.0)) if scale > 0 else 0.0
    end = theme.positive if t >= 0 else theme.negative
    return interpolate_color(theme.neutral, end, abs(t) ** 0.75)


def prob_color(p: float, theme: Theme = DARK) -> ManimColor:
    """Sequential colour of a probability in [0, 1]."""
    return interpolate_color(theme.neutral, theme.prob, float(np.clip(p, 0.0, 1.0)) ** 0.6)


def diverging_rgb(values: np.ndarray, scale: float, theme: Theme = DARK) -> np.ndarray:
    """RGB uint8 image ``[..., 3]`` of signed ``values`` (for ImageMobject grids)."""
    t = np.clip(np.asarray(values, dtype=np.float64) / max(scale, 1e-12), -1.0, 1.0)
    w = np.abs(t)[..., None] ** 0.75
    end = np.where(t[..., None] >= 0, theme.rgb(theme.positive), theme.rgb(theme.negative))
    rgb = (1 - w) * theme.rgb(theme.neutral) + w * end
    return (rgb * 255).round().astype(np.uint8)


def sequential_rgb(
    values: np.ndarray, high: ManimColor | None = None, theme: Theme = DARK
) -> np.ndarray:
    """RGB uint8 image of values in [0, 1] (probabilities, attention weights)."""
    w = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None] ** 0.6
    rgb = (1 - w) * theme.rgb(theme.neutral) + w * theme.rgb(high or theme.prob)
    return (rgb * 255).round().astype(np.uint8)


MASK_PX = 6  # image pixels per cell side when masked cells are hatched


def attention_rgb(
    weights: np.ndarray, masked: np.ndarray, high: ManimColor | None = None, theme: Theme = DARK
) -> np.ndarray:
    """RGB uint8 image of attention weights, masked cells hatched, ``MASK_PX`` pixels a cell.

    A weight runs from the neutral (0) to ``high`` (1) as in :func:`sequential_rgb`;
    a masked cell (a later key, which the query cannot read) is the background
    with diagonal stripes of the faint colour, so it never reads as a weight of 0.
    The top-left pixel of every cell carries its colour (stripes avoid it).
    """
    base = sequential_rgb(weights, high, theme)
    masked = np.asarray(masked, dtype=bool)
    base[masked] = (np.asarray(theme.rgb(theme.background)) * 255).round().astype(np.uint8)
    rgb = np.repeat(np.repeat(base, MASK_PX, axis=0), MASK_PX, axis=1)
    ys, xs = np.indices(rgb.shape[:2])
    stripe = (xs + ys) % MASK_PX == MASK_PX - 1
    stripe &= np.repeat(np.repeat(masked, MASK_PX, axis=0), MASK_PX, axis=1)
    rgb[stripe] = (np.asarray(theme.rgb(theme.faint)) * 255).round().astype(np.uint8)
    return rgb


def causal_mask(positions: Sequence[int]) -> np.ndarray:
    """``[n, n]`` True where key ``positions[j]`` comes after query ``positions[i]``."""
    p = np.asarray(list(positions))
    return p[None, :] > p[:, None]


def robust_scale(values: np.ndarray, quantile: float = 0.98) -> float:
    """A colour scale that a few outlier dimensions cannot wash out."""
    a = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    return float(np.quantile(a, quantile)) if a.size else 1.0


class TokenColors:
    """Token id -> colour: the same id has the same colour in every scene of a trace.

    Ids are numbered in order of first appearance in the prompt, so distinct
    tokens of a short prompt get distinct colours; ids outside the prompt (a
    prediction) fall back to ``id mod palette``.
    """

    def __init__(self, prompt_ids: list[int] | np.ndarray, theme: Theme = DARK) -> None:
        self.theme = theme
        self.order: dict[int, int] = {}
        for token_id in map(int, prompt_ids):
            self.order.setdefault(token_id, len(self.order))

    def __call__(self, token_id: int) -> ManimColor:
        palette = self.theme.tokens
        index = self.order.get(int(token_id), int(token_id))
        return palette[index % len(palette)]

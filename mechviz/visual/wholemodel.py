"""The whole model in one picture (seed 000): every block's attention, residual and MLP rows.

Pure NumPy and Pillow: a trace becomes an RGB image at full resolution, no Manim.
Top to bottom: the embedding row, then one band per block (its H attention
patterns on the left; on the right its MLP activations and the residual
stream after it, each row the P tokens' pooled values side by side), then the
output (each position's top-K next-token probabilities). :func:`whole_picture`
also returns where every band is (:class:`Band`), which the WholeModel scene
and the tests read; :func:`whole_image` is the image alone.

Colour: signed rows (residual, MLP) on one symmetric scale per band type, the
98th percentile of ``|value|`` over that type's rows (a few huge dimensions
cannot wash the rest out); attention weights and probabilities on 0 to 1.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mechviz.errors import MechvizError
from mechviz.tracing.schema import Trace

DEFAULT_WIDTH = 1000  # the seed's picture width
MIN_WIDTH, MAX_WIDTH = 300, 8000  # 300: the legend still fits; 8000: a poster, ~100 MB of RGB
SCALE_QUANTILE = 0.98  # robust symmetric scale of signed rows (see the module doc)

__all__ = [
    "CMAPS",
    "Band",
    "WholePicture",
    "check_whole",
    "colorize",
    "legend_number",
    "resample",
    "whole_image",
    "whole_picture",
    "whole_svg",
]

# Viridis at 10 even steps (van der Walt and Smith's map, as matplotlib ships it).
_VIRIDIS = [
    "#440154",
    "#482878",
    "#3e4989",
    "#31688e",
    "#26828e",
    "#1f9e89",
    "#35b779",
    "#6ece58",
    "#b5de2b",
    "#fde725",
]
_MATRIX_GREEN = "#00ff41"  # the phosphor green of "The Matrix" screens


@dataclass(frozen=True)
class Cmap:
    """A named colour map: signed values in [-1, 1] and unsigned ones in [0, 1] to RGB.

    Attributes:
        name: The name ``--cmap`` takes.
        about: One line for ``--help`` and the legend.
        magnitude: Signed values are drawn by ``|value|`` only (the sign is not shown).
        background: A fixed background (``"#rrggbb"``), else the theme's.

    """

    name: str
    about: str
    magnitude: bool = False
    background: str | None = None

    def stops(self, palette: dict[str, np.ndarray], signed: bool) -> list[np.ndarray]:
        """Colours at evenly spaced points: over [-1, 1] if ``signed``, else over [0, 1]."""
        if self.name == "default":
            if signed:
                return [palette["negative"], palette["neutral"], palette["positive"]]
            return [palette["neutral"], palette["prob"]]
        if self.name == "matrix":
            black, green = _rgb("#000000"), _rgb(_MATRIX_GREEN)
            return [green, black, green] if signed else [black, green]
        if self.name == "gray":
            low, high = sorted((palette["background"], palette["foreground"]), key=sum)
            return (
                [low, (low + high) / 2, high]
                if signed
                else [palette["background"], palette["foreground"]]
            )
        return [_rgb(c) for c in _VIRIDIS]  # viridis: signed -1..1 and unsigned 0..1 alike


CMAPS: dict[str, Cmap] = {
    c.name: c
    for c in (
        Cmap("default", "blue < 0 < red through the theme's neutral; probabilities in yellow"),
        Cmap(
            "matrix", "green on black: brightness is |value|", magnitude=True, background="#000000"
        ),
        Cmap("gray", "dark < 0 < light in grays"),
        Cmap("viridis", "perceptually even purple-green-yellow, low to high"),
    )
}


def get_cmap(name: str) -> Cmap:
    """The colour map called ``name``; an unknown name gets the list."""
    try:
        return CMAPS[name]
    except KeyError:
        raise MechvizError(
            f"Unknown colour map {name!r}; choose one of {', '.join(CMAPS)}."
        ) from None


def _rgb(hex_code: str) -> np.ndarray:
    return np.array([int(hex_code[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) / 255


def palette(theme: str) -> dict[str, np.ndarray]:
    """The theme's colours as RGB floats (mechviz.visual.style: one visual grammar)."""
    from mechviz.visual import style  # imported here: the theme objects live beside Manim

    t = style.get_theme(theme)
    names = (
        "background",
        "foreground",
        "muted",
        "faint",
        "negative",
        "positive",
        "neutral",
        "prob",
    )
    return {n: t.rgb(getattr(t, n)) for n in names}


def colorize(
    values: np.ndarray, cmap: Cmap, pal: dict[str, np.ndarray], signed: bool, scale: float = 1.0
) -> np.ndarray:
    """RGB uint8 ``[..., 3]`` of ``values``: signed ones over ``[-scale, scale]``, else [0, 1].

    The default map keeps mechviz's usual curves (``|t| ** 0.75`` for signed
    values, ``t ** 0.6`` for probabilities, as :mod:`mechviz.visual.style`).
    """
    v = np.asarray(values, dtype=np.float64)
    if signed:
        t = np.clip(v / max(scale, 1e-12), -1.0, 1.0)
        if cmap.name == "default":
            t = np.sign(t) * np.abs(t) ** 0.75
        x = (t + 1) / 2  # position along the stops
    else:
        x = np.clip(v, 0.0, 1.0)
        if cmap.name == "default":
            x = x**0.6
    stops = np.stack(cmap.stops(pal, signed))  # [S, 3]
    grid = np.linspace(0.0, 1.0, len(stops))
    out = np.stack([np.interp(x, grid, stops[:, c]) for c in range(3)], axis=-1)
    return (out * 255).round().astype(np.uint8)


def resample(rows: np.ndarray, width: int) -> np.ndarray:
    """Each row's values into ``width`` pixels along the last axis.

    Shrinking keeps, per pixel, the value of largest ``|x|`` (its sign kept), as
    the trace's own pooling does; growing repeats values (nearest neighbour).
    """
    n = rows.shape[-1]
    starts = (np.arange(width) * n) // width
    hi = np.maximum.reduceat(rows, starts, axis=-1)
    lo = np.minimum.reduceat(rows, starts, axis=-1)
    return np.where(np.abs(hi) >= np.abs(lo), hi, lo)


def check_whole(trace: Trace) -> Any:
    """``trace.whole``, or one sentence saying how to get a trace that has it."""
    whole = getattr(trace, "whole", None)
    if whole is None:
        from mechviz import __version__

        raise MechvizError(
            "This trace has no `whole` section; trace it again with mechviz "
            f"{__version__} (`mechviz trace ...`)."
        )
    return whole


# --- layout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """One rectangle of the picture, in pixels (``x0 <= x < x1``, ``y0 <= y < y1``).

    ``kind`` is ``"embed"``, ``"attention"``, ``"mlp"``, ``"resid"`` or
    ``"output"``; ``layer`` the block (``None`` for the embedding and output).
    """

    kind: str
    layer: int | None
    x0: int
    x1: int
    y0: int
    y1: int


@dataclass(frozen=True)
class WholePicture:
    """The picture and where everything is in it.

    Attributes:
        image: RGB uint8, ``[height, width, 3]``.
        bands: Every band: the embedding row, per block its attention patterns,
            MLP row and residual row, then the output row.
        resid_scale, mlp_scale: The values drawn at full colour (symmetric).
        cmap: The colour map's name.
        background: The background colour, RGB uint8.
        gutter: Pixels left of the bands (layer numbers in the still, else 0).

    """

    image: np.ndarray
    bands: tuple[Band, ...]
    resid_scale: float
    mlp_scale: float
    cmap: str
    background: tuple[int, int, int]
    gutter: int

    def of(self, kind: str) -> list[Band]:
        """The bands of one kind, top to bottom."""
        return [b for b in self.bands if b.kind == kind]

    @property
    def n_blocks(self) -> int:
        """Blocks drawn: the number of attention bands."""
        return len(self.of("attention"))

    def block_span(self, layer: int) -> tuple[int, int]:
        """``(y0, y1)`` of block ``layer``: its attention, MLP and residual rows."""
        parts = [b for b in self.bands if b.layer == layer]
        return min(b.y0 for b in parts), max(b.y1 for b in parts)


@dataclass(frozen=True)
class _Geometry:
    width: int
    margin: int
    gutter: int  # layer numbers
    head_gap: int  # between heads' patterns
    side: int  # an attention pattern's side in px
    attn_w: int
    col_gap: int  # attention panel to the rows
    row_h: int  # one residual or MLP row
    block_gap: int  # between blocks
    top: int  # first band's y

    @property
    def rows_x0(self) -> int:
        return self.margin + self.gutter + self.attn_w + self.col_gap

    @property
    def rows_x1(self) -> int:
        return self.width - self.margin


def _geometry(trace: Trace, width: int, gutter: int, top: int) -> _Geometry:
    s = width / DEFAULT_WIDTH
    margin = max(2, round(10 * s))
    H, P = trace.model.n_heads, trace.n_positions
    head_gap = max(1, round(3 * s))
    room = 0.34 * (width - 2 * margin - gutter) - (H - 1) * head_gap  # ~a third for attention
    side = int(max(2, min(P * max(1, round(6 * s)), room // H)))  # cells of a few px
    attn_w = H * side + (H - 1) * head_gap
    row_h = max(2, (max(side, round(12 * s)) + 1) // 2)  # a block's two rows span its patterns
    return _Geometry(
        width=width,
        margin=margin,
        gutter=gutter,
        head_gap=head_gap,
        side=side,
        attn_w=attn_w,
        col_gap=max(2, round(12 * s)),
        row_h=row_h,
        block_gap=max(1, round(3 * s)),
        top=top,
    )


def _band_list(trace: Trace, g: _Geometry) -> list[Band]:
    x0, x1 = g.rows_x0, g.rows_x1
    ax0 = g.margin + g.gutter
    bands = [Band("embed", None, x0, x1, g.top, g.top + g.row_h)]
    y = g.top + g.row_h + g.block_gap
    block_h = 2 * g.row_h
    for layer in range(trace.n_layers):
        ay = y + (block_h - g.side) // 2  # the patterns centred on the block's two rows
        bands.append(Band("attention", layer, ax0, ax0 + g.attn_w, ay, ay + g.side))
        bands.append(Band("mlp", layer, x0, x1, y, y + g.row_h))
        bands.append(Band("resid", layer, x0, x1, y + g.row_h, y + block_h))
        y += block_h + g.block_gap
    bands.append(Band("output", None, x0, x1, y + g.block_gap, y + g.block_gap + block_h))
    return bands


def _scales(whole: Any) -> tuple[float, float]:
    """The symmetric scale of each signed band type (see the module doc).

    The first token is left out when there are others: its residual stream
    carries a few huge values (an attention sink) that would wash out the rest.
    """
    out = []
    for rows in (whole.resid, whole.mlp):
        rows = np.asarray(rows, dtype=np.float64)
        a = np.abs(rows[:, 1:] if rows.shape[1] > 1 else rows).ravel()
        a = a[np.isfinite(a)]
        out.append(float(np.quantile(a, SCALE_QUANTILE)) if a.size else 1.0)
    return out[0] or 1.0, out[1] or 1.0


def _paint(
    img: np.ndarray,
    trace: Trace,
    whole: Any,
    bands: list[Band],
    g: _Geometry,
    cmap: Cmap,
    pal: dict[str, np.ndarray],
    scales: tuple[float, float],
) -> None:
    pattern = np.asarray(trace.attention.pattern, dtype=np.float64)  # [L, H, P, P]
    fine = resample(resample(pattern, g.side).swapaxes(-1, -2), g.side).swapaxes(-1, -2)
    attn_rgb = colorize(fine, cmap, pal, signed=False)  # [L, H, side, side, 3]
    resid = np.asarray(whole.resid, dtype=np.float64).reshape(len(whole.resid), -1)  # [Q, P*C]
    mlp = np.asarray(whole.mlp, dtype=np.float64).reshape(len(whole.mlp), -1)  # [L, P*M]
    w = g.rows_x1 - g.rows_x0
    resid_rgb = colorize(resample(resid, w), cmap, pal, True, scales[0])  # [Q, w, 3]
    mlp_rgb = colorize(resample(mlp, w), cmap, pal, True, scales[1])
    probs = np.asarray(trace.output.top_probs, dtype=np.float64).reshape(1, -1)  # [1, P*K]
    out_rgb = colorize(resample(probs, w), cmap, pal, signed=False)[0]
    for b in bands:
        area = img[b.y0 : b.y1, b.x0 : b.x1]
        if b.kind == "embed":
            area[:] = resid_rgb[0]
        elif b.kind == "resid":
            area[:] = resid_rgb[b.layer + 1]
        elif b.kind == "mlp":
            area[:] = mlp_rgb[b.layer]
        elif b.kind == "output":
            area[:] = out_rgb
        else:
            for h in range(trace.model.n_heads):
                x = h * (g.side + g.head_gap)
                area[:, x : x + g.side] = attn_rgb[b.layer, h]


# --- text (Pillow) --------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _font(size: int) -> Any:
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _fit(text: str, font: Any, width: float) -> str:
    """``text`` cut with ``…`` to ``width`` pixels ("" when not even one character fits)."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…" if text else ""


def _wrap(text: str, font: Any, width: float) -> list[str]:
    chars = max(10, int(width / max(font.getlength("n"), 1)))
    while chars > 10:
        lines = textwrap.wrap(text, chars)
        if all(font.getlength(line) <= width for line in lines):
            return lines
        chars -= 2
    return textwrap.wrap(text, chars)


def _text_sizes(width: int) -> tuple[int, int]:
    """Font pixel size and line height for a picture ``width`` px wide."""
    size = max(11, round(15 * width / DEFAULT_WIDTH))  # ~1.5% of the width: reads at any zoom
    return size, round(size * 1.35)


def _legend_bar(
    img: np.ndarray, x: int, y: int, w: int, h: int, cmap: Cmap, pal: dict, signed: bool
) -> None:
    t = np.linspace(-1 if signed else 0, 1, w)
    img[y : y + h, x : x + w] = colorize(t, cmap, pal, signed)[None]


def legend_number(v: float) -> str:
    """A colour scale's end as a person writes it: three figures, never an exponent.

    ``1070.4`` is ``"1,070"`` (``.3g`` wrote ``1.07e+03``), ``23.46`` is ``"23.5"``,
    ``0.01234`` is ``"0.0123"``.
    """
    a = abs(float(v))
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if a >= 1e-3 or a == 0 else f"{v:.1e}"


# --- the picture ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Everything both writers (raster and SVG) share: where things go, colours, scales."""

    whole: Any
    cmap: Cmap
    pal: dict[str, np.ndarray]
    g: _Geometry
    bands: list[Band]
    scales: tuple[float, float]
    legend: list[str]
    bottom: int
    height: int


def _plan(trace: Trace, width: int, cmap: str, theme: str, text: bool) -> _Plan:
    whole = check_whole(trace)
    map_ = get_cmap(cmap)
    if not (type(width) is int and MIN_WIDTH <= width <= MAX_WIDTH):
        raise MechvizError(f"The width must be {MIN_WIDTH} to {MAX_WIDTH} pixels; got {width!r}.")
    pal = palette(theme)
    if map_.background is not None:
        pal = {**pal, "background": _rgb(map_.background), "neutral": _rgb(map_.background)}
        pal["foreground"], pal["muted"] = _rgb("#d8ffe0"), _rgb(_MATRIX_GREEN) * 0.8
    size, line = _text_sizes(width)
    font = _font(size)
    gutter = int(font.getlength("emb") + size * 0.6) if text else 0
    top = (2 * line + size // 2) if text else max(1, width // 200)
    g = _geometry(trace, width, gutter, top)
    bands = _band_list(trace, g)
    scales = _scales(whole)
    bottom = bands[-1].y1 + (line + size // 2 if text else max(1, width // 200))
    room = width - 2 * g.margin
    legend = _legend_lines(trace, whole, scales, map_, font, room, width) if text else []
    height = bottom + (len(legend) + 2) * line + size if text else bottom
    return _Plan(whole, map_, pal, g, bands, scales, legend, bottom, height)


def whole_picture(
    trace: Trace,
    width: int = DEFAULT_WIDTH,
    cmap: str = "default",
    theme: str = "dark",
    text: bool = True,
) -> WholePicture:
    """The whole-model picture of ``trace`` and its layout.

    Args:
        trace: A trace with a ``whole`` section (schema 4).
        width: Pixel width of the picture.
        cmap: A name of :data:`CMAPS`.
        theme: ``"dark"`` or ``"light"``.
        text: Draw the title, token labels, layer numbers and legend (the still);
            ``False`` draws the bands alone (the scene labels them itself).

    """
    p = _plan(trace, width, cmap, theme, text)
    bg = (p.pal["background"] * 255).round().astype(np.uint8)
    img = np.empty((p.height, width, 3), np.uint8)
    img[:] = bg
    _paint(img, trace, p.whole, p.bands, p.g, p.cmap, p.pal, p.scales)
    if text:
        img = _draw_text(img, trace, p.bands, p.g, p.cmap, p.pal, p.scales, p.legend, p.bottom)
    return WholePicture(
        image=img,
        bands=tuple(p.bands),
        resid_scale=p.scales[0],
        mlp_scale=p.scales[1],
        cmap=p.cmap.name,
        background=tuple(int(c) for c in bg),
        gutter=p.g.gutter,
    )


def whole_image(
    trace: Trace, width: int = DEFAULT_WIDTH, cmap: str = "default", theme: str = "dark"
) -> np.ndarray:
    """The still: the whole-model picture with its labels and legend, RGB uint8 ``[H, W, 3]``."""
    return whole_picture(trace, width, cmap, theme).image


def describe(trace: Trace, whole: Any, scales: tuple[float, float], cmap: Cmap) -> str:
    """What the bands are, in one paragraph (the still's legend, the scene's captions)."""
    m = trace.model
    C, M = whole.resid.shape[-1], whole.mlp.shape[-1]
    K = trace.output.top_probs.shape[-1]
    sign = " (|value|: the sign is not shown)" if cmap.magnitude else ""
    return (
        f"Left: attention, one row per block, {m.n_heads} heads side by side (query down, key "
        f"across). Right: per token, the residual stream ({m.d_model} numbers pooled to {C}; "
        f"the embedding on top, then after each block) below each block's MLP activations "
        f"({m.d_mlp} pooled to {M}), max-|x| pooled. Bottom: the output, each position's top-{K} "
        f"next-token probabilities. Colour scale per band type: the 98th percentile of |value| "
        f"after the first token{sign}."
    )


def _legend_lines(
    trace: Trace,
    whole: Any,
    scales: tuple[float, float],
    cmap: Cmap,
    font: Any,
    width: int,
    picture: int,
) -> list[str]:
    """The legend's paragraph, wrapped to ``width`` px, for a ``picture``-px-wide still."""
    text = describe(trace, whole, scales, cmap)
    if picture > 1.05 * whole.width:  # the rows repeat values: say how to get more detail
        text += (
            f" The rows were pooled for a {whole.width}-px picture; `mechviz trace --width "
            f"{picture}` keeps more values."
        )
    return _wrap(text, font, width)


@dataclass(frozen=True)
class _Label:
    x: float
    y: float  # the baseline
    text: str
    color: str  # "foreground" or "muted"
    anchor: str  # "start", "middle" or "end" of the text at x


def _labels(
    trace: Trace,
    bands: list[Band],
    g: _Geometry,
    cmap: Cmap,
    scales: tuple[float, float],
    legend: list[str],
    bottom: int,
) -> tuple[list[_Label], list[tuple[int, int, int, int, bool]]]:
    """Every text of the still (on baselines) and the colour bars ``(x, y, w, h, signed)``."""
    from mechviz.model.tokens import readable, readable_tokens, shown

    size, line = _text_sizes(g.width)
    font = _font(size)
    ascent, descent = font.getmetrics()
    out: list[_Label] = []

    def row(texts: list[str], top: float) -> bool:
        seg = (g.rows_x1 - g.rows_x0) / len(texts)
        if seg - 4 < font.getlength("ab…"):
            return False  # too many tokens for their labels: none rather than stray punctuation
        for p, text in enumerate(texts):
            cut = _fit(text, font, seg - 4)
            if cut:
                x = g.rows_x0 + seg * (p + 0.5)
                out.append(_Label(x, top + ascent, cut, "foreground", "middle"))
        return True

    title = f"{trace.model.id} · “{readable(trace.prompt)}”"
    title += (
        f" · {trace.n_layers} blocks × {trace.model.n_heads} heads · {trace.n_positions} tokens"
    )
    width = g.width - 2 * g.margin
    out.append(_Label(g.margin, g.margin // 2 + 1 + ascent, _fit(title, font, width), "foreground",
                      "start"))  # fmt: skip
    y_tokens = g.top - line + 2
    row([shown(t) for t in readable_tokens(trace.tokens.text)], y_tokens)
    head = _fit(f"attention, {trace.model.n_heads} heads", font, g.attn_w + g.gutter)
    out.append(_Label(g.margin, y_tokens + ascent, head, "muted", "start"))
    # Layer numbers in the gutter: every k-th block, k so that numbers keep a line apart;
    # the last block too when it has room.
    block_h = 2 * g.row_h + g.block_gap
    step = next(s for s in (1, 2, 5, 10, 20, 50, 10**9) if s * block_h >= line)
    L = trace.n_layers
    numbered = set(range(0, L, step))
    if ((L - 1) - max(numbered)) * block_h >= line:
        numbered.add(L - 1)
    names = {"embed": "emb", "output": "out"}
    for b in bands:
        name = names.get(b.kind)
        if b.kind == "attention" and b.layer in numbered:
            name = str(b.layer)
        if name:
            y = (b.y0 + b.y1) / 2 + (ascent - descent) / 2
            out.append(_Label(g.margin + g.gutter - size * 0.3, y, name, "muted", "end"))
    below = bands[-1].y1 + size // 4
    top1 = [shown(readable(trace.token_text(int(i)))) for i in trace.output.top_ids[:, 0]]
    if row(top1, below):
        name = _fit("top-1 →", font, g.attn_w + g.gutter)
        out.append(_Label(g.margin, below + ascent, name, "muted", "start"))
    # The colour scales: name, low number, bar, high number, while they fit on one line.
    bar_w, bar_h = max(40, round(110 * g.width / DEFAULT_WIDTH)), max(6, size // 2)
    y_scale = bottom + size // 2
    base = y_scale + ascent
    bars = []
    x = float(g.margin)
    for name, signed, scale in (
        ("residual", True, scales[0]),
        ("MLP", True, scales[1]),
        ("attention, probability", False, 1.0),
    ):
        low = "0" if not signed or cmap.magnitude else f"−{legend_number(scale)}"
        high = legend_number(scale) if signed else "1"
        x2 = x + font.getlength(name) + size * 0.6
        x3 = int(x2 + font.getlength(low) + size * 0.4)
        end = x3 + bar_w + size * 0.4 + font.getlength(high)
        if end > g.width - g.margin:
            break  # no room: the paragraph below still says what the colours are
        out += [
            _Label(x, base, name, "foreground", "start"),
            _Label(x2, base, low, "muted", "start"),
            _Label(x3 + bar_w + size * 0.4, base, high, "muted", "start"),
        ]
        bars.append((x3, y_scale + (size - bar_h) // 2 + size // 5, bar_w, bar_h, signed))
        x = end + size * 1.5
    y = y_scale + line + size // 3
    for text_line in legend:
        out.append(_Label(g.margin, y + ascent, text_line, "muted", "start"))
        y += line
    return out, bars


def _draw_text(
    img: np.ndarray,
    trace: Trace,
    bands: list[Band],
    g: _Geometry,
    cmap: Cmap,
    pal: dict[str, np.ndarray],
    scales: tuple[float, float],
    legend: list[str],
    bottom: int,
) -> np.ndarray:
    from PIL import Image, ImageDraw

    labels, bars = _labels(trace, bands, g, cmap, scales, legend, bottom)
    font = _font(_text_sizes(g.width)[0])
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    anchors = {"start": "ls", "middle": "ms", "end": "rs"}
    for lab in labels:
        fill = tuple(int(round(c * 255)) for c in pal[lab.color])
        draw.text((lab.x, lab.y), lab.text, font=font, fill=fill, anchor=anchors[lab.anchor])
    img = np.asarray(pil).copy()
    for x, y, w, h, signed in bars:
        _legend_bar(img, x, y, w, h, cmap, pal, signed)
    return img


# --- SVG: the same picture as rectangles and text, for print ------------------------------


def _hexes(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` uint8 as ``"#rrggbb"`` strings."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return np.char.add("#", np.char.zfill(np.char.mod("%x", codes), 6))


def _runs(colors: np.ndarray, x0: float, x1: float, y: float, h: float) -> list[str]:
    """One ``<rect>`` per run of equal colour along a row of cells spanning ``x0..x1``."""
    n = len(colors)
    step = (x1 - x0) / n
    change = np.flatnonzero(colors[1:] != colors[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    return [
        f'<rect x="{x0 + a * step:.2f}" y="{y:.2f}" width="{(b - a) * step:.2f}" '
        f'height="{h:.2f}" fill="{colors[a]}"/>'
        for a, b in zip(starts, ends)
    ]


def whole_svg(
    trace: Trace,
    width: int = DEFAULT_WIDTH,
    cmap: str = "default",
    theme: str = "dark",
    transparent: bool = False,
) -> str:
    """The still as SVG: every recorded value a rectangle, every label real text.

    The same layout as :func:`whole_image` at ``width``: the rows carry every pooled
    value of ``trace.whole`` (not the picture's pixels) and each attention
    pattern its P x P weights, so the file prints sharp at any size.
    ``transparent`` leaves out the background.
    """
    from xml.sax.saxutils import escape

    p = _plan(trace, width, cmap, theme, True)
    g, pal, map_ = p.g, p.pal, p.cmap
    bg = _hexes(pal["background"] * 255 + 0.5)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{p.height}" '
        f'viewBox="0 0 {width} {p.height}" shape-rendering="crispEdges">',
    ]
    if not transparent:
        out.append(f'<rect width="{width}" height="{p.height}" fill="{bg}"/>')
    rows = {
        "resid": np.asarray(p.whole.resid, dtype=np.float64).reshape(len(p.whole.resid), -1),
        "mlp": np.asarray(p.whole.mlp, dtype=np.float64).reshape(len(p.whole.mlp), -1),
    }
    resid = _hexes(colorize(rows["resid"], map_, pal, True, p.scales[0]))
    mlp = _hexes(colorize(rows["mlp"], map_, pal, True, p.scales[1]))
    probs = np.asarray(trace.output.top_probs, dtype=np.float64).reshape(-1)
    pattern = np.asarray(trace.attention.pattern, dtype=np.float64)  # [L, H, P, P]
    if pattern.shape[-1] > g.side:  # more tokens than pixels: the picture's own pooling
        pattern = resample(resample(pattern, g.side).swapaxes(-1, -2), g.side).swapaxes(-1, -2)
    attn = _hexes(colorize(pattern, map_, pal, signed=False))
    for b in p.bands:
        h = b.y1 - b.y0
        if b.kind in ("embed", "resid"):
            out += _runs(resid[0 if b.layer is None else b.layer + 1], b.x0, b.x1, b.y0, h)
        elif b.kind == "mlp":
            out += _runs(mlp[b.layer], b.x0, b.x1, b.y0, h)
        elif b.kind == "output":
            out += _runs(_hexes(colorize(probs, map_, pal, False)), b.x0, b.x1, b.y0, h)
        else:
            n = attn.shape[-1]
            for head in range(trace.model.n_heads):
                x = b.x0 + head * (g.side + g.head_gap)
                for q in range(n):
                    y = b.y0 + q * g.side / n
                    out += _runs(attn[b.layer, head, q], x, x + g.side, y, g.side / n)
    labels, bars = _labels(trace, p.bands, g, map_, p.scales, p.legend, p.bottom)
    for x, y, w, h, signed in bars:
        t = np.linspace(-1 if signed else 0, 1, 48)
        out += _runs(_hexes(colorize(t, map_, pal, signed)), x, x + w, y, h)
    size = _text_sizes(width)[0]
    out.append(f'<g font-family="DejaVu Sans, Verdana, sans-serif" font-size="{size}">')
    for lab in labels:
        fill = _hexes(pal[lab.color] * 255 + 0.5)
        out.append(
            f'<text x="{lab.x:.1f}" y="{lab.y:.1f}" fill="{fill}" text-anchor="{lab.anchor}">'
            f"{escape(lab.text)}</text>"
        )
    out += ["</g>", "</svg>"]
    return "\n".join(out) + "\n"

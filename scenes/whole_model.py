"""WholeModel: every internal state of one forward pass in one picture, built block by block."""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    ORIGIN,
    PI,
    RIGHT,
    UP,
    FadeIn,
    Group,
    Rectangle,
    VGroup,
    config,
    linear,
)

from mechviz.model.tokens import shown
from mechviz.tracing.schema import Trace
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.mobjects import grid_image
from mechviz.visual.settings import SceneSettings
from mechviz.visual.text import baseline, block_height, center_on, label, measure
from mechviz.visual.wholemodel import (
    DEFAULT_WIDTH,
    MIN_WIDTH,
    WholePicture,
    check_whole,
    colorize,
    get_cmap,
    legend_number,
    palette,
    whole_picture,
    whole_svg,
)

LEGEND_W = 4.0  # the widest the legend may be beside the picture (scene units)
AXIS_W = 0.55  # layer numbers left of the picture
BAR_W = 1.3  # a colour bar's length
LABEL_MAX = 1.4  # the longest a token label above or below the picture may be (scene units)
GAP = 0.08  # between the picture and its token labels


class WholeModel(TraceScene):
    """The seed's picture: attention left, residual and MLP rows right, the output below."""

    beats = {
        "embedding": "the picture's frame and legend; the embedding row appears",
        "blocks": "block by block: attention patterns, MLP activations, the stream after",
        "output": "the output row: each position's top next-token probabilities",
    }
    title_text = "The whole model at once"
    slow_blocks = 2  # blocks at each end shown one at a time; the middle fast-forwards
    slow_time = 0.5
    fast_time = 0.1

    @staticmethod
    def still(trace: Trace, settings: SceneSettings) -> np.ndarray:
        """The full-resolution picture (``mechviz scene WholeModel --format png``)."""
        pic = whole_picture(trace, settings.width or DEFAULT_WIDTH, settings.cmap, settings.theme)
        if not settings.transparent:
            return pic.image
        alpha = np.where((pic.image != np.array(pic.background)).any(-1), 255, 0)
        return np.dstack([pic.image, alpha.astype(np.uint8)])

    @staticmethod
    def still_svg(trace: Trace, settings: SceneSettings) -> str:
        """The picture as SVG (``--format svg``): rectangles and text, for print."""
        width = settings.width or DEFAULT_WIDTH
        return whole_svg(trace, width, settings.cmap, settings.theme, settings.transparent)

    def construct(self) -> None:
        check_whole(self.trace)  # one sentence before anything is drawn
        self.show_title(self.title_text)
        with self.beat("embedding"):
            self.show_embedding()
        with self.beat("blocks"):
            self.show_blocks()
        with self.beat("output"):
            self.show_output()

    def legend_texts(self) -> list[str]:
        """The prompt and every position's top-1: the labels above and below the picture."""
        top1 = [self.trace.token_text(int(i)) for i in self.trace.output.top_ids[:, 0]]
        return list(self.trace.tokens.text) + top1

    # --- beats ------------------------------------------------------------------------
    def show_embedding(self) -> None:
        trace, whole = self.trace, check_whole(self.trace)
        C = whole.resid.shape[-1]
        self.layout()
        P, named = trace.n_positions, len(self.token_labels)
        which = (
            f"side by side ({named} of {P} named)" if named < P else f"the {P} tokens side by side"
        )
        self.caption(
            f"Top row: each token's embedding, {trace.model.d_model} numbers max-pooled to {C}, "
            f"{which}."
        )
        cover = self.get_cover()
        self.add(self.image, cover, self.axis)
        band = self.pic.of("embed")[0]
        y0, y1 = self.y_of(band.y1), self.y_of(band.y0)
        x0, x1 = self.x_of(band.x0), self.x_of(band.x1)
        self.embed_frame = Rectangle(
            width=x1 - x0 + 0.1,
            height=y1 - y0 + 0.1,
            stroke_color=self.theme.highlight,
            stroke_width=3,
        ).move_to([(x0 + x1) / 2, (y0 + y1) / 2, 0])  # the row is faint on the shared scale
        self.play(
            FadeIn(self.legend), FadeIn(self.embed_frame), FadeIn(self.token_labels), run_time=0.5
        )
        self.wait(0.4)

    def show_blocks(self) -> None:
        trace = self.trace
        m = trace.model
        self.caption(
            f"Each block: {m.n_heads} heads' attention (left), then its {m.d_mlp} MLP "
            "activations and the stream after it."
        )
        self.remove(self.embed_frame)
        L = trace.n_layers
        first = list(range(min(self.slow_blocks, L)))
        last = list(range(max(len(first), L - self.slow_blocks), L))
        for layer in first:
            self.play(self.reveal_to(self.block_bottom(layer)), run_time=self.slow_time)
        middle = L - len(first) - len(last)
        if middle:  # one steady sweep, not one animation per block (each costs a movie part)
            y = self.block_bottom(L - len(last) - 1)
            self.play(self.reveal_to(y), run_time=self.fast_time * middle, rate_func=linear)
        for layer in last:
            self.play(self.reveal_to(self.block_bottom(layer)), run_time=self.slow_time)

    def block_bottom(self, layer: int) -> float:
        """Scene y of the bottom edge of block ``layer``'s rows."""
        return self.y_of(self.pic.block_span(layer)[1])

    def show_output(self) -> None:
        trace = self.trace
        token, prob = trace.prediction
        K = trace.output.top_probs.shape[-1]
        self.caption(
            f"Bottom row: each position's top-{K} next-token probabilities; after the last "
            f"token, {shown(self.vocab_text(token))} at {prob:.2f}."
        )
        self.play(self.reveal_to(self.box.y0 - 0.01), FadeIn(self.top1_labels), run_time=0.5)
        self.remove(self.cover)

    # --- parts --------------------------------------------------------------------------
    def layout(self) -> None:
        """Place the picture, its layer numbers, token labels and the legend for this frame.

        The prompt's tokens stand above the picture's columns and each position's
        top-1 below them: across when they fit, else turned upright, else every
        k-th (the caption says so).
        """
        c = self.content
        probe = self._picture(DEFAULT_WIDTH)
        aspect = probe.image.shape[0] / DEFAULT_WIDTH
        band = probe.of("embed")[0]
        share = (band.x1 - band.x0) / DEFAULT_WIDTH  # of the picture's width: the columns
        tokens = [shown(t) for t in self.token_texts]
        top1 = [shown(self.vocab_text(int(i))) for i in self.trace.output.top_ids[:, 0]]
        column = self.get_legend(LEGEND_W)  # the legend as one column beside the picture
        legend = self.get_legend(c.width)
        room = 2 * (block_height(1, style.MIN_TEXT) + GAP)  # a guess, then the real need
        for _ in range(2):
            side = self._fit(c.width - AXIS_W - column.width - 0.3, c.height - room, aspect)
            stacked = self._fit(c.width - AXIS_W, c.height - legend.height - 0.3 - room, aspect)
            self.stacked = stacked[0] * stacked[1] > side[0] * side[1]
            w, h = stacked if self.stacked else side
            seg = w * share / max(len(tokens), 1)
            room = self._labels_room(tokens, seg) + self._labels_room(top1, seg)
        px_per_unit = config.pixel_width / config.frame_width
        self.pic = self._picture(max(MIN_WIDTH, int(round(w * px_per_unit))))
        above = self._labels_room(tokens, seg)
        if self.stacked:
            spare = c.height - (h + room + 0.3 + legend.height)  # centred in the content's height
            x0, top = c.center[0] - (w + AXIS_W) / 2 + AXIS_W, c.y1 - max(spare, 0) / 2 - above
            below = top - h - self._labels_room(top1, seg)
            legend.move_to([c.center[0], below - 0.3 - legend.height / 2, 0])
        else:
            legend = column
            total = AXIS_W + w + 0.3 + legend.width
            x0 = c.x0 + (c.width - total) / 2 + AXIS_W
            top = c.y1 - (c.height - h - room) / 2 - above
            legend.move_to([x0 + w + 0.3 + legend.width / 2, top - legend.height / 2, 0])
        self.legend = legend
        rgb = self.pic.image
        self.image = grid_image(rgb, w, h).move_to([x0 + w / 2, top - h / 2, 0])
        self.box = Box(x0, x0 + w, top - h, top)
        self.axis = self.get_axis()
        self.token_labels = self.column_labels(tokens, above=True)
        self.top1_labels = self.column_labels(top1, above=False)
        tag = label("top-1", style.MIN_TEXT, self.theme.muted)
        left = self.x_of(self.pic.of("output")[0].x0) - 0.12
        if tag.width <= left - self.box.x0 and len(self.top1_labels):
            first = self.top1_labels[0]
            y = first.get_top()[1] if self.top1_labels.upright else first.get_center()[1]
            center_on(tag, [left - tag.width / 2, y - (0.12 if self.top1_labels.upright else 0), 0])
            self.top1_labels.add(tag)

    @staticmethod
    def _columns_mode(texts: list[str], seg: float) -> tuple[bool, int]:
        """``(upright, every)``: whether column labels stand upright, and every k-th is named."""
        line = block_height(1, style.MIN_TEXT)
        if max((measure(t, style.MIN_TEXT) for t in texts), default=0.0) <= seg - 0.06:
            return False, 1
        return True, max(1, int(np.ceil(line / max(seg, 1e-6))))

    def _labels_room(self, texts: list[str], seg: float) -> float:
        """The height that column labels of ``texts`` take with columns ``seg`` wide."""
        upright, _ = self._columns_mode(texts, seg)
        if not upright:
            return block_height(1, style.MIN_TEXT) + GAP
        widest = max((measure(t, style.MIN_TEXT) for t in texts), default=0.0)
        return min(widest, LABEL_MAX) + 2 * GAP

    def column_labels(self, texts: list[str], above: bool) -> VGroup:
        """One label per picture column (a token): above the embedding row or below the output.

        The group's ``upright`` says whether they are turned; ``every``, that only
        every k-th column is named (columns narrower than a line of text), and the last.
        """
        band = self.pic.of("embed" if above else "output")[0]
        x0, x1 = self.x_of(band.x0), self.x_of(band.x1)
        seg = (x1 - x0) / max(len(texts), 1)
        upright, every = self._columns_mode(texts, seg)
        cap = style.cap_height(style.MIN_TEXT)
        group = VGroup()
        picks = list(range(0, len(texts), every))
        if picks and picks[-1] != len(texts) - 1:  # the last position is always named
            picks[-1] = len(texts) - 1
        for p in picks:
            xc = x0 + seg * (p + 0.5)
            ids = self.trace.tokens.ids
            color = self.token_colors(int(ids[p])) if above else self.theme.foreground
            if not upright:
                mob = label(texts[p], style.MIN_TEXT, color)
                line = block_height(1, style.MIN_TEXT)
                y = self.box.y1 + GAP + line / 2 if above else self.box.y0 - GAP - line / 2
                group.add(center_on(mob, [xc, y, 0]))
                continue
            mob = label(texts[p], style.MIN_TEXT, color, max_width=LABEL_MAX)
            mob.shift([-mob.get_left()[0], -baseline(mob), 0])  # start on the origin's baseline
            mob.rotate(PI / 2, about_point=ORIGIN)  # reads upward; capitals left of x = 0
            y = self.box.y1 + GAP if above else self.box.y0 - GAP - mob.height
            group.add(mob.shift([xc + cap / 2, y - mob.get_bottom()[1], 0]))
        group.upright, group.every = upright, every
        return group

    def _picture(self, width: int) -> WholePicture:
        return whole_picture(self.trace, width, self.settings.cmap, self.settings.theme, text=False)

    @staticmethod
    def _fit(width: float, height: float, aspect: float) -> tuple[float, float]:
        """The largest ``(w, h)`` with ``h = aspect * w`` inside ``width`` x ``height``."""
        w = max(min(width, height / aspect), 0.5)
        return w, w * aspect

    def y_of(self, py: float) -> float:
        """Scene y of pixel row ``py`` of the picture."""
        b = self.box
        return b.y1 - (b.y1 - b.y0) * py / self.pic.image.shape[0]

    def x_of(self, px: float) -> float:
        """Scene x of pixel column ``px`` of the picture."""
        b = self.box
        return b.x0 + (b.x1 - b.x0) * px / self.pic.image.shape[1]

    def get_cover(self) -> Rectangle:
        """A background-coloured cover over everything below the embedding row."""
        b = self.box
        y = self.y_of(self.pic.of("embed")[0].y1 + 0.5)
        self.cover = Rectangle(
            width=b.width + 0.04,
            height=y - b.y0 + 0.02,
            stroke_width=0,
            fill_color=self._background(),
            fill_opacity=0.0 if self.settings.transparent else 1.0,
        ).move_to([b.center[0], (y + b.y0) / 2, 0])
        return self.cover

    def reveal_to(self, y: float):  # type: ignore[no-untyped-def]
        """Shrink the cover so that its top edge is at scene ``y``."""
        height = max(y - self.box.y0 + 0.02, 0.001)
        return self.cover.animate.stretch_to_fit_height(height, about_edge=DOWN)

    def _background(self) -> object:
        cmap = get_cmap(self.settings.cmap)
        if cmap.background is not None:
            return cmap.background  # the matrix map is green on black in either theme
        return self.theme.background

    def get_axis(self) -> VGroup:
        """Layer numbers left of the picture: every k-th block, at least 0.4 units apart."""
        L = self.trace.n_layers
        spans = [self.pic.block_span(layer) for layer in range(L)]
        spacing = abs(self.y_of(spans[1][0]) - self.y_of(spans[0][0])) if L > 1 else 1.0
        step = next(s for s in (1, 2, 5, 10, 20, 50, 10**9) if s * spacing >= 0.4)
        axis = VGroup()
        for layer in range(0, L, step):
            y = self.y_of(sum(spans[layer]) / 2)
            mob = label(str(layer), style.MIN_TEXT, self.theme.muted)
            axis.add(center_on(mob, [self.box.x0 - 0.08 - mob.width / 2, y, 0]))
        return axis

    def get_legend(self, width: float) -> Group:
        """The colour scales with their numbers, in a column or a grid that fits ``width``."""
        pic = self._picture(MIN_WIDTH) if not hasattr(self, "pic") else self.pic
        cmap = get_cmap(self.settings.cmap)
        pal = palette(self.settings.theme)
        if cmap.background is not None:
            pal = {**pal, "neutral": np.array([0.0, 0.0, 0.0])}
        items = []
        for name, signed, scale in (
            ("residual stream", True, pic.resid_scale),
            ("MLP activations", True, pic.mlp_scale),
            ("attention, probability", False, 1.0),
        ):
            low = "0" if not signed or cmap.magnitude else f"−{legend_number(scale)}"
            high = legend_number(scale) if signed else "1"
            t = np.linspace(-1 if signed else 0, 1, 64)[None]
            bar = grid_image(colorize(t, cmap, pal, signed), BAR_W, 0.22)
            lo = label(low, style.MIN_TEXT, self.theme.muted)
            hi = label(high, style.MIN_TEXT, self.theme.muted)
            row = Group(lo, bar, hi).arrange(RIGHT, buff=0.12)
            title = label(name, style.MIN_TEXT, self.theme.foreground, max_width=width)
            items.append(Group(title, row).arrange(DOWN, buff=0.12, aligned_edge=LEFT))
        widest = max(i.width for i in items)
        cols = max(1, min(len(items), int((width + 0.4) // (widest + 0.4))))
        return Group(*items).arrange_in_grid(cols=cols, buff=(0.4, 0.3), cell_alignment=UP + LEFT)


__all__ = ["WholeModel"]

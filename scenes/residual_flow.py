"""ResidualFlow: the residual stream rises through every layer; the lens reads it."""

from __future__ import annotations

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    Line,
    Rectangle,
    VGroup,
    Write,
)

from mechviz.tokens import shown
from mechviz.visual import style
from mechviz.visual.base import TraceScene
from mechviz.visual.mobjects import TokenBox, TokenRow, fit, grid_image, label, label_step

WRITE_COLS = 24  # pixels of the write-size bars beside each stream
GAP_COLS = 3


class ResidualFlow(TraceScene):
    """Each position's stream rises layer by layer; attention and MLP add their writes."""

    stream_area = (-6.0, 1.5, -2.6, 2.75)  # x0, x1, y0, y1 in scene units
    slow_layers = 3  # layers at each end shown one at a time; the middle fast-forwards
    slow_time = 0.7
    fast_time = 0.14

    def construct(self) -> None:
        self.show_title()
        self.show_tokens()
        self.show_streams()
        self.show_readout()
        self.rise()
        self.show_prediction()

    # --- beats -------------------------------------------------------------
    def show_title(self) -> None:
        self.title = label("The residual stream, layer by layer", style.TITLE_SIZE)
        self.title.to_corner(UP + LEFT, buff=0.3)
        self.play(Write(self.title), run_time=0.8)

    def show_tokens(self) -> None:
        self.stream_centers = self._stream_centers()
        self.tokens = self.get_token_labels()
        self.play(FadeIn(self.tokens, shift=UP * 0.2), run_time=0.6)

    def get_token_labels(self) -> VGroup:
        """Token boxes under the streams; upright labels when the streams are narrow."""
        x0, x1, y0, _ = self.stream_area
        texts = self.trace.tokens.text
        spacing = (x1 - x0) / len(texts)
        row = TokenRow(texts, max_width=x1 - x0, font_size=style.SMALL_SIZE)
        if row.height > 0.35 and all(box.width <= spacing * 0.95 for box in row.boxes):
            for box, x in zip(row.boxes, self.stream_centers):
                box.move_to([x, y0 - 0.4, 0])
            return row
        labels = VGroup()
        step = label_step(spacing)
        for p in range(0, len(texts), step):
            text = label(shown(texts[p]), style.SMALL_SIZE - 2, style.token_color(p))
            fit(text, 1.3, spacing * step * 0.85).rotate(np.pi / 2)
            labels.add(text.move_to([self.stream_centers[p], y0 - 0.1, 0], aligned_edge=UP))
        return labels

    def show_streams(self) -> None:
        self.streams = self.get_streams()
        x0, x1, y0, y1 = self.stream_area
        self.cover = Rectangle(
            width=x1 - x0 + 0.4,
            height=y1 - y0 + 0.05,
            stroke_width=0,
            fill_color=style.BACKGROUND,
            fill_opacity=1.0,
        ).move_to([(x0 + x1) / 2, (y0 + y1) / 2, 0])
        self.add(*self.streams, self.cover)
        self.ticks = self.get_layer_ticks()
        self.legend = self.get_legend()
        self.play(FadeIn(self.ticks), FadeIn(self.legend), run_time=0.6)

    def show_readout(self) -> None:
        last = self.trace.n_positions - 1
        heading = label("Logit lens at the last token", style.TEXT_SIZE, style.MUTED)
        heading.move_to([4.3, 2.4, 0])
        box = TokenBox(self.trace.tokens.text[last], style.token_color(last), style.TEXT_SIZE)
        box.next_to(heading, DOWN, buff=0.2)
        self.readout = self.get_readout(None)
        self.readout_frame = VGroup(heading, box)
        self.play(FadeIn(self.readout_frame), FadeIn(self.readout), run_time=0.6)

    def rise(self) -> None:
        """Reveal the streams layer by layer; the readout follows the last position.

        Text is swapped, not morphed: a morph of thirty labels would be slow to
        render and unreadable in between.
        """
        L = self.trace.n_layers
        line, tag = self.get_marker(None)
        self.add(line, tag)
        for layer in range(L):
            slow = layer < self.slow_layers or layer >= L - self.slow_layers
            if layer == self.slow_layers and L > 2 * self.slow_layers:
                note = label("fast-forward: every layer still shown", style.SMALL_SIZE, style.MUTED)
                note.next_to(self.readout, DOWN, buff=0.35)
                self.play(FadeIn(note), run_time=0.3)
                self.ff_note = note
            if layer == L - self.slow_layers and hasattr(self, "ff_note"):
                self.play(FadeOut(self.ff_note), run_time=0.3)
            new_line, new_tag = self.get_marker(layer)
            readout = self.get_readout(layer)
            self.remove(self.readout, tag)
            self.add(readout, new_tag)
            self.readout, tag = readout, new_tag
            self.play(
                self.cover.animate.stretch_to_fit_height(
                    self.stream_area[3] - self._y_of(layer) + 0.02, about_edge=UP
                ),
                line.animate.move_to(new_line),
                run_time=self.slow_time if slow else self.fast_time,
            )
        self.remove(self.cover)

    def show_prediction(self) -> None:
        token, prob = self.trace.prediction
        text = label(
            f"= the model's prediction: {shown(self.trace.token_text(token))} ({prob:.2f})",
            style.SMALL_SIZE,
            style.HIGHLIGHT,
        )
        text.next_to(self.readout, DOWN, buff=0.35)
        text.scale_to_fit_width(min(text.width, 4.6))
        self.play(
            FadeIn(text, shift=UP * 0.1),
            self.readout.animate.set_color(style.HIGHLIGHT),
            run_time=0.8,
        )
        self.wait(1.5)

    # --- builders ------------------------------------------------------------
    def _stream_centers(self) -> list[float]:
        x0, x1, _, _ = self.stream_area
        P = self.trace.n_positions
        step = (x1 - x0) / P
        return [x0 + step * (i + 0.5) for i in range(P)]

    def _y_of(self, layer: int | None) -> float:
        """Scene y of the top edge of a layer's ``{l}_post`` row (``None``: embed)."""
        _, _, y0, y1 = self.stream_area
        B = len(self.trace.resid.labels)
        row = 0 if layer is None else 2 * layer + 2
        return y0 + (y1 - y0) * (row + 1) / B

    def get_streams(self) -> list:
        """One image per position: pooled stream rows, then write-size bars."""
        trace = self.trace
        pooled = trace.resid.pooled  # [B, P, R]
        B, P, R = pooled.shape
        attn = trace.blocks.attn_out_norm  # [L, P]
        mlp = trace.blocks.mlp_out_norm
        # A few writes (often at the first token) dwarf the rest: scale bars to
        # the 95th percentile and clip, as the legend says.
        top = float(np.quantile(np.concatenate([attn.ravel(), mlp.ravel()]), 0.95))
        x0, x1, y0, y1 = self.stream_area
        width = (x1 - x0) / P * 0.86
        streams = []
        for p in range(P):
            rows = np.stack([_row_colours(pooled[b, p]) for b in range(B)])  # [B, R, 3]
            bars = np.zeros((B, WRITE_COLS, 3), np.uint8) + _bg()
            for layer in range(trace.n_layers):
                for b, norm, color in (
                    (2 * layer + 1, attn[layer, p], style.ATTN_COLOR),
                    (2 * layer + 2, mlp[layer, p], style.MLP_COLOR),
                ):
                    n = min(WRITE_COLS, int(round(WRITE_COLS * float(norm) / top)))
                    bars[b, :n] = np.array(color.to_rgb()) * 255
            gap = np.zeros((B, GAP_COLS, 3), np.uint8) + _bg()
            image = grid_image(np.concatenate([rows, gap, bars], axis=1)[::-1], width, y1 - y0)
            image.move_to([self.stream_centers[p], (y0 + y1) / 2, 0])
            streams.append(image)
        return streams

    def get_layer_ticks(self) -> VGroup:
        L = self.trace.n_layers
        x0 = self.stream_area[0]
        ticks = VGroup()
        for layer in sorted({0, *range(4, L, 5), L - 1}):
            y = self._y_of(layer) - (self._y_of(0) - self._y_of(None)) / 2
            ticks.add(
                label(str(layer), style.SMALL_SIZE - 2, style.MUTED).move_to([x0 - 0.25, y, 0])
            )
        name = label("layer", style.SMALL_SIZE - 2, style.MUTED).rotate(np.pi / 2)
        name.move_to([x0 - 0.55, (self.stream_area[2] + self.stream_area[3]) / 2, 0])
        return ticks.add(name)

    def get_legend(self) -> VGroup:
        items = VGroup()
        for color, text in (
            (style.ATTN_COLOR, "attention write ‖attn_out‖ (bar, clipped)"),
            (style.MLP_COLOR, "MLP write ‖mlp_out‖ (bar, clipped)"),
        ):
            swatch = Rectangle(
                width=0.3, height=0.14, stroke_width=0, fill_color=color, fill_opacity=1
            )
            items.add(
                VGroup(swatch, label(text, style.SMALL_SIZE - 2, style.MUTED)).arrange(
                    RIGHT, buff=0.12
                )
            )
        caption = label(
            "stream: d_model max-pooled; blue < 0 < red", style.SMALL_SIZE - 2, style.MUTED
        )
        items.add(caption)
        items.arrange(DOWN, aligned_edge=LEFT, buff=0.1)
        return items.move_to([4.3, -2.55, 0])

    def get_marker(self, layer: int | None) -> tuple[Line, VGroup]:
        """The level the stream has reached, and its tag."""
        x0, x1, _, _ = self.stream_area
        y = self._y_of(layer)
        line = Line([x0 - 0.05, y, 0], [x1 + 0.05, y, 0], stroke_width=1.5, color=style.FOREGROUND)
        text = "embed" if layer is None else f"layer {layer}"
        return line, label(text, style.SMALL_SIZE - 2).next_to(line, RIGHT, buff=0.08)

    def get_readout(self, layer: int | None) -> VGroup:
        """Top token of the lens at the last position after ``layer``, with its odds."""
        trace, p = self.trace, self.trace.n_positions - 1
        row = trace.lens_row(layer)
        token = trace.token_text(trace.lens.top_ids[row, p, 0])
        prob = float(trace.lens.top_probs[row, p, 0])
        name = "embedding" if layer is None else f"after layer {layer}"
        when = label(name, style.TEXT_SIZE, style.MUTED)
        top = label(shown(token), style.TITLE_SIZE + 6, weight="BOLD")
        bar_bg = Rectangle(width=3.2, height=0.22, stroke_color=style.MUTED, stroke_width=1)
        bar = Rectangle(
            width=max(3.2 * prob, 0.01),
            height=0.22,
            stroke_width=0,
            fill_color=style.PROB_HIGH,
            fill_opacity=1,
        ).align_to(bar_bg, LEFT)
        value = label(f"p = {prob:.2f}", style.TEXT_SIZE, font=style.MONO)
        boundary = 0 if layer is None else trace.resid_post(layer)
        norm = label(
            f"‖resid‖ = {trace.resid.norm[boundary, p]:.1f}",
            style.SMALL_SIZE,
            style.MUTED,
            font=style.MONO,
        )
        group = VGroup(when, top, VGroup(bar_bg, bar), value, norm).arrange(DOWN, buff=0.2)
        return group.move_to([4.3, 0.35, 0])


def _bg() -> np.ndarray:
    return (np.array(style.BACKGROUND.to_rgb()) * 255).astype(np.uint8)


def _row_colours(values: np.ndarray) -> np.ndarray:
    """A boundary's pooled row, coloured relative to its own spread."""
    return style.diverging_rgb(values, style.robust_scale(values))


__all__ = ["ResidualFlow"]

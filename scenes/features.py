"""Features: one position's residual vector as a sum of sparse-autoencoder features."""

from __future__ import annotations

from manim import DOWN, LEFT, UP, FadeIn, SurroundingRectangle, VGroup

from mechviz.model.tokens import shown
from mechviz.visual import style
from mechviz.visual.attribution import resolve_position
from mechviz.visual.base import TraceScene
from mechviz.visual.learned import NOTE, FeatureCard, FeatureSum
from mechviz.visual.text import label

SIDE_BY_SIDE = 10.0  # a content box at least this wide puts the card right of the sum
CARD_HEIGHT = 1.6  # a card's three lines, below the sum in a narrow frame (scene units)


class Features(TraceScene):
    """One position's residual after the SAE's layer: its top features, the bias, the remainder.

    Reads ``trace.features`` (``mechviz trace --sae``). The position is the
    settings' ``query`` (default: the last).
    """

    beats = {
        "sum": "the residual as its most active features, the shared bias and the error, by norm",
        "cards": "each feature in turn with its card: a context it fires on, what it promotes",
        "quality": "the SAE's held-out quality: variance explained, loss clean → with the SAE",
    }
    n = 5  # features drawn at most

    def construct(self) -> None:
        self.features = self.trace.require("features")  # one sentence without it
        self.position = resolve_position(self.trace, self.settings.query)
        token = shown(self.token_texts[self.position])
        self.show_title(f"{token} as a sum of features")
        with self.beat("sum"):
            self.show_sum()
        with self.beat("cards"):
            self.show_cards()
        with self.beat("quality"):
            self.show_quality()

    # --- words ------------------------------------------------------------------------
    def sum_words(self) -> str:
        """The sum beat's caption: how many features are shown, the dark matter's share."""
        s = self.sum
        return (
            f"The top {len(s.shown_ids)} of {s.active} active features, the shared bias and "
            f"the error (dark matter: {s.share:.0%} of ‖x‖)."
        )

    # --- beats ------------------------------------------------------------------------
    def show_sum(self) -> None:
        box = self.content
        self.side = box.width >= SIDE_BY_SIDE
        if self.side:
            self.sum_box, self.card_box = box.split("x", 0.55, gap=0.6)
        else:  # below the sum: the card's three lines, then the held-out figures
            card_h = min(max(CARD_HEIGHT, self.quality_panel().height + 0.5), box.height / 2)
            self.sum_box, self.card_box = box.split("y", 1 - card_h / box.height, gap=0.4)
        self.sum = FeatureSum.from_trace(
            self.trace,
            self.position,
            width=self.sum_box.width,
            height=self.sum_box.height,
            theme=self.theme,
            n=self.n,
            note=self.sum_box.height >= FeatureSum.least_height(self.sum_box.width),
        )
        self.sum.move_to(self.sum_box.center).align_to([self.sum_box.x0, 0, 0], LEFT)
        self.caption(self.sum_words())
        self.swap(None, self.sum, run_time=0.6)
        self.wait(1.5)
        if self.sum.note is None:  # no room for the block's own note: the caption says it
            self.caption(NOTE)
            self.wait(1.5)
        if not int(self.features.typical[self.position]):
            self.caption(
                "Untypical position: its norm is unlike the training text's (an attention "
                "sink); the SAE fits it poorly."
            )
            self.wait(1.5)

    def show_cards(self) -> None:
        s = self.sum
        carded = [i for i in s.shown_ids if i in set(int(c) for c in self.features.card_ids)]
        self.caption(
            "Each card: where the feature fires most in the training text (token marked), "
            "and the tokens it promotes."
        )
        self.card = None
        frame = None
        for fid in carded:
            card = FeatureCard.from_trace(
                self.trace, fid, width=self.card_box.width, theme=self.theme
            )
            card.move_to(self.card_box.center).align_to([self.card_box.x0, 0, 0], LEFT)
            if not self.side:
                card.align_to([0, self.card_box.y1, 0], UP)
            new_frame = SurroundingRectangle(
                s.row(str(fid))[0], color=self.theme.highlight, buff=0.06, stroke_width=3
            )
            if frame is None:
                self.play(FadeIn(new_frame), run_time=0.2)
            else:
                self.play(frame.animate.become(new_frame), run_time=0.3)
                new_frame = frame
            frame = new_frame
            self.swap(self.card, card, run_time=0.4)
            self.card = card
            self.wait(1.2)
        self.frame_mark = frame

    def quality_panel(self) -> VGroup:
        """The held-out figures, one per line under a heading."""
        f = self.features
        lines = [
            f"variance explained  {f.eval_fve:.2f}",
            f"{f.eval_l0:.0f} of {f.n_features:,} features active",
            f"dead features  {f.eval_dead_share:.0%}",
            f"loss  {f.eval_ce_clean:.2f} → {f.eval_ce_sae:.2f} nats",
            f"(layer zeroed: {f.eval_ce_zero:.2f})",
        ]
        head = label("held out", style.BODY_TEXT, self.theme.foreground)
        texts = [label(x, style.MIN_TEXT, self.theme.foreground) for x in lines]
        return VGroup(head, *texts).arrange(DOWN, buff=0.2, aligned_edge=LEFT)

    def show_quality(self) -> None:
        f = self.features
        room = self.card_box
        panel = self.quality_panel()
        old = [m for m in (self.card, self.frame_mark) if m is not None]
        if panel.height > room.height or panel.width > room.width:
            room = self.content  # a narrow frame: the figures take the sum's place
            old.append(self.sum)
        panel.move_to(room.center).align_to([room.x0, 0, 0], LEFT)
        if room is self.card_box and not self.side:
            panel.align_to([0, room.y1, 0], UP)
        self.quality = panel
        self.caption(
            f"Held out: variance explained {f.eval_fve:.0%}; with the SAE in place the loss "
            f"goes {f.eval_ce_clean:.2f} → {f.eval_ce_sae:.2f} nats."
        )
        self.swap(VGroup(*old) if old else None, panel, run_time=0.5)
        self.wait(1.5)


__all__ = ["Features"]

"""Patching: which activations of the clean run bring its answer back into the corrupt run."""

from __future__ import annotations

from dataclasses import dataclass

from manim import (
    DOWN,
    LEFT,
    UP,
    Create,
    FadeIn,
    FadeOut,
    Group,
    Rectangle,
    ReplacementTransform,
    VGroup,
)

from mechviz.model.tokens import shown
from mechviz.visual import style
from mechviz.visual.base import Box, TraceScene
from mechviz.visual.blocks import TraceView
from mechviz.visual.patching import (
    KINDS,
    MapsLayout,
    PatchingLegend,
    PatchingMaps,
    Site,
    SiteList,
    column_texts,
    differing,
    fmt,
    strongest_sites,
)
from mechviz.visual.text import paragraph

GOOD_PITCH = 0.09  # rows this tall (scene units) keep the maps side by side, else the tallest rows


@dataclass
class Plan:
    """Where things go: the maps' room, the legend's and the list's (scene units)."""

    maps: Box
    legend: Box
    slot: Box
    together: bool
    pitch: float
    groups: tuple[tuple[str, ...], ...] = (KINDS,)


class Patching(TraceScene):
    """The patching maps of the trace's ``patching`` section, building up from the embedding.

    The stream (layer boundary x position), the heads (layer x head) and the
    MLPs (layer) share one layer axis; each cell's colour is the recorded value
    (1 = the clean run's logit difference restored, 0 = the corrupt run's).
    """

    beats = {
        "setup": "the two prompts, the answer and the wrong token, and both logit differences",
        "resid": "the stream patched at each layer boundary and position, from the embedding up",
        "heads": "each head's output patched (layer x head), beside the stream",
        "mlp": "each MLP's output patched (one column of layers)",
        "summary": "the sites that restore most, framed and named with their values",
    }
    reveal_time = 1.4  # seconds a map takes to rise from the embedding to the last layer
    hold_time = 1.2

    def construct(self) -> None:
        self.patching = self.trace.require("patching")  # one sentence without it
        self.sites = strongest_sites(self.trace)
        self.show_title("Activation patching")
        with self.beat("setup"):
            self.show_setup()
        with self.beat("resid"):
            self.show_kind("resid")
        with self.beat("heads"):
            self.show_kind("heads")
        with self.beat("mlp"):
            self.show_kind("mlp")
        with self.beat("summary"):
            self.show_summary()

    # --- words ------------------------------------------------------------------------
    @property
    def answer(self) -> str:
        return shown(self.vocab_text(self.patching.answer))

    @property
    def wrong(self) -> str:
        return shown(self.vocab_text(self.patching.wrong))

    def facts(self) -> list[str]:
        """The setup in lines: the two prompts, where they differ, the two logit differences."""
        p = self.patching
        where = ", ".join(column_texts(self.trace)[i] for i in differing(self.trace))
        return [
            f"clean: {self.trace.prompt}",
            f"corrupt: {p.corrupt_prompt}",
            f"they differ at {where}" if where else "the same tokens",
            f"{self.answer} − {self.wrong} logits: clean {fmt(p.clean_diff)}, "
            f"corrupt {fmt(p.corrupt_diff)}",
        ]

    def captions(self) -> dict[str, str]:
        return {
            "setup": f"Copy one activation of the clean run into the corrupt run: how much of "
            f"{self.answer} over {self.wrong} comes back?",
            "resid": "The stream after each layer (rows, from the embedding up) at each "
            "position, patched one site at a time.",
            "heads": "Each head's output patched alone, at every position; blue (below 0) "
            f"pushes further towards {self.wrong}.",
            "mlp": "Each MLP's output patched alone, at every position.",
            "summary": self.summary_caption(self.on_screen_at_end()),
        }

    def on_screen_at_end(self) -> tuple[str, ...]:
        """The maps the summary frames: the plan's last group (all three before a plan)."""
        plan = getattr(self, "plan", None)
        return plan.groups[-1] if plan is not None and not plan.together else KINDS

    def summary_caption(self, kinds: tuple[str, ...] = KINDS) -> str:
        """The strongest head and MLP with their values, and the stream's runs.

        Only the maps of ``kinds`` (those on screen) are spoken of: a frame too
        small for the stream's map beside the others does not describe it here.
        """
        firsts = {}
        for site in self.sites:
            if site.kind in kinds and (site.value >= 0 or site.kind == "resid"):
                firsts.setdefault(site.kind, site)
        parts = [f"{s.name} ({s.text})" for k, s in firsts.items() if k != "resid"]
        names = column_texts(self.trace)
        runs = [
            f"{names[s.col]} ({s.name.rsplit(', ', 1)[1]})"
            for s in self.sites
            if s.kind == "resid" and "resid" in kinds
        ]
        text = "Restore most: " + ", ".join(parts) if parts else "Restore most:"
        if runs:
            text += ("; the stream at " if parts else " the stream at ") + " and ".join(runs)
        return text + "."

    # --- beats ------------------------------------------------------------------------
    def show_setup(self) -> None:
        self.caption(self.captions()["setup"])
        box = self.content
        self.plan = self.get_plan()
        self.big = self.facts_text(style.BODY_TEXT, box.width)
        self.legend = PatchingLegend(self.trace, self.theme, self.plan.legend.width)
        group = Group(self.big, self.legend).arrange(DOWN, buff=0.5, aligned_edge=LEFT)
        if group.height > box.height:  # the legend waits for the maps
            group = Group(self.big)
        group.move_to(box.center)
        self.swap(None, group, run_time=0.6)
        self.wait(self.hold_time)

    def show_kind(self, kind: str) -> None:
        self.caption(self.captions()[kind])
        plan = self.plan
        if kind == "resid":
            self.small = self.facts_text(style.MIN_TEXT, plan.slot.width)
            self.small.move_to(plan.slot.center).align_to([0, plan.slot.y1, 0], UP)
            if self.small.height <= plan.slot.height:
                moves = [ReplacementTransform(self.big, self.small)]
            else:  # no room to keep the setup in view: the caption and legend name it
                moves = [FadeOut(self.big)]
                self.small = VGroup()
            target = self.legend.copy().move_to(plan.legend.center)
            target.align_to([plan.legend.x0, 0, 0], LEFT)
            if self.legend in self.mobjects:
                moves.append(self.legend.animate.move_to(target.get_center()))
                self.play(*moves, run_time=0.8)
            else:
                self.play(*moves, run_time=0.8)
                self.legend.move_to(target.get_center())
                self.swap(None, self.legend, run_time=0.4)
        maps = self.get_maps(kind)
        old = getattr(self, "maps", None)
        if old is not None and old is not maps:
            self.swap(old, None, run_time=0.4)
        self.maps = maps
        parts = [maps.panels[kind]] + ([maps.axis] if kind == maps.kinds[0] else [])
        veil = maps.veil(kind)
        self.add(*parts, veil)
        self.play(
            veil.animate.stretch_to_fit_height(0.001, about_edge=[0, 1, 0]),
            run_time=self.reveal_time,
        )
        self.remove(veil)
        self.wait(self.hold_time)

    def show_summary(self) -> None:
        self.caption(self.captions()["summary"])
        slot = self.plan.slot
        self.site_list = SiteList(
            self.sites, self.theme, slot.width, slot.height, prefer=self.maps.kinds
        )
        if len(self.site_list):
            self.site_list.move_to(slot.center).align_to([0, slot.y1, 0], UP)
        self.swap(self.small if len(self.small) else None, self.site_list, run_time=0.6)
        firsts = {s.kind: s for s in reversed(self.sites) if s.value >= 0}  # each kind's best
        framed = [s for s in self.sites if s in self.site_list.sites or s in firsts.values()]
        self.frames = VGroup(*(self.frame_of(s) for s in framed if s.kind in self.maps.kinds))
        # Each framed row named on the axis (a row between two labels reads as its neighbour).
        slots = [s.first for s in framed if s.kind in self.maps.kinds and s.kind != "resid"]
        self.row_names, displaced = self.maps.name_rows(slots)
        if len(self.frames):
            moves = [Create(f) for f in self.frames]
            if len(self.row_names):
                moves += [FadeIn(self.row_names)] + ([FadeOut(displaced)] if len(displaced) else [])
            self.play(*moves, run_time=0.8)
        self.wait(self.hold_time)

    # --- builders ---------------------------------------------------------------------
    def facts_text(self, size: float, width: float) -> VGroup:
        """The setup's lines, each wrapped to ``width`` at ``size``."""
        colors = [self.theme.foreground, self.theme.foreground, self.theme.highlight]
        colors.append(self.theme.foreground)
        lines = [paragraph(t, size, c, max_width=width) for t, c in zip(self.facts(), colors)]
        buff = 0.3 if size > style.MIN_TEXT else 0.12  # big: lines apart more than wrapped lines
        return VGroup(*lines).arrange(DOWN, buff=buff, aligned_edge=LEFT)

    def frame_of(self, site: Site) -> Rectangle:
        """A frame around ``site`` on the maps: the highlight, or the foreground below 0."""
        color = self.theme.highlight if site.value >= 0 else self.theme.foreground
        return self.maps.frame_site(site, color)

    def get_maps(self, kind: str) -> PatchingMaps:
        """The maps of the plan's group that holds ``kind`` (made once per group)."""
        plan = self.plan
        group = next(g for g in plan.groups if kind in g)
        old = getattr(self, "maps", None)
        if old is not None and old.kinds == group:
            return old
        layout = PatchingMaps.fit(self.trace, group, plan.maps.width, plan.maps.height)
        maps = PatchingMaps(TraceView(self.trace, self.theme), layout)
        maps.move_to(plan.maps.center)
        return maps

    def get_plan(self) -> Plan:
        """The arrangement that leaves the maps the tallest rows (side by side preferred)."""
        box = self.content
        plans = []
        sides = ["right", "below"]
        if box.width > 1.3 * box.height:  # a wide room: the maps need its height
            sides = ["right"]
        elif box.height > 1.3 * box.width:  # a tall one: they need its width
            sides = ["below"]
        for side in sides:
            if side == "right":
                share = (
                    0.4 if self.frame.width > 1.3 * self.frame.height else 0.36
                )  # square: maps need width
                side_w = min(5.4, max(2.6, share * box.width))
                maps = Box(box.x0, box.x1 - side_w - 0.4, box.y0, box.y1)
                legend = PatchingLegend(self.trace, self.theme, side_w)
                legend_box = Box(maps.x1 + 0.4, box.x1, box.y1 - legend.height, box.y1)
                slot = Box(legend_box.x0, box.x1, box.y0, legend_box.y0 - 0.3)
            else:
                half = (box.width - 0.4) / 2
                legend = PatchingLegend(self.trace, self.theme, half)
                facts = self.facts_text(style.MIN_TEXT, half)
                listed = SiteList.height_of(self.sites[:6], half)
                strip = max(legend.height, facts.height, listed)
                maps = Box(box.x0, box.x1, box.y0 + strip + 0.4, box.y1)
                legend_box = Box(
                    box.x0, box.x0 + half, box.y0 + strip - legend.height, box.y0 + strip
                )
                slot = Box(box.x0 + half + 0.4, box.x1, box.y0, box.y0 + strip)
            together = self.fit(KINDS, maps)
            if together.fits:
                score = (together.pitch >= GOOD_PITCH, together.pitch)
                plans.append((score, Plan(maps, legend_box, slot, True, together.pitch)))
            groups: tuple[tuple[str, ...], ...] = (("resid",), ("heads", "mlp"))
            if not self.fit(groups[1], maps).fits:
                groups = tuple((k,) for k in KINDS)
            turns = min(self.fit(g, maps).pitch for g in groups)
            plans.append(((False, turns), Plan(maps, legend_box, slot, False, turns, groups)))
        return max(plans, key=lambda p: p[0])[1]

    def fit(self, kinds: tuple[str, ...], box: Box) -> MapsLayout:
        return PatchingMaps.fit(self.trace, kinds, box.width, box.height)


__all__ = ["Patching"]

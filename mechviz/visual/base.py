"""The base class of every mechviz scene: trace, theme, aspect, beats, captions and timing."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    AnimationGroup,
    FadeIn,
    FadeOut,
    Group,
    Mobject,
    Rectangle,
    Scene,
    Text,
    config,
)
from manim.camera.camera import Camera
from manim.constants import RendererType
from manim.renderer.cairo_renderer import CairoRenderer
from manim.utils.exceptions import EndSceneEarlyException
from manim.utils.family import extract_mobject_family_members
from manim.utils.iterables import list_update

from mechviz.errors import MechvizError, raise_if_stopped
from mechviz.files import atomic_write
from mechviz.model.tokens import legend, readable, readable_tokens
from mechviz.tracing.io import load_trace
from mechviz.tracing.schema import Trace
from mechviz.visual import settings as scene_settings
from mechviz.visual import style
from mechviz.visual.text import baseline, block_height, cap_share, label, paragraph


@dataclass
class Cue:
    """One beat's caption and when it is on screen (seconds into the video)."""

    beat: str
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class TextInfo:
    """A text on screen: its string, capital height as a share of the shorter side, bounds."""

    text: str
    share: float
    x0: float
    x1: float
    y0: float
    y1: float


@dataclass(frozen=True)
class Box:
    """A rectangle of the frame in scene units (``x0 < x1``, ``y0 < y1``)."""

    x0: float
    x1: float
    y0: float
    y1: float

    @property
    def width(self) -> float:
        """Width in scene units."""
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        """Height in scene units."""
        return self.y1 - self.y0

    @property
    def center(self) -> np.ndarray:
        """The centre point ``[x, y, 0]``."""
        return np.array([(self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2, 0.0])

    def split(self, axis: str, share: float, gap: float = 0.3) -> tuple[Box, Box]:
        """Two boxes: ``share`` of this one's width (``"x"``) or height (``"y"``), then the rest.

        Along ``"y"`` the first box is the upper one.
        """
        if axis == "x":
            cut = self.x0 + (self.width - gap) * share
            return Box(self.x0, cut, self.y0, self.y1), Box(cut + gap, self.x1, self.y0, self.y1)
        cut = self.y1 - (self.height - gap) * share
        return Box(self.x0, self.x1, cut, self.y1), Box(self.x0, self.x1, self.y0, cut - gap)


def apply_frame(settings: scene_settings.SceneSettings) -> None:
    """Set Manim's frame for ``settings``: pixels from the quality's shorter side, 8 units short.

    With an aspect given, the pixel size is re-derived from the shorter side
    Manim was asked for (``-ql`` 480, ``-qh`` 1080, ...). Without one (plain
    ``manim -r 1080,1920``), the frame takes the pixels' own shape.
    """
    short = min(config.pixel_width, config.pixel_height)
    if "MECHVIZ_ASPECT" in _environ() or scene_settings._current is not None:
        config.pixel_width, config.pixel_height = scene_settings.pixel_size(settings.aspect, short)
    config.frame_width, config.frame_height = scene_settings.frame_size(
        config.pixel_width, config.pixel_height
    )
    if settings.fps is not None:
        config.frame_rate = settings.fps
    if settings.transparent:
        config.transparent = True


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


class TraceScene(Scene):
    """A Manim scene that draws one trace (``self.trace``) and nothing else.

    Subclasses name their beats in :attr:`beats` (name -> one line for
    ``--list-beats``) and wrap each in ``with self.beat(name):``; a beat left out
    by the settings still runs, without drawing frames, so later beats start
    from the same picture. Layout reads :attr:`frame` (the whole picture),
    :attr:`content` (below the title, above the caption) and :attr:`portrait`.
    """

    beats: ClassVar[dict[str, str]] = {}
    title_text: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.settings = scene_settings.current()
        apply_frame(self.settings)
        if not args and kwargs.get("renderer") is None and config.renderer == RendererType.CAIRO:
            from mechviz.visual._encode import FrameWriter

            kwargs["renderer"] = CairoRenderer(
                file_writer_class=FrameWriter,
                camera_class=kwargs.get("camera_class", Camera),
                skip_animations=kwargs.get("skip_animations", False),
            )
        super().__init__(*args, **kwargs)

    def setup(self) -> None:
        self._keep_static_frame()
        self._lend_frames()
        self.theme = style.get_theme(self.settings.theme)
        self.camera.background_color = self.theme.background
        if self.settings.transparent:
            self.camera.background_opacity = 0.0
        trace = self.settings.trace
        if not isinstance(trace, Trace) and Path(trace) == scene_settings.example_trace():
            trace = scene_settings.example_trace(type(self).__name__)  # its own, if it has one
        self.trace: Trace = trace if isinstance(trace, Trace) else load_trace(trace)
        self.token_colors = style.TokenColors(self.trace.tokens.ids, self.theme)
        # Byte fragments (<0xD0>) read as what they are; see mechviz.model.tokens.readable_tokens.
        self.token_texts = readable_tokens(self.trace.tokens.text)
        w, h = config.frame_width, config.frame_height
        self.frame = Box(-w / 2, w / 2, -h / 2, h / 2)
        self.portrait = h > w * 1.05
        self.clock = 0.0  # seconds of video written so far
        self.cues: list[Cue] = []
        self._beat: str | None = None
        self._done: set[str] = set()
        self.beat_texts: dict[str, list[TextInfo]] = {}
        self._skipping = False
        self._caption = None
        self._caption_at: float | None = None  # the clock when the caption came up
        self._title = None
        self.cut_captions: list[str] = []  # captions too long for their lines
        self._check_beats()
        m = style.BUFF
        # The caption's room is kept free from the start, so no caption covers the picture.
        self.caption_lines = 3 if self.frame.width < 1.3 * self.frame.height else 2
        room = block_height(self.caption_lines, style.BODY_TEXT)
        self.content = Box(
            self.frame.x0 + m,
            self.frame.x1 - m,
            self.frame.y0 + m + room + 0.25,
            self.frame.y1 - m - 0.8,
        )

    #: Whether the scene draws logit-lens readings (tables, bars): their tokens'
    #: marks then go into the legend too.
    shows_lens: ClassVar[bool] = False

    def legend_texts(self) -> list[str]:
        """Token texts the scene can draw, for the legend of marks.

        The prompt and the prediction; with :attr:`shows_lens`, each layer's
        top-1 and the last position's top-k too.
        """
        trace = self.trace
        ids = {int(trace.output.top_ids[-1, 0])}
        if self.shows_lens:
            ids |= {int(i) for i in np.unique(trace.lens.top_ids[:, :, 0])}
            ids |= {int(i) for i in np.unique(trace.lens.top_ids[:, -1])}
        return list(trace.tokens.text) + [trace.token_text(i) for i in sorted(ids)]

    def vocab_text(self, token_id: int) -> str:
        """A predicted token's text, byte fragments made readable."""
        return readable(self.trace.token_text(token_id))

    # --- beats ------------------------------------------------------------------
    def _check_beats(self) -> None:
        wanted = self.settings.beats
        if wanted is None:
            return
        unknown = [b for b in wanted if b not in self.beats]
        if unknown:
            names = ", ".join(self.beats)
            raise MechvizError(
                f"{type(self).__name__} has no beat {unknown[0]!r}; its beats are {names}."
            )

    def beat_name(self, name: str) -> str:
        """The beat's full name (``Chapter.beat`` inside a Story)."""
        return getattr(self, "_prefix", "") + name

    @contextlib.contextmanager
    def beat(self, name: str) -> Iterator[None]:
        """Run one beat; it draws frames only when the settings select it."""
        if name not in type(self).beats:
            raise KeyError(f"{type(self).__name__}.beats does not name {name!r}")
        name = self.beat_name(name)
        wanted = self.settings.beats
        if wanted is not None and set(wanted) <= self._done:
            raise EndSceneEarlyException()  # every chosen beat is drawn: end here
        self.let_read()  # the last beat's caption read beside its picture, before it goes
        self._skipping = wanted is not None and name not in wanted
        self._beat = name
        self.next_section(name, skip_animations=self._skipping)
        try:
            yield
        finally:
            self._beat = None
            self._done.add(name)
            if not self._skipping:
                self.beat_texts[name] = self.text_report()

    # --- the frame: title and caption ---------------------------------------------------
    def show_title(self, text: str, run_time: float = 0.6) -> None:
        """The scene's title, top left, wrapped on narrow frames; the marks' legend beside it.

        A wrapped title is one text per line, so the legend can stand beside its
        last line (on that line's baseline) when there is room, else on a line of
        its own below.
        """
        block = paragraph(
            text, style.TITLE_TEXT, self.theme.foreground, max_width=self.frame.width - 0.6
        )
        block.to_corner(UP + LEFT, buff=style.BUFF)
        words = block.original_text.split("\n")
        step = block_height(2, style.TITLE_TEXT) - block_height(1, style.TITLE_TEXT)
        first = (
            baseline(label(words[0], style.TITLE_TEXT))
            - label(words[0], style.TITLE_TEXT).get_top()[1]
        )
        top_line = block.get_top()[1] + first
        lines = []
        for i, words_i in enumerate(words):
            line = label(words_i, style.TITLE_TEXT, self.theme.foreground)
            line.shift(
                [block.get_left()[0] - line.get_left()[0], top_line - i * step - baseline(line), 0]
            )
            lines.append(line)
        title = Group(*lines)
        self._title = title
        top = min(block.get_bottom()[1], title.get_bottom()[1]) - 0.25
        key = self.mark_legend()
        if key is not None:
            last = lines[-1]
            room = self.frame.x1 - style.BUFF - last.get_right()[0] - 0.35
            # Beside a wrapped title's short last line, a wrapped legend saves a line.
            wrapped = self.mark_legend(room) if room >= 2.5 and len(lines) > 1 else None
            below = key.height + 0.1  # what a legend under the title costs in height
            if key.width <= room and "\n" not in key.original_text:  # one line, beside
                key.move_to([self.frame.x1 - style.BUFF - key.width / 2, 0, 0])
                key.shift([0, baseline(last) - baseline(key), 0])
            elif (
                wrapped is not None
                and wrapped.width <= room
                and (wrapped.height - last.height < below)
            ):  # wrapped beside the title's last line, when that costs less height
                key = wrapped.next_to(last, RIGHT, buff=0.35).align_to(last, UP)
                top = min(top, key.get_bottom()[1] - 0.2)
            else:  # no room beside the title: a line of its own below it
                key.next_to(title, DOWN, buff=0.1).align_to(title, LEFT)
                top = key.get_bottom()[1] - 0.2
            title = Group(*lines, key)
        self.content = Box(self.content.x0, self.content.x1, self.content.y0, top)
        self.swap(None, title, run_time=run_time)

    def mark_legend(self, max_width: float | None = None) -> Mobject | None:
        """What the marks for invisible characters mean (``· = space``), or None.

        It covers :meth:`legend_texts`: the tokens this scene can draw
        (:func:`mechviz.model.tokens.legend`). Wider than ``max_width`` (default: the
        frame less its margins), it wraps between entries.
        """
        texts = self.legend_texts()
        words = legend(texts)
        if not words:
            return None
        key = label(words, style.MIN_TEXT, self.theme.muted)
        room = self.frame.width - 2 * style.BUFF if max_width is None else max_width
        if key.width > room:  # a long legend wraps between its entries, not inside one
            glued = ", ".join(e.replace(" ", "\u00a0") for e in words.split(", "))
            key = paragraph(glued, style.MIN_TEXT, self.theme.muted, max_width=room)
        return key

    def swap(self, old: Mobject | None, new: Mobject | None, run_time: float = 0.4) -> None:
        """Fade ``old`` out and ``new`` in (either may be ``None``), in a place of their own.

        A veil of the background's colour fades in over ``old`` and out over
        ``new``: one rectangle changes per frame instead of every glyph (a
        caption has hundreds) or every image (each costs a full-frame
        composite). Nothing else may lie in their area (title, caption, an
        empty panel). With a transparent background it cross-fades.
        """
        if self.settings.transparent:
            fades = [FadeOut(old)] if old is not None else []
            fades += [FadeIn(new)] if new is not None else []
            if fades:
                self.play(*fades, run_time=run_time)
            return
        boxes = [_bounds(m, 0.05) for m in (old, new) if m is not None]
        area = _union(boxes)
        if area is None:
            return
        veil = Rectangle(
            width=area[1] - area[0],
            height=area[3] - area[2],
            stroke_width=0,
            fill_color=self.theme.background,
            fill_opacity=0.0 if old is not None else 1.0,
        ).move_to([(area[0] + area[1]) / 2, (area[2] + area[3]) / 2, 0])
        if old is not None:
            self.add(veil)
            self.play(veil.animate.set_fill(opacity=1.0), run_time=run_time / 2)
            self.remove(*old.get_family())  # a Group made for the swap is not in the scene
        if new is not None:
            self.remove(veil)
            self.add(new, veil)
            half = run_time / 2 if old is not None else run_time
            self.play(veil.animate.set_fill(opacity=0.0), run_time=half)
        self.remove(veil)

    def let_read(self) -> None:
        """Hold the picture until the caption on screen has been up long enough to read.

        A caption stays at least its length / :data:`style.READING_CPS` seconds
        (17 characters a second) at speed 1. A new beat calls it first (so the
        hold shows the picture the caption speaks of), :meth:`caption` before it
        replaces one, and the scene's end before its hold.
        """
        if self._caption is None or self._caption_at is None or self._skipping:
            return
        if config.save_last_frame:
            return  # a still: no time passes
        speed = self.settings.speed
        need = len(self._caption.original_text) / style.READING_CPS / speed
        short = need - (self.clock - self._caption_at)
        if short > 0:  # a frame more: the clock counts whole frames
            self.wait((short + 1 / config.frame_rate) * speed)  # play() divides by the speed

    def caption(self, text: str, run_time: float = 0.4) -> None:
        """Say what the picture shows, at the bottom of the frame; one SRT cue per caption.

        The caption before it is first given its reading time (:meth:`let_read`).
        """
        self.let_read()
        new = paragraph(
            text,
            style.BODY_TEXT,
            self.theme.muted,
            max_width=self.frame.width - 2 * style.BUFF,
            max_lines=self.caption_lines,
        )
        new.to_edge(DOWN, buff=style.BUFF)
        if getattr(new, "_mv_cut", False):
            self.cut_captions.append(text)  # the legibility test reports these
        # Tall glyphs (brackets, accents) can outgrow the room kept for the caption:
        # the picture laid out from now on stays above it.
        c = self.content
        self.content = Box(c.x0, c.x1, max(c.y0, new.get_top()[1] + 0.25), c.y1)
        old = self._caption
        self._caption = new
        self._caption_at = self.clock
        for cue in self.cues:
            if cue.end < 0:
                cue.end = self.clock
        self.cues.append(Cue(self._beat or "", text, self.clock, -1.0))
        self.swap(old, new, run_time=run_time)

    def text_report(self) -> list[TextInfo]:
        """Every visible text on screen now: what it says, its size and where it is.

        The legibility test reads this at the end of every beat.
        """
        out = []
        seen: set[int] = set()
        for mob in self.mobjects:
            for part in mob.get_family():
                is_text = isinstance(part, Text) or hasattr(part, "_mv_font_size")
                if not is_text or id(part) in seen:
                    continue
                seen.add(id(part))
                glyphs = part.family_members_with_points()
                if not any(g.get_fill_opacity() > 0.05 for g in glyphs):
                    continue
                out.append(
                    TextInfo(
                        text=part.text,
                        share=cap_share(part, min(self.frame.width, self.frame.height)),
                        x0=float(part.get_left()[0]),
                        x1=float(part.get_right()[0]),
                        y0=float(part.get_bottom()[1]),
                        y1=float(part.get_top()[1]),
                    )
                )
        return out

    # --- timing ---------------------------------------------------------------------------
    def play(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()  # a stop signal that C code swallowed still ends the render here
        speed = self.settings.speed
        if speed != 1.0:
            if "run_time" in kwargs:
                kwargs["run_time"] = kwargs["run_time"] / speed
            else:
                times = [getattr(a, "run_time", 1.0) for a in args] or [1.0]
                kwargs["run_time"] = max(times) / speed
        super().play(*args, **kwargs)
        if not (self._skipping or config.save_last_frame):
            # The clock counts frames as Manim writes them: a still wait keeps
            # floor(t * fps) frames, an animation one per 1/fps step from 0.
            fps = config.frame_rate
            if self.animations and self.is_current_animation_frozen_frame():
                frames = int(self.duration / (1 / fps))
            else:
                frames = len(np.arange(0, self.duration, 1 / fps))
            self.clock += frames / fps

    def update_to_time(self, t: float) -> None:
        """Advance the animations; a readout that switched draws its new parts this frame.

        Manim lists what it redraws when a play begins; a :class:`SwitchAt` that
        rebuilds a value mid-play would otherwise show its old glyphs (bars at
        0.77 beside "0.00") until the play ends.
        """
        super().update_to_time(t)
        for anim in _flatten(list(self.animations or [])):
            swapped = getattr(anim, "swapped", None)
            if swapped:
                anim.swapped = None
                old, new = swapped
                gone = {id(m) for m in old}
                kept = [m for m in self.moving_mobjects if id(m) not in gone]
                self.moving_mobjects = kept + list(new)

    def _lend_frames(self) -> None:
        """Hand each drawn frame to the encoder itself, not a copy of it.

        Manim's Cairo renderer copies every finished frame (8 MB at 1080p, a
        new array each time) before queueing it for the encoder, which owns
        what it is given. Here the camera draws into buffers of a
        :class:`~mechviz.visual._encode.FramePool`: the frame just drawn is
        queued as it is, and the next drawing starts on another buffer (the
        encoder gives the old one back once it has read it). Between frames
        ``camera.pixel_array`` still holds the last frame, for whoever reads it.
        """
        from mechviz.visual._encode import FramePool, FrameWriter

        renderer = self.renderer
        camera = renderer.camera
        writer = getattr(renderer, "file_writer", None)
        if not isinstance(writer, FrameWriter):
            return  # another renderer, or a writer that does not give frames back
        pool = self._frame_pool = FramePool(camera.pixel_array.shape, camera.pixel_array.dtype)
        first = pool.take()
        first[...] = camera.pixel_array
        camera.pixel_array = first
        lent: list[Any] = [None]  # the buffer the encoder may still be reading
        set_pixel_array = camera.set_pixel_array

        def draw_on_free_buffer(pixel_array: Any, convert_from_floats: bool = False) -> None:
            # Every drawing starts here (reset, or the still background), so a
            # lent buffer is swapped out before anything is drawn on top.
            if camera.pixel_array is lent[0] and camera.pixel_array.shape == pool.shape:
                camera.pixel_array = pool.take()
            lent[0] = None
            set_pixel_array(pixel_array, convert_from_floats)

        def render(scene: Scene, time: float, moving_mobjects: Any = None) -> None:
            renderer.update_frame(scene, moving_mobjects)
            frame = camera.pixel_array
            video = getattr(writer, "_current_encode_job", None) is not None
            if renderer.skip_animations or not video or not pool.owns(frame):
                renderer.add_frame(renderer.get_frame())  # Manim's own way: a copy
                return
            lent[0] = frame
            renderer.add_frame(frame)

        camera.set_pixel_array = draw_on_free_buffer
        renderer.render = render

    def _keep_static_frame(self) -> None:
        """Reuse the still background between animations, as far as it has not changed.

        Manim redraws every still mobject at the start of every ``play``; a
        scene of many short steps (ResidualFlow's 30 layers) over large images
        spends most of its time there. Here the background keeps a snapshot
        after the still mobjects that did not change between the last two
        animations (points, colours, pixels), and redraws only those after it.
        """
        renderer = self.renderer
        if not hasattr(renderer, "save_static_frame_data"):  # not the Cairo renderer
            return
        camera = renderer.camera
        kept: dict[str, Any] = {"keys": [], "snap": None, "at": 0}

        def save(scene: Scene, static_mobjects: Iterable[Mobject]) -> Any:
            mobjects = list(static_mobjects)
            renderer.static_image = None
            if not mobjects:
                return None
            keys = [_mob_key(m) for m in mobjects]
            same = 0
            for old, new in zip(kept["keys"], keys):
                if old != new:
                    break
                same += 1
            start = kept["at"] if kept["snap"] is not None and same >= kept["at"] else 0
            if start:
                camera.set_frame_to_background(kept["snap"])
            else:
                camera.reset()
                kept["snap"], kept["at"] = None, 0
            if same > start:  # a longer stable run: snapshot after it
                camera.capture_mobjects(mobjects[start:same])
                kept["snap"], kept["at"] = camera.pixel_array.copy(), same
                start = same
            camera.capture_mobjects(mobjects[start:])
            kept["keys"] = keys
            renderer.static_image = renderer.get_frame()
            return renderer.static_image

        renderer.save_static_frame_data = save

    def get_moving_and_static_mobjects(
        self, animations: Iterable[Animation]
    ) -> tuple[list[Mobject], list[Mobject]]:
        """Split what is drawn into a still background and what is redrawn per frame.

        Manim puts in the still background only the mobjects drawn before the
        first moving one, so a caption or a label added late is redrawn on
        every frame. Here every still piece goes into the background unless a
        piece drawn below it moves or stays in front over its area (then
        drawing it early would change the picture). Areas of moving pieces are
        those of their animation's start and target, so this holds for
        animations that move things between the two (all of ours).
        """
        camera = self.renderer.camera
        everything = extract_mobject_family_members(
            list_update(self.mobjects, self.foreground_mobjects),
            use_z_index=camera.use_z_index,
            only_those_with_points=True,
        )
        whole = (-math.inf, math.inf, -math.inf, math.inf)
        area_of: dict[int, tuple[float, float, float, float]] = {}
        for anim in _flatten(list(animations)):
            parts = [anim.mobject, getattr(anim, "target_mobject", None)]
            parts = [p for p in parts if isinstance(p, Mobject)]
            shift = getattr(anim, "shift_vector", None)  # FadeIn(shift=...) starts off to a side
            margin = 0.1 + (float(np.linalg.norm(shift)) if shift is not None else 0.0)
            scale = float(getattr(anim, "scale_factor", 1.0) or 1.0)  # FadeIn(scale=...)
            if scale > 1 and parts:
                margin += (scale - 1) * max(parts[0].width, parts[0].height)
            box = _union([_bounds(p, margin) for p in parts]) or whole
            for part in parts:
                for m in part.get_family():
                    area_of[id(m)] = _union([area_of.get(id(m)), box])
        # Updaters may move anything anywhere; foreground mobjects are drawn last.
        runs = [m for mob in self.mobjects for m in mob.get_family() if m.updaters]
        for mob in runs + list(self.foreground_mobjects):
            for sub in mob.get_family():
                area_of[id(sub)] = whole
        static, moving, in_front = [], [], []
        for mob in everything:
            moves = [area_of[id(m)] for m in mob.get_family() if id(m) in area_of]
            area = _union(moves) if moves else _bounds(mob) or whole
            if not moves and not any(_overlap(area, other) for other in in_front):
                static.append(mob)
            else:
                moving.append(mob)
                in_front.append(area)
        return moving, static

    def tear_down(self) -> None:
        """Hold the finished picture, fade back for a loop, write the captions."""
        self._skipping = False
        if not config.save_last_frame:
            self.let_read()  # the last caption read in full, then the hold
            if self.settings.hold > 0:
                super_wait = self.settings.hold * self.settings.speed  # play() divides again
                self.wait(super_wait)
            if self.settings.fade and self.mobjects:
                self.play(FadeOut(*self.mobjects), run_time=0.5 * self.settings.speed)
        for cue in self.cues:
            if cue.end < 0:
                cue.end = self.clock
        if self.settings.captions is not None:
            write_srt(self.cues, self.settings.captions)


def _mob_key(mob: Mobject) -> bytes:
    """A digest of what a still mobject draws: identity, points, colours, pixels."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(id(mob).to_bytes(8, "little"))
    for name in ("points", "fill_rgbas", "stroke_rgbas", "background_stroke_rgbas", "pixel_array"):
        array = getattr(mob, name, None)
        if isinstance(array, np.ndarray):
            digest.update(array.tobytes())
    extra = (type(mob).__name__, getattr(mob, "stroke_width", None), mob.z_index)
    digest.update(repr(extra).encode())
    return digest.digest()


def _flatten(animations: list[Animation]) -> Iterator[Animation]:
    for anim in animations:
        yield anim
        if isinstance(anim, AnimationGroup):
            yield from _flatten(list(anim.animations))


def _bounds(mob: Mobject, margin: float = 0.1) -> tuple[float, float, float, float] | None:
    """``(x0, x1, y0, y1)`` of ``mob``'s points, grown by ``margin``; ``None`` if none.

    Bezier handles are included, so the box holds the curves.
    """
    points = [m.points for m in mob.get_family() if len(m.points)]
    if not points:
        return None
    lo = np.min([p[:, :2].min(axis=0) for p in points], axis=0)
    hi = np.max([p[:, :2].max(axis=0) for p in points], axis=0)
    return (lo[0] - margin, hi[0] + margin, lo[1] - margin, hi[1] + margin)


def _union(boxes: list) -> tuple[float, float, float, float] | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm`` as SRT writes times."""
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(cues: list[Cue], path: Path) -> None:
    """Write ``cues`` as an SubRip file (atomically)."""
    blocks = []
    for i, cue in enumerate((c for c in cues if c.end > c.start), start=1):
        end = cue.end if math.isfinite(cue.end) else cue.start + 2
        blocks.append(f"{i}\n{srt_time(cue.start)} --> {srt_time(end)}\n{cue.text}\n")
    text = "\n".join(blocks)
    atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))

"""Video to looping GIF in two streaming passes: one global palette, then dithering."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from mechviz.errors import MechvizError, raise_if_stopped

#: Frame rates tried, in order, when a GIF is over ``max_bytes`` (after the first rate).
FPS_LADDER = (30.0, 24.0, 20.0, 15.0, 12.0, 10.0)
#: Each width step after the frame-rate ladder keeps this share of the width.
WIDTH_STEP = 0.8
#: The narrowest width the ``max_bytes`` search goes down to.
MIN_WIDTH = 240
#: GIF delays are whole centiseconds and browsers play a delay of 0 or 1 cs as 10 cs,
#: so 2 cs (50 fps) is the shortest delay that plays as written.
MIN_DELAY_CS = 2
MAX_FPS = 100.0 / MIN_DELAY_CS
#: A rate within 1% of the source's counts as the source's (MP4 rates are rarely exact).
SAME_RATE = 0.99

CENTISECOND = Fraction(1, 100)
PALETTEGEN = "max_colors=256:stats_mode=diff"
PALETTEUSE = "dither=bayer:bayer_scale=4:diff_mode=rectangle"


@dataclass(frozen=True)
class GifResult:
    """What :func:`video_to_gif` wrote.

    Attributes:
        path: The GIF (the ``target`` passed in).
        fps: The frame rate written (the source's when it was not lowered).
        width: The pixel width written; the height keeps the source's aspect.
        size_bytes: The GIF's size on disk.
        attempts: ``(fps, width, bytes)`` of every conversion tried, in order; the
            last one is the file written.

    """

    path: Path
    fps: float
    width: int
    size_bytes: int
    attempts: list[tuple[float, int, int]]


@dataclass(frozen=True)
class _Source:
    """What the container says about the video stream, before decoding."""

    width: int
    height: int
    rate: Fraction | None


@dataclass(frozen=True)
class _Plan:
    """One conversion: ``rate`` None keeps every source frame (and its timing)."""

    rate: Fraction | None
    fps: float
    width: int
    height: int


@dataclass
class _Timeline:
    """Filled in while frames stream past: the end of the clip and the last frame's start."""

    end: Fraction = Fraction(0)
    last_cs: int = 0


def video_to_gif(
    source: Path,
    target: Path,
    *,
    fps: float | None = None,
    width: int | None = None,
    max_bytes: int | None = None,
    hold: float = 0.0,
) -> GifResult:
    """Convert an MP4/MOV to a GIF that loops forever, with one 256-colour palette.

    Each conversion streams the video twice, one frame at a time, so memory
    stays near one frame whatever the clip's length: pass 1 feeds every frame
    to ``palettegen`` (which keeps a colour histogram), pass 2 decodes again
    and dithers each frame with that palette (``paletteuse``, Bayer) into the
    GIF encoder. Frame delays are whole centiseconds placed on the source's
    clock, so the GIF lasts as long as the video (within a centisecond).

    Args:
        source: The video to convert.
        target: Where to write the GIF; replaced atomically, its folder must exist.
        fps: Frame rate to write; frames are dropped evenly, never invented. None,
            or a rate at or above the source's, keeps every frame. Rates above
            50 fps are written at 50 fps: browsers play delays under 2 cs slowly.
        width: Pixel width to scale down to (never up), Lanczos, aspect kept and
            both sides even. None keeps the source's size.
        max_bytes: Upper limit on the GIF's size. A GIF that is larger is made
            again at the next lower frame rate of :data:`FPS_LADDER`, then at
            :data:`WIDTH_STEP` of the width, down to :data:`MIN_WIDTH` pixels.
        hold: Seconds to hold the last frame (a longer last delay, no extra frames).

    Returns:
        The path, the frame rate and width chosen, the size, and every attempt.

    Raises:
        MechvizError: The source cannot be read, the target cannot be written,
            an argument is out of range, or even the smallest GIF is over ``max_bytes``.

    """
    import av

    source, target = Path(source), Path(target)
    _check_arguments(fps, width, max_bytes, hold)
    if target.is_dir():
        raise MechvizError(f"Cannot write {target}: it is a directory.")
    info = _probe(source)
    plans = _plans(info, fps, width, max_bytes is not None)
    attempts: list[tuple[float, int, int]] = []
    folder = target.parent if str(target.parent) else Path(".")
    for plan in plans:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".gif", dir=folder)
        except OSError as exc:
            raise MechvizError(f"Cannot write {target}: {exc.strerror or exc}.") from None
        os.close(fd)
        tmp = Path(name)
        try:
            _convert(source, tmp, plan, hold)
            size = tmp.stat().st_size
            attempts.append((plan.fps, plan.width, size))
            if max_bytes is None or size <= max_bytes:
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
                raise_if_stopped()
                os.replace(tmp, target)
                return GifResult(target, plan.fps, plan.width, size, attempts)
        except OSError as exc:
            raise MechvizError(f"Cannot write {target}: {exc.strerror or exc}.") from None
        except av.error.FFmpegError as exc:
            raise MechvizError(f"Cannot convert {source} to GIF: {exc}.") from None
        finally:
            tmp.unlink(missing_ok=True)
    best_fps, best_width, best_size = attempts[-1]
    raise MechvizError(
        f"The smallest GIF tried ({best_fps:g} fps, {best_width} px wide) is "
        f"{_megabytes(best_size)}, over the limit of {_megabytes(max_bytes or 0)}; "
        "raise the limit, shorten the scene or render an MP4 instead."
    )


def _check_arguments(
    fps: float | None, width: int | None, max_bytes: int | None, hold: float
) -> None:
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise MechvizError(f"The GIF frame rate must be a positive number, not {fps}.")
    if width is not None and width < 2:
        raise MechvizError(f"The GIF width must be at least 2 pixels, not {width}.")
    if max_bytes is not None and max_bytes <= 0:
        raise MechvizError(
            f"The GIF size limit must be a positive number of bytes, not {max_bytes}."
        )
    if not (math.isfinite(hold) and hold >= 0):
        raise MechvizError(f"The hold of the last frame must be zero or more seconds, not {hold}.")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} KB"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _open(source: Path) -> Any:
    """The container, or one sentence saying why it cannot be read."""
    import av

    try:
        container = av.open(str(source))
    except FileNotFoundError:
        raise MechvizError(f"Cannot convert {source} to GIF: the file does not exist.") from None
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise MechvizError(f"Cannot convert {source} to GIF: {reason}.") from None
    if not container.streams.video:
        container.close()
        raise MechvizError(f"Cannot convert {source} to GIF: it has no video stream.")
    return container


def _probe(source: Path) -> _Source:
    with _open(source) as container:
        video = container.streams.video[0]
        rate = video.guessed_rate or video.average_rate or video.base_rate
        return _Source(video.width, video.height, Fraction(rate) if rate else None)


def _plans(info: _Source, fps: float | None, width: int | None, search: bool) -> list[_Plan]:
    """The first conversion, then (for ``max_bytes``) the ladder of smaller ones."""
    first: float | None = min(fps or MAX_FPS, MAX_FPS)
    if info.rate is not None and first is not None and first >= info.rate * SAME_RATE:
        first = None  # the source's own rate (and timing)
    ceiling = first if first is not None else float(info.rate or MAX_FPS)
    rates = [first] + [rung for rung in FPS_LADDER if rung < ceiling * SAME_RATE]
    first_width = min(width or info.width, info.width)
    widths = [first_width]
    step = first_width
    while step > MIN_WIDTH:
        step = max(MIN_WIDTH, _even(step * WIDTH_STEP))
        widths.append(step)
    if not search:
        return [_plan(info, rates[0], first_width)]
    plans = [_plan(info, rate, first_width) for rate in rates]
    return plans + [_plan(info, rates[-1], step) for step in widths[1:]]


def _plan(info: _Source, fps: float | None, width: int) -> _Plan:
    """``fps`` None keeps every source frame."""
    if fps is None:
        rate, written = None, round(float(info.rate or 0), 3)
    else:
        rate, written = Fraction(fps).limit_denominator(1001), float(fps)
    if width >= info.width:
        return _Plan(rate, written, info.width, info.height)
    width = max(2, _even(width))
    height = max(2, 2 * round(width * info.height / info.width / 2))
    return _Plan(rate, written, width, height)


def _even(value: float) -> int:
    return 2 * int(value // 2)


def _frames(
    container: Any, rate: Fraction | None, timeline: _Timeline
) -> Iterator[tuple[Any, int]]:
    """Decoded frames to write with their start in centiseconds; fills ``timeline``.

    With ``rate`` a frame is kept when a tick of the ``rate`` clock falls inside
    it (so frames are dropped evenly and never repeated), and it starts at that
    tick. Without, every frame is kept at its own time. A frame that would start
    less than :data:`MIN_DELAY_CS` after the previous one is dropped.
    """
    video = container.streams.video[0]
    video.thread_type = "AUTO"
    step = 1 / Fraction(video.guessed_rate or video.average_rate or 25)
    origin: Fraction | None = None
    held: Any = None
    held_start = Fraction(0)
    last_cs: int | None = None
    tick = 0

    def keep(frame: Any, start: Fraction, end: Fraction) -> tuple[Any, int] | None:
        nonlocal last_cs, tick
        if rate is not None:
            tick = max(tick, math.ceil(start * rate))
            if Fraction(tick) / rate >= end:
                return None
            start = Fraction(tick) / rate
            tick += 1
        cs = math.floor(start * 100 + Fraction(1, 2))
        if last_cs is not None and cs < last_cs + MIN_DELAY_CS:
            return None
        last_cs = cs
        return frame, cs

    for index, frame in enumerate(container.decode(video)):
        time = _time(frame, index, step)
        if origin is None:
            origin = time
        time -= origin
        if held is not None:
            if time <= held_start:  # a broken timestamp: fall back to the nominal rate
                time = held_start + step
            kept = keep(held, held_start, time)
            if kept is not None:
                yield kept
        held, held_start = frame, time
    if held is None:
        raise MechvizError(f"Cannot convert {container.name} to GIF: it has no frames.")
    duration = Fraction(held.duration) * held.time_base if held.duration and held.time_base else 0
    end = held_start + (duration or step)
    kept = keep(held, held_start, end)
    if kept is not None:
        yield kept
    timeline.end = end
    timeline.last_cs = last_cs or 0


def _time(frame: Any, index: int, step: Fraction) -> Fraction:
    if frame.pts is None or frame.time_base is None:
        return index * step
    return Fraction(frame.pts) * frame.time_base


def _scale(plan: _Plan) -> str:
    return f"{plan.width}:{plan.height}:flags=lanczos"


def _pull(sink: Any) -> Iterator[Any]:
    """Every frame the graph has ready now."""
    import av

    while True:
        try:
            yield sink.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return


def _palette(source: Path, plan: _Plan) -> tuple[Any, _Timeline]:
    """Pass 1: every kept frame into ``palettegen``; the 16x16 palette and the timeline."""
    import av

    timeline = _Timeline()
    with _open(source) as container:
        video = container.streams.video[0]
        graph = av.filter.Graph()
        buffer = graph.add_buffer(template=video)
        scale = graph.add("scale", _scale(plan))
        palettegen = graph.add("palettegen", PALETTEGEN)
        sink = graph.add("buffersink")
        buffer.link_to(scale)
        scale.link_to(palettegen)
        palettegen.link_to(sink)
        graph.configure()
        for frame, _ in _frames(container, plan.rate, timeline):
            buffer.push(frame)
            for _ in _pull(sink):  # palettegen emits only at the end; nothing piles up
                pass
        buffer.push(None)
        palettes = list(_pull(sink))
    if not palettes:
        raise MechvizError(f"Cannot convert {source} to GIF: no palette came out of its frames.")
    return palettes[0], timeline


def _convert(source: Path, target: Path, plan: _Plan, hold: float) -> None:
    """Both passes for one plan; writes ``target``."""
    import av

    palette, timeline = _palette(source, plan)
    total_cs = math.floor((timeline.end + Fraction(hold)) * 100 + Fraction(1, 2))
    final_delay = max(MIN_DELAY_CS, total_cs - timeline.last_cs)
    options = {"loop": "0", "final_delay": str(min(final_delay, 65535))}
    with (
        _open(source) as container,
        av.open(str(target), "w", format="gif", options=options) as gif,
    ):
        video = container.streams.video[0]
        out = gif.add_stream("gif", rate=100)
        out.width, out.height, out.pix_fmt = plan.width, plan.height, "pal8"
        out.codec_context.time_base = CENTISECOND
        graph = av.filter.Graph()
        # Frames go in stamped with their start in centiseconds, the GIF's own clock.
        buffer = graph.add_buffer(template=video, time_base=CENTISECOND)
        palette_in = graph.add_buffer(
            width=palette.width,
            height=palette.height,
            format=palette.format.name,
            time_base=CENTISECOND,
        )
        scale = graph.add("scale", _scale(plan))
        paletteuse = graph.add("paletteuse", PALETTEUSE)
        sink = graph.add("buffersink")
        buffer.link_to(scale)
        scale.link_to(paletteuse, 0, 0)
        palette_in.link_to(paletteuse, 0, 1)
        paletteuse.link_to(sink)
        graph.configure()
        palette.pts, palette.time_base = 0, CENTISECOND
        palette_in.push(palette)
        palette_in.push(None)  # paletteuse keeps using its one palette frame

        def write() -> None:
            for frame in _pull(sink):
                for packet in out.encode(frame):
                    gif.mux(packet)

        for frame, cs in _frames(container, plan.rate, _Timeline()):
            frame.pts, frame.time_base = cs, CENTISECOND
            buffer.push(frame)
            write()
        buffer.push(None)
        write()
        for packet in out.encode():
            gif.mux(packet)

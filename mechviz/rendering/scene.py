"""Render a scene from a trace to MP4, GIF or PNG (the scene -> video arrow)."""

from __future__ import annotations

import difflib
import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from mechviz.errors import MechvizError, raise_if_stopped
from mechviz.files import check_writable, existing_ancestor
from mechviz.scenes import SCENES
from mechviz.tracing.schema import Trace
from mechviz.visual.settings import QUALITIES, SceneSettings, pixel_size

FORMATS = ("gif", "mp4", "png", "mov", "webm", "svg")
ALPHA_FORMATS = ("png", "mov", "webm", "svg")  # formats that keep a transparent background
STILL_FORMATS = ("svg",)  # only for scenes with a still (WholeModel): vector, for print
# x264 veryfast with the diamond motion search, subpixel refinement 1 and one thread:
# on these flat-coloured frames the same size and PSNR as veryfast for less CPU
# (bench/encoder_bench.py). The encoder runs in its own thread beside the drawing.
ENCODER_MP4 = {"crf": "23", "preset": "veryfast", "x264-params": "me=dia:subme=1:threads=1"}
# A GIF's intermediate video is lossless (x264 at crf 0): a lossy one changes a held
# picture slightly from frame to frame, and the GIF's dithering turns that noise into
# pixels that flicker through the hold (and cost bytes: the Unembedding GIF fell from
# 1.67 MB to 0.79 MB when its intermediate became lossless).
ENCODER_GIF_INTERMEDIATE = {"crf": "0", "preset": "ultrafast"}


@dataclass(frozen=True)
class GifOptions:
    """How a GIF is written: frame rate and width caps, and a size budget.

    Attributes:
        fps: Frames per second of the GIF (default: the render's).
        width: Pixel width of the GIF (default: the render's).
        max_mb: Largest size in MB (10^6 bytes): lower the frame rate, then the
            width, until the GIF fits.

    """

    fps: float | None = None
    width: int | None = None
    max_mb: float | None = None


def scene_class(name: str) -> type:
    """The scene class called ``name``; an unknown name gets the list and the nearest."""
    if name not in SCENES:
        near = difflib.get_close_matches(name, list(SCENES), n=1, cutoff=0.0)
        listing = ", ".join(SCENES)
        hint = f" Did you mean {near[0]}?" if near else ""
        raise MechvizError(f"There is no scene called '{name}'; the scenes are {listing}.{hint}")
    module = importlib.import_module(f"mechviz.scenes.{SCENES[name][0]}")
    return getattr(module, name)


def default_output(trace: Path | Trace, scene: str, fmt: str) -> Path:
    """``renders/<trace stem>/<scene>.<fmt>``; ``renders/<scene>.<fmt>`` for a Trace object."""
    if isinstance(trace, Trace):
        return Path("renders") / f"{scene}.{fmt}"
    return Path("renders") / trace.stem / f"{scene}.{fmt}"


def resolve_scene(scene: str | type) -> type:
    """A scene class from its name, or ``scene`` itself if it is a TraceScene subclass."""
    if isinstance(scene, str):
        return scene_class(scene)
    from mechviz.visual.base import TraceScene

    if isinstance(scene, type) and issubclass(scene, TraceScene):
        return scene
    raise MechvizError(
        f"{scene!r} is not a scene: give a scene's name or a subclass of mechviz.visual.TraceScene."
    )


def write_still(
    cls: type, settings: SceneSettings, output: Path, make_parents: bool, fmt: str = "png"
) -> Path:
    """Write the still of a scene that has one (``cls.still``: PNG, ``cls.still_svg``: SVG).

    The still is drawn at its own full resolution (WholeModel: ``settings.width``
    pixels wide), not a video frame; ``--quality`` and ``--aspect`` do not apply.
    The file is written atomically.
    """
    from PIL import Image

    from mechviz.files import atomic_write
    from mechviz.tracing.io import load_trace

    trace = settings.trace if isinstance(settings.trace, Trace) else load_trace(settings.trace)
    if fmt == "svg":
        text = cls.still_svg(trace, settings)

        def write(tmp: Path) -> None:
            tmp.write_text(text, encoding="utf-8")

    else:
        image = Image.fromarray(cls.still(trace, settings))  # RGB, or RGBA when transparent

        def write(tmp: Path) -> None:
            image.save(tmp, format="PNG")

    if make_parents:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MechvizError(f"Cannot write {output}: {exc.strerror or exc}.") from None
    atomic_write(output, write)
    return output


def render_scene(
    name: str | type,
    settings: SceneSettings,
    quality: str = "low",
    fmt: str = "gif",
    output: Path | None = None,
    progress: bool = True,
    make_parents: bool | None = None,
    gif: GifOptions | None = None,
    notes: list[str] | None = None,
    captions: bool = False,
    still: bool = True,
) -> Path:
    """Render scene ``name`` to ``output``, atomically; returns the path written.

    Args:
        name: A scene of :data:`mechviz.scenes.SCENES`, or a TraceScene subclass.
        settings: Trace, aspect, theme, beats and the rest (:class:`SceneSettings`).
        quality: ``low``, ``medium``, ``high`` or ``4k``: the shorter side is 480,
            720, 1080 or 2160 pixels, at 15, 30, 60 or 60 frames per second unless
            ``settings.fps`` says otherwise.
        fmt: ``gif``, ``mp4``, ``png`` (the last frame; a scene with a ``still``,
            such as WholeModel, writes that picture instead), ``mov``, ``webm``, or
            ``svg`` (the still as vector graphics; only scenes with a still).
        output: Where to write (default ``renders/<trace-stem>/<Scene>.<fmt>``).
        progress: Show Manim's progress bar.
        make_parents: Create the output's missing folders (only once the file is
            ready). Default: only for the default output; a folder that the user
            named must exist (a typo should not make folders).
        gif: Frame rate, width and size budget of a GIF.
        notes: Lines for the user (what the GIF budget chose) are appended here.
        captions: Also write ``output`` with the suffix ``.srt``: one cue per beat.
        still: For a scene with a still (WholeModel), ``png`` writes the still;
            ``False`` writes the last frame at ``settings.aspect`` and ``quality``
            instead, like any other scene.

    """
    from manim import tempconfig

    cls = resolve_scene(name)
    name = cls.__name__
    if fmt not in FORMATS:
        raise MechvizError(f"Unknown format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    if settings.transparent and fmt not in ALPHA_FORMATS:
        raise MechvizError(
            f"{fmt.upper()} cannot keep a transparent background; "
            "use png, mov (QuickTime Animation) or webm (VP9) with --transparent."
        )
    if quality not in QUALITIES:
        raise MechvizError(f"Unknown quality '{quality}'; choose one of {', '.join(QUALITIES)}.")
    if make_parents is None:
        make_parents = output is None
    output = Path(output or default_output(settings.trace, name, fmt))
    check_writable(output, make_parents=make_parents)
    srt = output.with_suffix(".srt")
    if captions:
        check_writable(srt, make_parents=make_parents)
    if fmt in STILL_FORMATS and not hasattr(cls, "still"):
        stills = ", ".join(n for n in SCENES if hasattr(scene_class(n), "still"))
        raise MechvizError(
            f"{fmt.upper()} is for still pictures; {name} has none (the scenes with one: {stills})."
        )
    if fmt in STILL_FORMATS or (fmt == "png" and still and hasattr(cls, "still")):
        if captions:
            raise MechvizError(f"{name}'s {fmt.upper()} is a still picture: it has no captions.")
        return write_still(cls, settings, output, make_parents, fmt)
    short, rate = QUALITIES[quality]
    width, height = pixel_size(settings.aspect, short)
    # Render beside the output (same file system, so the last step is a rename);
    # its folder is made only when the file is ready to go in.
    staging = existing_ancestor(output.parent)
    try:
        media = Path(tempfile.mkdtemp(prefix=f".{output.stem}-render-", dir=staging))
    except OSError as exc:
        raise MechvizError(f"Cannot write {output}: {exc.strerror or exc}.") from None
    try:
        config = {
            "pixel_width": width,
            "pixel_height": height,
            "frame_rate": settings.fps or rate,
            "media_dir": str(media),
            "disable_caching": True,
            "verbosity": "WARNING",
            "progress_bar": "display" if progress and fmt != "png" else "none",
            "write_to_movie": fmt != "png",
            "save_last_frame": fmt == "png",
            "output_file": name,
            "background_opacity": 0.0 if settings.transparent else 1.0,
        }
        if captions:
            settings = replace(settings, captions=media / "captions.srt")
        if fmt in ("mov", "webm"):
            config["format"] = fmt
        elif fmt in ("mp4", "gif"):
            # ENCODER_MP4 and ENCODER_GIF_INTERMEDIATE (see above).
            config["video_encoder_options"] = (
                ENCODER_MP4 if fmt == "mp4" else ENCODER_GIF_INTERMEDIATE
            )
        from mechviz.visual import settings as scene_settings

        with tempconfig(config), scene_settings.use(settings):
            scene = cls()
            scene.render()
            writer = scene.renderer.file_writer
            produced = Path(writer.image_file_path if fmt == "png" else writer.movie_file_path)
        staged = media / f"final.{fmt}"
        if fmt == "gif":
            from mechviz.rendering.gif import video_to_gif

            options = gif or GifOptions()
            result = video_to_gif(
                produced,
                staged,
                fps=options.fps,
                width=options.width,
                max_bytes=int(options.max_mb * 1e6) if options.max_mb else None,
            )
            if notes is not None and len(result.attempts) > 1:
                tried = ", ".join(
                    f"{fps:g} fps x {w} px = {size / 1e6:.1f} MB"
                    for fps, w, size in result.attempts
                )
                notes.append(
                    f"GIF budget {options.max_mb:g} MB: chose {result.fps:g} fps at "
                    f"{result.width} px wide (tried {tried})."
                )
        else:
            shutil.move(produced, staged)
        raise_if_stopped()
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, output)
            if captions:
                os.replace(media / "captions.srt", srt)
        except OSError as exc:
            raise MechvizError(f"Cannot write {output}: {exc.strerror or exc}.") from None
    finally:
        shutil.rmtree(media, ignore_errors=True)
    return output

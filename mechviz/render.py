"""Render a scene from a trace to MP4, GIF or PNG (the scene -> video arrow)."""

from __future__ import annotations

import difflib
import importlib
import os
import shutil
import tempfile
from pathlib import Path

from mechviz.errors import MechvizError, raise_if_stopped
from mechviz.io import check_writable, existing_ancestor
from mechviz.scenes import SCENES
from mechviz.visual.settings import SceneSettings

QUALITIES = {
    "low": "low_quality",
    "medium": "medium_quality",
    "high": "high_quality",
    "4k": "fourk_quality",
}
FORMATS = ("gif", "mp4", "png")


def scene_class(name: str) -> type:
    """The scene class called ``name``; an unknown name gets the list and the nearest."""
    if name not in SCENES:
        near = difflib.get_close_matches(name, list(SCENES), n=1, cutoff=0.0)
        listing = ", ".join(SCENES)
        hint = f" Did you mean {near[0]}?" if near else ""
        raise MechvizError(f"There is no scene called '{name}'; the scenes are {listing}.{hint}")
    module = importlib.import_module(f"mechviz.scenes.{SCENES[name][0]}")
    return getattr(module, name)


def default_output(trace: Path, scene: str, fmt: str) -> Path:
    return Path("renders") / trace.stem / f"{scene}.{fmt}"


def render_scene(
    name: str,
    settings: SceneSettings,
    quality: str = "low",
    fmt: str = "gif",
    output: Path | None = None,
    progress: bool = True,
    make_parents: bool | None = None,
) -> Path:
    """Render scene ``name`` to ``output``, atomically; returns the path written.

    ``make_parents``: create the output's missing folders (only once the file is
    ready). Default: only for the default output, ``renders/<trace-stem>/``; a
    folder that the user named must exist (a typo should not make folders).
    """
    from manim import tempconfig

    cls = scene_class(name)
    if fmt not in FORMATS:
        raise MechvizError(f"Unknown format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    if make_parents is None:
        make_parents = output is None
    output = Path(output or default_output(settings.trace, name, fmt))
    check_writable(output, make_parents=make_parents)
    # Render beside the output (same file system, so the last step is a rename);
    # its folder is made only when the file is ready to go in.
    staging = existing_ancestor(output.parent)
    try:
        media = Path(tempfile.mkdtemp(prefix=f".{output.stem}-render-", dir=staging))
    except OSError as exc:
        raise MechvizError(f"Cannot write {output}: {exc.strerror or exc}.") from None
    try:
        config = {
            "quality": QUALITIES[quality],
            "media_dir": str(media),
            "disable_caching": True,
            "verbosity": "WARNING",
            "progress_bar": "display" if progress and fmt != "png" else "none",
            "write_to_movie": fmt != "png",
            "save_last_frame": fmt == "png",
            "output_file": name,
        }
        from mechviz.visual import settings as scene_settings

        with tempconfig(config), scene_settings.use(settings):
            scene = cls()
            scene.render()
            writer = scene.renderer.file_writer
            produced = Path(writer.image_file_path if fmt == "png" else writer.movie_file_path)
        staged = media / f"final.{fmt}"
        if fmt == "gif":
            mp4_to_gif(produced, staged)
        else:
            shutil.move(produced, staged)
        raise_if_stopped()
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, output)
        except OSError as exc:
            raise MechvizError(f"Cannot write {output}: {exc.strerror or exc}.") from None
    finally:
        shutil.rmtree(media, ignore_errors=True)
    return output


def mp4_to_gif(source: Path, target: Path) -> None:
    """A looping GIF with one optimised 256-colour palette for the whole clip."""
    import av

    with (
        av.open(str(source)) as src,
        av.open(str(target), "w", format="gif", options={"loop": "0"}) as dst,
    ):
        video = src.streams.video[0]
        rate = video.average_rate or video.guessed_rate or video.base_rate
        out = dst.add_stream("gif", rate=rate)
        out.width, out.height, out.pix_fmt = video.width, video.height, "pal8"
        graph = av.filter.Graph()
        buffer = graph.add_buffer(template=video)
        split = graph.add("split")
        palettegen = graph.add("palettegen", "stats_mode=diff")
        paletteuse = graph.add("paletteuse", "dither=bayer:bayer_scale=4:diff_mode=rectangle")
        sink = graph.add("buffersink")
        buffer.link_to(split)
        split.link_to(palettegen, 0, 0)
        split.link_to(paletteuse, 1, 0)
        palettegen.link_to(paletteuse, 0, 1)
        paletteuse.link_to(sink)
        graph.configure()
        for frame in src.decode(video=0):
            graph.push(frame)
        graph.push(None)
        index = 0
        while True:
            try:
                frame = graph.pull()
            except (av.error.EOFError, av.error.BlockingIOError):
                break
            frame.pts = index
            if out.codec_context.time_base is not None:
                frame.time_base = out.codec_context.time_base
            index += 1
            for packet in out.encode(frame):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)

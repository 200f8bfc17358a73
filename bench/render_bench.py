"""Render time per second of video, per scene and quality, from the example trace, in one run.

Usage: python bench/render_bench.py [--qualities low,high] [--scenes Embedding,Attention]
       [--format mp4] [--still-widths 1000,4000]

For each scene and quality: wall seconds, CPU seconds (this process: Manim and
the encoder threads), seconds of video, and CPU seconds per video second, plus
the same for an empty scene of the same length (the floor set by encoding).
Targets (issue 7): under 1.0 at low (480p15), under 2.5 at high (1080p60).

Then the WholeModel still at each ``--still-widths`` width: the picture alone
(:func:`mechviz.visual.wholemodel.whole_image`, trace loaded), and ``mechviz scene
WholeModel --format png`` end to end in a fresh process (imports, trace, PNG).
Target (issue 9): under 15 s wall for the default model at width 1000.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from mechviz.rendering.scene import ENCODER_MP4, render_scene
from mechviz.visual.settings import SceneSettings, example_trace

CORE = ["Embedding", "ResidualFlow", "Attention", "Unembedding", "WholeModel", "Neurons"]


def video_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.duration) / 1e6


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def empty_scene_cpu(seconds: float, quality: str, fmt: str, folder: Path) -> float:
    """CPU seconds to write ``seconds`` of a still frame at ``quality`` (the floor)."""
    from manim import Scene, Square, tempconfig

    from mechviz.visual.settings import QUALITIES, pixel_size

    short, fps = QUALITIES[quality]
    w, h = pixel_size("16:9", short)

    class Empty(Scene):
        def construct(self) -> None:
            self.add(Square())
            self.wait(seconds)

    start = cpu()
    config = {
        "pixel_width": w,
        "pixel_height": h,
        "frame_rate": fps,
        "media_dir": str(folder),
        "verbosity": "WARNING",
        "progress_bar": "none",
        "disable_caching": True,
        "video_encoder_options": ENCODER_MP4,
    }  # the scenes' own encoder settings
    with tempconfig(config):
        Empty().render()
    return cpu() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--qualities", default="low,high")
    parser.add_argument("--scenes", default=",".join(CORE))
    parser.add_argument("--format", default="mp4")
    parser.add_argument("--still-widths", default="1000,4000")
    args = parser.parse_args()
    settings = SceneSettings(trace=example_trace())
    print(
        f"{'scene':<14}{'quality':>8}{'wall s':>8}{'cpu s':>8}{'video s':>9}"
        f"{'cpu/video':>11}{'empty':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for quality in args.qualities.split(","):
            for name in args.scenes.split(","):
                out = Path(tmp) / f"{name}-{quality}.{args.format}"
                start, start_cpu = time.perf_counter(), cpu()
                render_scene(name, settings, quality, args.format, out, progress=False)
                wall, used = time.perf_counter() - start, cpu() - start_cpu
                seconds = video_seconds(out)
                floor = empty_scene_cpu(seconds, quality, args.format, Path(tmp))
                print(
                    f"{name:<14}{quality:>8}{wall:>8.1f}{used:>8.1f}{seconds:>9.1f}"
                    f"{used / seconds:>11.2f}{floor / seconds:>8.2f}",
                    flush=True,
                )
        if args.still_widths:
            still_bench([int(w) for w in args.still_widths.split(",")], Path(tmp))


def still_bench(widths: list[int], folder: Path) -> None:
    """Wall seconds of the WholeModel still: the picture alone, and the CLI end to end."""
    from mechviz.tracing.io import load_trace
    from mechviz.visual.wholemodel import whole_image

    trace = load_trace(example_trace())
    whole_image(trace, 400)  # imports and the first font load are not the picture's
    cli = [sys.executable, "-m", "mechviz", "scene", "WholeModel", "--format", "png"]
    helps = subprocess.run([*cli[:5], "--help"], capture_output=True, text=True).stdout
    print(f"{'still width':<14}{'image s':>8}{'cli s':>8}{'pixels':>14}")
    for width in widths:
        start = time.perf_counter()
        image = whole_image(trace, width)
        alone = time.perf_counter() - start
        out = folder / f"whole-{width}.png"
        if "--width" not in helps and width != 1000:
            print(f"{'WholeModel':<14}{alone:>8.2f}{'-':>8}  (no --width option in this CLI)")
            continue
        start = time.perf_counter()
        flags = ["--width", str(width)] if "--width" in helps else []
        subprocess.run([*cli, *flags, "-o", str(out)], check=True, capture_output=True)
        end_to_end = time.perf_counter() - start
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(f"{'WholeModel':<14}{alone:>8.2f}{end_to_end:>8.2f}{size:>14}", flush=True)


if __name__ == "__main__":
    main()

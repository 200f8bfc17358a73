"""Render time per second of video, per scene and quality, from the example trace, in one run.

Usage: python bench/render_bench.py [--qualities low,high] [--scenes Embedding,Attention]
       [--format mp4]

For each scene and quality: wall seconds, CPU seconds (this process: Manim and
the encoder threads), seconds of video, and CPU seconds per video second, plus
the same for an empty scene of the same length (the floor set by encoding).
Targets (issue 7): under 1.0 at low (480p15), under 2.5 at high (1080p60).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import av

from mechviz.rendering import ENCODER_MP4, render_scene
from mechviz.visual.settings import SceneSettings, example_trace

CORE = ["Embedding", "ResidualFlow", "Attention", "Unembedding"]


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
    config = {"pixel_width": w, "pixel_height": h, "frame_rate": fps, "media_dir": str(folder),
              "verbosity": "WARNING", "progress_bar": "none", "disable_caching": True,
              "video_encoder_options": ENCODER_MP4}  # the scenes' own encoder settings
    with tempconfig(config):
        Empty().render()
    return cpu() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--qualities", default="low,high")
    parser.add_argument("--scenes", default=",".join(CORE))
    parser.add_argument("--format", default="mp4")
    args = parser.parse_args()
    settings = SceneSettings(trace=example_trace())
    print(f"{'scene':<14}{'quality':>8}{'wall s':>8}{'cpu s':>8}{'video s':>9}"
          f"{'cpu/video':>11}{'empty':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for quality in args.qualities.split(","):
            for name in args.scenes.split(","):
                out = Path(tmp) / f"{name}-{quality}.{args.format}"
                start, start_cpu = time.perf_counter(), cpu()
                render_scene(name, settings, quality, args.format, out, progress=False)
                wall, used = time.perf_counter() - start, cpu() - start_cpu
                seconds = video_seconds(out)
                floor = empty_scene_cpu(seconds, quality, args.format, Path(tmp))
                print(f"{name:<14}{quality:>8}{wall:>8.1f}{used:>8.1f}{seconds:>9.1f}"
                      f"{used / seconds:>11.2f}{floor / seconds:>8.2f}", flush=True)


if __name__ == "__main__":
    main()

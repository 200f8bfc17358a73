"""Render every core scene at low quality as GIF from the example trace, in one run.

Usage: python bench/render_bench.py [--quality low] [--scenes Embedding,Attention]
Prints wall seconds, seconds of video, their ratio and the GIF's size per scene.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av

from mechviz.render import render_scene
from mechviz.scenes import SCENES
from mechviz.visual.settings import SceneSettings, example_trace


def video_seconds(path: Path) -> tuple[float, int]:
    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
    duration = sum(float(f.duration * f.time_base) for f in frames if f.duration and f.time_base)
    return duration, len(frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quality", default="low")
    parser.add_argument("--scenes", default=",".join(SCENES))
    args = parser.parse_args()
    settings = SceneSettings(trace=example_trace())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenes.split(","):
            out = Path(tmp) / f"{name}.gif"
            start = time.perf_counter()
            render_scene(name, settings, args.quality, "gif", out, progress=False)
            wall = time.perf_counter() - start
            seconds, frames = video_seconds(out)
            rows.append((name, wall, seconds, frames, out.stat().st_size / 2**20))
    print(f"{'scene':<14}{'wall s':>8}{'video s':>9}{'frames':>8}{'wall/video':>12}{'GIF MB':>8}")
    for name, wall, seconds, frames, mb in rows:
        print(f"{name:<14}{wall:>8.1f}{seconds:>9.1f}{frames:>8}{wall / seconds:>12.2f}{mb:>8.2f}")


if __name__ == "__main__":
    main()

"""x264 settings for mechviz's MP4s: CPU per video second, size and PSNR on real frames.

Usage: python bench/encoder_bench.py [--frames 600] [--rounds 2]

Renders ResidualFlow at 1080p60 nearly losslessly (CRF 8, ultrafast), keeps its
first frames as RGBA arrays, then encodes them with each setting in rotating
rounds (so a busy spell of a shared machine hits every setting alike) and prints
the best CPU seconds per video second, the file size, and the PSNR of the decoded
frames against the source. The chosen setting is mechviz.rendering.scene.ENCODER_MP4.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

import mechviz.rendering.scene as rendering
from mechviz.visual.settings import SceneSettings, example_trace

SETTINGS = {
    "medium (x264 default)": {"crf": "23"},
    "veryfast": {"crf": "23", "preset": "veryfast"},
    "veryfast, dia, subme 1": {"crf": "23", "preset": "veryfast", "x264-params": "me=dia:subme=1"},
    "veryfast, 1 thread": {"crf": "23", "preset": "veryfast", "x264-params": "threads=1"},
    "chosen": rendering.ENCODER_MP4,
    "superfast": {"crf": "23", "preset": "superfast"},
}


def source_frames(folder: Path, n: int) -> list[np.ndarray]:
    path = folder / "source.mp4"
    saved = dict(rendering.ENCODER_MP4)
    rendering.ENCODER_MP4.clear()
    rendering.ENCODER_MP4.update({"crf": "8", "preset": "ultrafast"})
    try:
        rendering.render_scene(
            "ResidualFlow",
            SceneSettings(trace=example_trace()),
            "high",
            "mp4",
            path,
            progress=False,
        )
    finally:
        rendering.ENCODER_MP4.clear()
        rendering.ENCODER_MP4.update(saved)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgba") for _, f in zip(range(n), container.decode(video=0))]
    return frames


def encode(frames: list[np.ndarray], options: dict, path: Path) -> float:
    """CPU seconds per video second to encode ``frames`` at 60 fps."""
    height, width = frames[0].shape[:2]
    start = time.process_time()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=60, options=dict(options))
        stream.pix_fmt, stream.width, stream.height = "yuv420p", width, height
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_numpy_buffer(pixels, format="rgba")
            frame.pts, frame.time_base = i, Fraction(1, 60)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return (time.process_time() - start) / (len(frames) / 60)


def psnr(frames: list[np.ndarray], path: Path) -> float:
    errors = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 10 == 0:
                a = frame.to_ndarray(format="rgb24").astype(np.float32)
                errors.append(float(((a - frames[i][..., :3]) ** 2).mean()))
    return float(10 * np.log10(255**2 / np.mean(errors)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames = source_frames(folder, args.frames)
        names = list(SETTINGS)
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                cpu[name].append(encode(frames, SETTINGS[name], folder / f"{r}-{name}.mp4"))
        print(f"{len(frames)} frames of ResidualFlow at 1080p60, {args.rounds} rounds")
        print(f"{'setting':<26}{'cpu/video':>10}{'MB':>7}{'PSNR dB':>9}")
        for name in names:
            path = folder / f"0-{name}.mp4"
            print(
                f"{name:<26}{min(cpu[name]):>10.2f}{path.stat().st_size / 1e6:>7.2f}"
                f"{psnr(frames, path):>9.1f}"
            )


if __name__ == "__main__":
    main()

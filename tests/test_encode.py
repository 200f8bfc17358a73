"""The zero-copy frame hand-off writes the same video as Manim's own."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from manim import LEFT, RED, RIGHT, Circle, Create, Square, config, tempconfig
from manim.renderer.cairo_renderer import CairoRenderer

from mechviz.visual import TraceScene
from mechviz.visual._encode import FrameWriter
from mechviz.visual.settings import SceneSettings, example_trace, use


class Shapes(TraceScene):
    def construct(self) -> None:
        self.play(Create(Circle()), run_time=0.5)
        self.add(Square())
        self.wait(0.4)  # a still frame, written with repeats
        # More frames than the encoder's queue holds, over a changing still
        # background: lent buffers come back and are drawn into again.
        self.play(Circle().animate.shift(RIGHT), run_time=1.5)
        self.add(Circle(color=RED).shift(LEFT))
        self.play(Square().animate.scale(0.5), run_time=1.0)


def render(folder: Path, manims: bool) -> tuple[list[np.ndarray], TraceScene]:
    config = {
        "media_dir": str(folder),
        "pixel_width": 320,
        "pixel_height": 180,
        "frame_rate": 15,
        "disable_caching": True,
        "verbosity": "WARNING",
        "progress_bar": "none",
        "output_file": "shapes",
        # Lossless and one thread: the decoded frames are the frames handed over, so
        # the comparison sees what was drawn, not the encoder's rate control, which
        # spreads a change anywhere in a clip over pixels elsewhere (and whose
        # decisions depend on how many threads x264 picks on a machine).
        "video_encoder_options": {"crf": "0", "preset": "ultrafast", "x264-params": "threads=1"},
    }
    with tempconfig(config), use(SceneSettings(trace=example_trace())):
        scene = Shapes(renderer=CairoRenderer()) if manims else Shapes()
        scene.render()
        writer = scene.renderer.file_writer
        with av.open(str(writer.movie_file_path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames, scene


def test_zero_copy_writer_matches_manims(tmp_path: Path) -> None:
    ours, scene = render(tmp_path / "ours", manims=False)
    theirs, _ = render(tmp_path / "theirs", manims=True)
    assert type(scene.renderer.file_writer) is FrameWriter
    assert len(ours) == len(theirs) >= 14 + 6 + 38  # and the hold at the end
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    # Frames were lent, not copied: a few buffers, bounded by the encoder's queue.
    made = len(scene._frame_pool._made)
    assert 2 <= made <= config.encoder_queue_size + 3

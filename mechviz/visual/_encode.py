"""Frames to the encoder without a copy (Manim 0.22's segment encoder, one override).

Manim hands each RGBA frame to PyAV with ``VideoFrame.from_ndarray``, which
copies the 8 MB of a 1080p frame before the encoder converts it to YUV, and
copies it again for every repeat of a still frame. The frame array is the
encoder's to keep (``SceneFileWriter.write_frame`` says so), so wrapping it with
``from_numpy_buffer`` is safe: ``encode`` converts it before returning.
Measured in bench/render_bench.py.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from manim.scene.scene_file_writer import SceneFileWriter
from manim.scene.video_segment_encoder import VideoSegmentEncoder


class ZeroCopyEncoder(VideoSegmentEncoder):
    """Manim's segment encoder, wrapping each frame's array instead of copying it."""

    def write_frame(self, pixels: np.ndarray, *, repeat: int = 1) -> None:
        self._validate_frame(pixels, repeat)
        time_base = Fraction(self.spec.frame_rate.denominator, self.spec.frame_rate.numerator)
        try:
            frame = av.VideoFrame.from_numpy_buffer(pixels, format="rgba")
            for _ in range(repeat):
                frame.pts = self._next_pts
                frame.time_base = time_base
                self._next_pts += 1
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
        except BaseException as error:
            raise self._operation_error("encode", error) from error


class FrameWriter(SceneFileWriter):
    """Manim's file writer with :class:`ZeroCopyEncoder` for every video segment."""

    def _create_segment_encoder(self, target: Path) -> VideoSegmentEncoder:
        encoder = self.video_encoder
        if encoder is None:
            raise RuntimeError("Video segment encoding requires resolved settings.")
        return ZeroCopyEncoder(target=target, spec=encoder)

"""Frames to the encoder without a copy (Manim 0.22's segment encoder, one override).

Manim hands each RGBA frame to PyAV with ``VideoFrame.from_ndarray``, which
copies the 8 MB of a 1080p frame before the encoder converts it to YUV, and
copies it again for every repeat of a still frame. The frame array is the
encoder's to keep (``SceneFileWriter.write_frame`` says so), so wrapping it with
``from_numpy_buffer`` is safe: ``encode`` converts it before returning.
After encoding, a frame that came from a :class:`FramePool` goes back to it,
so the renderer draws the next frames into buffers it already has instead of
copying each finished frame into a new 8 MB array (``CairoRenderer.get_frame``).
Measured in bench/render_bench.py.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from manim.scene.scene_file_writer import SceneFileWriter
from manim.scene.video_segment_encoder import VideoSegmentEncoder


class FramePool:
    """Frame buffers of one shape that the renderer lends to the encoder.

    ``take`` gives a free buffer (a new one when none is free); the encoder
    calls :func:`give_back` once it has read a buffer. The pool keeps every
    buffer it made, so their number stays at the most ever out at once (the
    encoder's queue bounds it) and their identities stay unique.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype
        self._made: list[np.ndarray] = []
        self._free: deque[np.ndarray] = deque()  # append and pop are thread-safe

    def take(self) -> np.ndarray:
        try:
            return self._free.pop()
        except IndexError:
            buffer = np.empty(self.shape, self.dtype)
            self._made.append(buffer)
            with _LOCK:
                _POOLS[id(buffer)] = self
            return buffer

    def owns(self, buffer: np.ndarray) -> bool:
        return any(b is buffer for b in self._made)

    def _put(self, buffer: np.ndarray) -> None:
        self._free.append(buffer)


_LOCK = threading.Lock()
_POOLS: weakref.WeakValueDictionary[int, FramePool] = weakref.WeakValueDictionary()


def give_back(buffer: np.ndarray) -> None:
    """Return ``buffer`` to the pool that made it, if any (the encoder has read it)."""
    with _LOCK:
        pool = _POOLS.get(id(buffer))
    if pool is not None and pool.owns(buffer):
        pool._put(buffer)


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
        if self._stream.codec_context.pix_fmt != "rgba":
            # PyAV converted the frame to the stream's format before encoding, so
            # the codec holds no reference to ``pixels``: it may be drawn into again.
            give_back(pixels)


class FrameWriter(SceneFileWriter):
    """Manim's file writer with :class:`ZeroCopyEncoder` for every video segment."""

    def _create_segment_encoder(self, target: Path) -> VideoSegmentEncoder:
        encoder = self.video_encoder
        if encoder is None:
            raise RuntimeError("Video segment encoding requires resolved settings.")
        return ZeroCopyEncoder(target=target, spec=encoder)

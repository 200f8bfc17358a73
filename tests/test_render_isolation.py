"""A render does not depend on what the process did before it (issue 20).

A notebook calling ``mechviz.render`` again and again, or ``mechviz scene all``,
renders many scenes in one process: each must come out as it does in a fresh
process, pixel for pixel. And a GIF's held last picture is still: every frame of
the hold is the same picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from mechviz.rendering.scene import render_scene
from mechviz.visual.settings import SceneSettings, example_trace
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a GIF as RGB, and each frame's delay in ms."""
    with Image.open(path) as image:
        frames, delays = [], []
        for frame in ImageSequence.Iterator(image):
            frames.append(np.asarray(frame.convert("RGB")).copy())
            delays.append(int(frame.info.get("duration", 0)))
    return frames, delays


def changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.any(a != b, axis=2).sum())


def test_a_render_after_other_renders_equals_one_in_a_fresh_process(tmp_path: Path) -> None:
    trace = example_trace()
    # What a notebook does before: other scenes, another format, aspect and theme.
    for name, extra in (
        ("Attention", {"beats": ("grid",), "aspect": "9:16", "theme": "light"}),
        ("ResidualFlow", {"beats": ("rise",), "aspect": "1:1"}),
        ("Unembedding", {"beats": ("lens",)}),
    ):
        settings = SceneSettings(trace=trace, **extra)
        render_scene(name, settings, "low", "png", tmp_path / f"{name}.png", progress=False)
    used = render_scene(
        "Unembedding",
        SceneSettings(trace=trace, beats=("bars",), fade=True),  # as the CLI's GIFs
        "low",
        "gif",
        tmp_path / "used.gif",
        progress=False,
    )
    done = run_cli(
        "scene",
        "Unembedding",
        "--beats",
        "bars",
        "--format",
        "gif",
        "-o",
        str(tmp_path / "fresh.gif"),
    )
    assert done.returncode == 0, done.stderr
    ours, our_delays = gif_frames(used)
    fresh, fresh_delays = gif_frames(tmp_path / "fresh.gif")
    assert len(ours) == len(fresh) > 20
    assert our_delays == fresh_delays
    differ = [i for i, (a, b) in enumerate(zip(ours, fresh)) if changed_pixels(a, b)]
    assert not differ, f"frames {differ[:5]} differ from the fresh process's"


def test_the_gifs_held_last_picture_is_still(tmp_path: Path) -> None:
    # The example of the issue: Unembedding's hold changed 19 pixels in every frame
    # (the lossy intermediate video's noise, dithered into different colours).
    out = render_scene(
        "Unembedding",
        SceneSettings(trace=example_trace(), beats=("bars",), fade=False, hold=1.0),
        "low",
        "gif",
        tmp_path / "held.gif",
        progress=False,
    )
    frames, delays = gif_frames(out)
    # The hold is the run of frames at the end that show the same picture as the last.
    # At 15 fps a 1 s hold is 15 frames: all of them must be identical, so the run of
    # unchanged frames at the end spans at least the hold (less one frame).
    still = 0
    for a, b in zip(frames[::-1], frames[-2::-1]):
        if changed_pixels(a, b):
            break
        still += 1
    held_ms = sum(delays[len(delays) - 1 - still :])
    assert held_ms >= 1000 - 70, (still, delays[-20:])

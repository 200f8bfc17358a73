"""video_to_gif on small synthetic MP4s: timing, size, palette, the size limit, memory."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mechviz.errors import MechvizError
from mechviz.rendering import gif as gif_module
from mechviz.rendering.gif import GifResult, video_to_gif

ROOT = Path(__file__).resolve().parents[1]
BITS = 8  # the frame index is drawn as 8 black/white squares along the top


def make_video(path: Path, width: int, height: int, fps: int, frames: int) -> Path:
    """An H.264 MP4 of flat shapes (like a scene) whose frame ``i`` shows ``i`` in binary.

    Few colours, as in a rendered scene: ``palettegen`` is slow on noise-like frames.
    """
    colours = np.array([[230, 80, 60], [60, 160, 230], [250, 200, 40], [90, 200, 120]], np.uint8)
    square = width // BITS
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), (20, 24, 36), np.uint8)
            for k, colour in enumerate(colours):
                x = (i * (k + 1) * width // 97 + k * width // 4) % (width - width // 5)
                y = square + k * (height - square) // len(colours)
                image[y : y + (height - square) // 5, x : x + width // 5] = colour
            for bit in range(BITS):
                image[:square, bit * square : (bit + 1) * square] = 255 * ((i >> bit) & 1)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass
class Gif:
    """What the GIF file itself says, block by block."""

    width: int
    height: int
    global_table: bool
    loop: int | None = None
    delays: list[int] = field(default_factory=list)  # centiseconds, one per image
    local_tables: int = 0


def read_gif(path: Path) -> Gif:
    data = path.read_bytes()
    assert data[:6] == b"GIF89a"
    width, height, flags = struct.unpack("<HHB", data[6:11])
    info = Gif(width, height, bool(flags & 0x80))
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    delay = None
    while data[pos] != 0x3B:
        kind, pos = data[pos], pos + 1
        if kind == 0x21:  # extension: label, then sub-blocks
            label, pos = data[pos], pos + 1
            blocks = []
            while data[pos]:
                blocks.append(data[pos + 1 : pos + 1 + data[pos]])
                pos += 1 + data[pos]
            pos += 1
            if label == 0xF9:
                delay = struct.unpack("<H", blocks[0][1:3])[0]
            elif label == 0xFF and blocks[0] == b"NETSCAPE2.0":
                info.loop = struct.unpack("<H", blocks[1][1:3])[0]
        else:
            assert kind == 0x2C, hex(kind)
            packed, pos = data[pos + 8], pos + 9
            if packed & 0x80:
                info.local_tables += 1
                pos += 3 * 2 ** ((packed & 7) + 1)
            pos += 1  # LZW minimum code size
            while data[pos]:
                pos += 1 + data[pos]
            pos += 1
            assert delay is not None, "every image has a graphic control extension"
            info.delays.append(delay)
            delay = None
    return info


def frame_indices(path: Path) -> list[int]:
    """The source frame index drawn in each GIF frame."""
    indices = []
    with Image.open(path) as image:
        for n in range(image.n_frames):
            image.seek(n)
            rgb = np.asarray(image.convert("L"), dtype=np.float64)
            square = image.width // BITS
            bits = [
                rgb[2 : square - 2, b * square + 2 : (b + 1) * square - 2].mean() > 128
                for b in range(BITS)
            ]
            indices.append(sum(int(bit) << b for b, bit in enumerate(bits)))
    return indices


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "small": make_video(folder / "small.mp4", 160, 90, 30, 60),  # 2 s
        "wide": make_video(folder / "wide.mp4", 640, 360, 30, 30),  # 1 s
        "fast": make_video(folder / "fast.mp4", 160, 90, 60, 90),  # 1.5 s
    }


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_loops_forever_with_one_global_palette(videos: dict[str, Path], tmp_path: Path) -> None:
    result = video_to_gif(videos["small"], tmp_path / "out.gif")
    info = read_gif(tmp_path / "out.gif")
    assert info.loop == 0
    assert info.global_table and info.local_tables == 0
    assert (info.width, info.height) == (160, 90)
    assert result == GifResult(tmp_path / "out.gif", 30.0, 160, result.size_bytes, result.attempts)
    assert result.size_bytes == (tmp_path / "out.gif").stat().st_size
    assert result.attempts == [(30.0, 160, result.size_bytes)]
    assert files_in(tmp_path) == ["out.gif"]


def test_source_rate_keeps_every_frame_and_the_duration(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    video_to_gif(videos["small"], tmp_path / "out.gif")
    info = read_gif(tmp_path / "out.gif")
    assert len(info.delays) == 60
    assert sum(info.delays) == 200  # 2 s, to the centisecond
    assert set(info.delays) <= {3, 4}  # 3.33 cs a frame, placed on the source's clock
    assert frame_indices(tmp_path / "out.gif") == list(range(60))


@pytest.mark.parametrize(("fps", "frames", "delays"), [(10, 20, {10}), (12, 24, {8, 9})])
def test_lower_fps_drops_frames_evenly(
    videos: dict[str, Path], tmp_path: Path, fps: float, frames: int, delays: set[int]
) -> None:
    result = video_to_gif(videos["small"], tmp_path / "out.gif", fps=fps)
    info = read_gif(tmp_path / "out.gif")
    assert result.fps == fps
    assert len(info.delays) == frames
    assert sum(info.delays) == 200
    assert set(info.delays) == delays
    indices = frame_indices(tmp_path / "out.gif")
    assert indices == [k * 30 // fps for k in range(frames)]  # source frames, evenly spaced


def test_fps_above_the_source_keeps_the_source(videos: dict[str, Path], tmp_path: Path) -> None:
    result = video_to_gif(videos["small"], tmp_path / "out.gif", fps=60)
    assert result.fps == 30.0
    assert len(read_gif(tmp_path / "out.gif").delays) == 60  # no frame invented


def test_60fps_is_written_at_50_without_short_delays(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    # Browsers play a delay of 0 or 1 cs as 10 cs; 2 cs (50 fps) is the fastest that plays.
    result = video_to_gif(videos["fast"], tmp_path / "out.gif")
    info = read_gif(tmp_path / "out.gif")
    assert result.fps == 50.0
    assert set(info.delays) == {2}
    assert sum(info.delays) == 150
    indices = frame_indices(tmp_path / "out.gif")
    assert indices == sorted(set(indices)) and len(indices) == 75


def test_width_is_honoured_with_the_aspect_kept(videos: dict[str, Path], tmp_path: Path) -> None:
    result = video_to_gif(videos["wide"], tmp_path / "half.gif", width=320)
    info = read_gif(tmp_path / "half.gif")
    assert (result.width, info.width, info.height) == (320, 320, 180)
    result = video_to_gif(videos["small"], tmp_path / "odd.gif", width=101)
    info = read_gif(tmp_path / "odd.gif")
    assert (result.width, info.width, info.height) == (100, 100, 56)  # even, 16:9 kept
    assert info.width / info.height == pytest.approx(160 / 90, rel=0.02)
    result = video_to_gif(videos["small"], tmp_path / "same.gif", width=1000)
    assert (read_gif(tmp_path / "same.gif").width, result.width) == (160, 160)  # never up


def test_max_bytes_lowers_fps_before_width(videos: dict[str, Path], tmp_path: Path) -> None:
    full = video_to_gif(videos["wide"], tmp_path / "full.gif").size_bytes
    at_10 = video_to_gif(videos["wide"], tmp_path / "ten.gif", fps=10).size_bytes
    assert at_10 < full
    fits = video_to_gif(videos["wide"], tmp_path / "fits.gif", max_bytes=(full + at_10) // 2)
    rates = [fps for fps, _, _ in fits.attempts]
    assert rates[0] == 30.0 and rates == sorted(rates, reverse=True) and len(rates) >= 2
    assert {width for _, width, _ in fits.attempts} == {640}
    assert fits.size_bytes <= (full + at_10) // 2
    assert all(size > (full + at_10) // 2 for _, _, size in fits.attempts[:-1])
    narrow = video_to_gif(videos["wide"], tmp_path / "narrow.gif", max_bytes=at_10 - 1)
    assert [fps for fps, _, _ in narrow.attempts] == [30.0, 24.0, 20.0, 15.0, 12.0, 10.0] + [
        10.0
    ] * (len(narrow.attempts) - 6)
    assert [width for _, width, _ in narrow.attempts][:7] == [640] * 6 + [512]
    assert narrow.attempts[5][2] == at_10
    assert (narrow.fps, narrow.width) == (10.0, narrow.attempts[-1][1])
    assert read_gif(tmp_path / "narrow.gif").width == narrow.width < 640
    assert files_in(tmp_path) == ["fits.gif", "full.gif", "narrow.gif", "ten.gif"]


def test_impossible_max_bytes_leaves_nothing_behind(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(MechvizError, match=r"10 fps, 240 px wide\) is .* over the limit"):
        video_to_gif(videos["wide"], tmp_path / "out.gif", fps=10, width=300, max_bytes=1000)
    assert files_in(tmp_path) == []


def test_interrupt_leaves_no_temporary_file(
    videos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out.gif").write_bytes(b"old")

    def interrupted(source: Path, target: Path, plan: object, hold: float) -> None:
        target.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(gif_module, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        video_to_gif(videos["small"], tmp_path / "out.gif")
    assert files_in(tmp_path) == ["out.gif"]
    assert (tmp_path / "out.gif").read_bytes() == b"old"  # the old file is untouched


def test_hold_lengthens_the_last_frame(videos: dict[str, Path], tmp_path: Path) -> None:
    plain = read_gif(video_to_gif(videos["small"], tmp_path / "plain.gif", fps=10).path)
    held = read_gif(video_to_gif(videos["small"], tmp_path / "held.gif", fps=10, hold=1.5).path)
    assert len(held.delays) == len(plain.delays)  # no frames added
    assert held.delays[:-1] == plain.delays[:-1]
    assert held.delays[-1] == plain.delays[-1] + 150


def test_unreadable_source_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(MechvizError, match="does not exist"):
        video_to_gif(tmp_path / "missing.mp4", tmp_path / "out.gif")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(MechvizError, match="Cannot convert"):
        video_to_gif(tmp_path / "junk.mp4", tmp_path / "out.gif")
    assert files_in(tmp_path) == ["junk.mp4"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"fps": 0}, "frame rate must be a positive number"),
        ({"width": 1}, "width must be at least 2 pixels"),
        ({"max_bytes": 0}, "size limit must be a positive number of bytes"),
        ({"hold": -1.0}, "zero or more seconds"),
    ],
)
def test_bad_options_are_one_sentence(
    videos: dict[str, Path], tmp_path: Path, option: dict, message: str
) -> None:
    with pytest.raises(MechvizError, match=message):
        video_to_gif(videos["small"], tmp_path / "out.gif", **option)
    assert files_in(tmp_path) == []


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import av  # imports are part of the baseline, not of the conversion
    from mechviz.rendering.gif import video_to_gif

    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

    before = status("VmRSS:")
    result = video_to_gif(Path(sys.argv[1]), Path(sys.argv[2]))
    print(before, status("VmHWM:"), result.fps)
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_memory_stays_near_one_frame(tmp_path: Path) -> None:
    width, height, frames = 1280, 720, 300
    video = make_video(tmp_path / "long.mp4", width, height, 30, frames)
    command = [sys.executable, "-c", CHILD, str(video), str(tmp_path / "long.gif")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    before, peak, _ = out.split()
    decoded = frames * width * height * 3 // 2  # every decoded yuv420p frame: 415 MB
    growth = int(peak) - int(before)
    assert len(read_gif(tmp_path / "long.gif").delays) == frames  # it did convert them all
    assert growth < decoded * 0.25, f"peak RSS grew {growth / 2**20:.0f} MB"

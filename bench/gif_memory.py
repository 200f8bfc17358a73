"""Peak memory and time of MP4 -> GIF: the one-graph mp4_to_gif against the two-pass video_to_gif.

Usage: python bench/gif_memory.py [--scene Attention] [--qualities low,high,4k]
       [--workdir DIR] [--cap-gb 16]

Renders the scene once per quality as MP4 (``mechviz scene NAME --format mp4``;
an MP4 already in ``--workdir`` is reused), then converts it to GIF in a fresh
subprocess per converter and prints: quality, frames, video seconds, converter,
peak RSS (VmHWM of the converting process), its RSS before converting, GIF size
and seconds. Each converting process runs under ``RLIMIT_AS`` of ``--cap-gb``; a
conversion that hits it is reported as "out of memory".
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MECHVIZ = ROOT / ".venv" / "bin" / "mechviz"


def vm(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmHWM, VmRSS) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def old_mp4_to_gif(source: Path, target: Path) -> None:
    """The removed ``mechviz.render.mp4_to_gif`` (one filter graph), frozen here to compare."""
    import mechviz.rendering.scene

    convert = getattr(mechviz.rendering.scene, "mp4_to_gif", None)
    if convert is not None:
        convert(source, target)
        return
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


def child(converter: str, source: Path, target: Path, cap: int) -> None:
    """Convert in this (fresh) process and print one JSON line of measurements."""
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    report: dict[str, object] = {}
    try:
        import av  # noqa: F401  (imports count towards the baseline, not the conversion)

        if converter == "old":
            import mechviz.rendering.scene  # noqa: F401
        else:
            from mechviz.rendering.gif import video_to_gif
        report["baseline"] = vm("VmRSS")
        start = time.perf_counter()
        if converter == "old":
            old_mp4_to_gif(source, target)
        else:
            result = video_to_gif(source, target)
            report["fps"] = result.fps
        report["seconds"] = time.perf_counter() - start
        report["gif_bytes"] = target.stat().st_size
    except BaseException as exc:  # noqa: BLE001 (a report, whatever went wrong)
        report["error"] = f"{type(exc).__name__}: {exc}"[:200]
        report["memory"] = isinstance(exc, MemoryError) or "memory" in str(exc).lower()
    report["peak"] = vm("VmHWM")
    print(json.dumps(report), flush=True)


def measure(converter: str, source: Path, target: Path, cap: int) -> dict[str, object]:
    args = [sys.executable, __file__, "--child", converter, str(source), str(target), str(cap)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if lines:
        report = json.loads(lines[-1])
    else:  # killed outright (SIGKILL, abort on a failed allocation)
        tail = proc.stderr.strip().splitlines()[-1:] or [""]
        report = {"error": f"exit {proc.returncode} {tail[0]}"[:200], "memory": cap > 0}
    target.unlink(missing_ok=True)
    return report


def render(scene: str, quality: str, workdir: Path) -> Path:
    video = workdir / f"{scene}-{quality}.mp4"
    if not video.exists():
        start = time.perf_counter()
        command = [str(MECHVIZ), "scene", scene, "--format", "mp4", "--quality", quality]
        subprocess.run([*command, "-o", str(video)], check=True, cwd=ROOT)
        print(f"rendered {video.name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return video


def probe(video: Path) -> tuple[int, float, str]:
    """Frames (packets), seconds and WIDTHxHEIGHT@FPS of the video, without decoding."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or Fraction(0)
        seconds = frames / rate if rate else float(container.duration or 0) / 1e6
        return frames, float(seconds), f"{stream.width}x{stream.height}@{float(rate):g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="Attention")
    parser.add_argument("--qualities", default="low,high,4k")
    parser.add_argument("--workdir", type=Path, help="where the MP4s go (default: a temp dir)")
    parser.add_argument("--cap-gb", type=float, default=16.0, help="RLIMIT_AS per conversion")
    parser.add_argument("--converters", default="old,new")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        converter, source, target, cap = args.child
        child(converter, Path(source), Path(target), int(cap))
        return
    cap = int(args.cap_gb * 2**30)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gif-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    header = (
        f"{'quality':<8}{'video':>16}{'frames':>8}{'video s':>9}  {'converter':<14}"
        f"{'peak RSS MB':>12}{'before MB':>10}{'GIF MB':>8}{'seconds':>9}"
    )
    rows = [header, "-" * len(header)]
    print(header, flush=True)
    for quality in args.qualities.split(","):
        video = render(args.scene, quality, workdir)
        frames, seconds, shape = probe(video)
        for converter in args.converters.split(","):
            report = measure(converter, video, workdir / f"{video.stem}.{converter}.gif", cap)
            name = "mp4_to_gif" if converter == "old" else "video_to_gif"
            peak = f"{report['peak'] / 2**20:.0f}" if "peak" in report else "?"
            before = f"{report['baseline'] / 2**20:.0f}" if "baseline" in report else "?"
            if "error" in report:
                tail = "out of memory" if report.get("memory") else str(report["error"])
                if "peak" in report:
                    peak = f">{peak}" if report.get("memory") else peak
                result = f"{peak:>12}{before:>10}  {tail}"
            else:
                size = report["gif_bytes"] / 1e6
                result = f"{peak:>12}{before:>10}{size:>8.2f}{report['seconds']:>9.1f}"
                if report.get("fps") is not None:
                    result += f"  (written at {report['fps']:g} fps)"
            row = f"{quality:<8}{shape:>16}{frames:>8}{seconds:>9.2f}  {name:<14}{result}"
            rows.append(row)
            print(row, flush=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()

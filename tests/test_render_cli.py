"""The scene CLI end to end: files written, frames, size, loop; bad input; packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_cli
from PIL import Image

from mechviz.cli.main import main
from mechviz.tracing.io import load_trace

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "data" / "small_trace.json"
EXAMPLE = ROOT / "assets" / "traces" / "capital_of_france.json"


def run(
    *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env={**os.environ, **(env or {})})


def test_scenes_lists_every_scene_with_one_line() -> None:
    result = CliRunner().invoke(main, ["scenes"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "Embedding",
        "ResidualFlow",
        "Attention",
        "Unembedding",
        "Story",
        "WholeModel",
        "Neurons",
        "LogitAttribution",
        "Dictionaries",
        "EmbeddingSimilarity",
        "WeightStats",
        "TunedLens",
        "Features",
        "Ablation",
        "Patching",
        "Compare",
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["scene", "ResidualFlw"], "Did you mean ResidualFlow?"),
        (["scene", "Attention", "--trace", str(SMALL), "--layer", "30"], "layers 0 to 29"),
        (["scene", "Attention", "--trace", str(SMALL), "--head", "9"], "heads 0 to 8"),
        (["scene", "Attention", "--trace", "no/such/trace.json"], "does not exist"),
        (
            ["scene", "Attention", "--trace", str(SMALL), "-o", "/no/such/dir/x.gif"],
            "does not exist",
        ),
        (["scene", "Attention", "--trace", str(SMALL), "-o", "x.png", "--format", "gif"], "match"),
        (["scene", "Attention", "--trace", str(SMALL), "-o", "x.txt"], "Cannot tell the format"),
        (
            ["scene", "Embedding", "--trace", str(SMALL), "--layer", "3"],
            "--layer applies to the Attention and Dictionaries scenes only",
        ),
        (["scene", "Embedding", "--trace", str(SMALL), "--top-k", "3"], "only with --prompt"),
        (["scene", "Attention", "--format", "jpg"], "'jpg' is not one of"),
        (["scene", "[/b]"], "no scene called '[/b]'"),
        (["scene", "Attention", "--trace", "/tmp"], "is a directory"),
    ],
)
def test_scene_bad_input_is_one_sentence(args: list[str], needle: str, tmp_path: Path) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.rglob("*.gif"))


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    result = run("scene", "Attention", "--quality", "ultra", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error:")
    assert "Usage:" not in result.stderr


def test_inspect_shows_brackets_as_typed(tmp_path: Path) -> None:
    """User text is never read as rich markup."""
    data = json.loads(SMALL.read_text())
    data["prompt"] = "[INST] [bold]hi[/] [/INST]"
    path = tmp_path / "[old].json"
    path.write_text(json.dumps(data))
    result = run("inspect", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[INST] [bold]hi[/] [/INST]" in result.stdout
    missing = run("inspect", str(tmp_path / "[gone].json"), cwd=tmp_path)
    assert missing.returncode == 2 and "[gone].json" in missing.stderr


def test_scene_not_a_trace(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    result = run("scene", "Attention", "--trace", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "not a mechviz trace" in result.stderr


@pytest.mark.slow
def test_gif_end_to_end(tmp_path: Path) -> None:
    """A GIF for a post: renders through the CLI, loops, is small, has real frames."""
    result = run("scene", "Attention", "--trace", str(SMALL), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "renders" / "small_trace" / "Attention.gif"
    assert out.is_file()
    assert out.stat().st_size <= 5 * 2**20
    with Image.open(out) as gif:
        assert gif.info.get("loop") == 0  # loops forever
        assert gif.size == (854, 480)
        n_frames = gif.n_frames
        durations = []
        for i in range(n_frames):
            gif.seek(i)
            durations.append(gif.info.get("duration", 0))
    assert n_frames > 60
    assert 5_000 < sum(durations) < 30_000  # milliseconds of animation
    # No render scratch left behind.
    assert sorted(p.name for p in out.parent.iterdir()) == ["Attention.gif"]


@pytest.mark.slow
def test_png_and_mp4_formats(tmp_path: Path) -> None:
    png = tmp_path / "last.png"
    result = run("scene", "Embedding", "--trace", str(SMALL), "--format", "png", "-o", str(png))
    assert result.returncode == 0, result.stderr
    assert Image.open(png).size == (854, 480)
    mp4 = tmp_path / "clip.mp4"
    result = run("scene", "Embedding", "--trace", str(SMALL), "--format", "mp4", "-o", str(mp4))
    assert result.returncode == 0, result.stderr
    assert mp4.read_bytes()[4:8] == b"ftyp"


@pytest.mark.slow
def test_plain_manim_with_env_trace(tmp_path: Path) -> None:
    """`manim -ql scenes/attention.py Attention` works, MECHVIZ_TRACE picks the trace."""
    manim = Path(sys.executable).parent / "manim"
    result = subprocess.run(
        [
            str(manim),
            "-ql",
            "-s",
            "--media_dir",
            str(tmp_path),
            str(ROOT / "scenes" / "attention.py"),
            "Attention",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MECHVIZ_TRACE": str(SMALL), "MECHVIZ_LAYER": "3", "MECHVIZ_HEAD": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pngs = list(tmp_path.rglob("Attention*.png"))
    assert pngs and Image.open(pngs[0]).size == (854, 480)


@pytest.mark.slow
def test_non_editable_install_finds_scenes_and_example(tmp_path: Path) -> None:
    """A built wheel carries the scenes and the example trace (pip install . works)."""
    target = tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(target),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    code = (
        "import mechviz, sys\n"
        "assert mechviz.__file__.startswith(sys.argv[1]), mechviz.__file__\n"
        "from mechviz.rendering.scene import scene_class\n"
        "from mechviz.visual.settings import example_trace\n"
        "from mechviz.tracing.io import load_trace\n"
        "scene_class('ResidualFlow')\n"
        "print(load_trace(example_trace()).prompt)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "The capital of France is"


@pytest.mark.slow
def test_example_trace_matches_current_code(tmp_path: Path) -> None:
    """The committed example trace is what `mechviz trace`, then `analyze`, make now.

    (But the version.)
    """
    committed = json.loads(EXAMPLE.read_text())
    out = tmp_path / "now.json"
    result = run("trace", committed["prompt"], "-o", str(out))
    assert result.returncode == 0, result.stderr
    result = run("analyze", str(out), "--versus", " London")
    assert result.returncode == 0, result.stderr
    now = load_trace(out).to_dict(packed=False)
    then = load_trace(EXAMPLE).to_dict(packed=False)
    now.pop("mechviz_version")
    then.pop("mechviz_version")
    assert_same(now, then)


def assert_same(now: object, then: object, where: str = "trace") -> None:
    """Equal, but for float rounding: another CPU's kernels move the last bits.

    Ids, ranks, texts and shapes must be equal; floats agree to 0.1% of the
    array's largest value.
    """
    if isinstance(then, dict):
        assert isinstance(now, dict) and now.keys() == then.keys(), where
        for key in then:
            assert_same(now[key], then[key], f"{where}.{key}")
        return
    try:
        a, b = np.asarray(now), np.asarray(then)
    except ValueError:  # ragged: item by item
        assert isinstance(now, list) and len(now) == len(then), where
        for i, (x, y) in enumerate(zip(now, then)):
            assert_same(x, y, f"{where}[{i}]")
        return
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        assert a.shape == b.shape, where
        scale = float(np.nanmax(np.abs(b))) if b.size else 0.0
        assert np.allclose(a, b, rtol=1e-3, atol=1e-3 * scale, equal_nan=True), where
    else:
        assert now == then, where


@pytest.mark.parametrize(("name", "section"), [("WholeModel", "whole"), ("Neurons", "neurons")])
def test_scenes_of_schema_4_refuse_an_older_trace_before_rendering(
    name: str, section: str, tmp_path: Path
) -> None:
    out = tmp_path / f"{name}.png"
    result = CliRunner().invoke(main, ["scene", name, "--trace", str(SMALL), "-o", str(out)])
    assert result.exit_code == 2
    assert f"has no `{section}` section" in result.output and "mechviz trace" in result.output
    assert "Traceback" not in result.output and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_width_and_cmap_belong_to_whole_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["scene", "Attention", "--cmap", "matrix", "-o", str(tmp_path / "a.gif")]
    )
    assert result.exit_code == 2 and "--cmap applies to the WholeModel scene only" in result.output
    result = CliRunner().invoke(
        main, ["scene", "Unembedding", "--width", "2000", "-o", str(tmp_path / "u.gif")]
    )
    assert result.exit_code == 2 and "--width applies to the WholeModel scene only" in result.output


def test_whole_model_from_a_prompt_is_pooled_for_its_width(tmp_path: Path) -> None:
    """`--prompt` with `--width` traces rows pooled for that width (no repeated values)."""
    result = run_cli(
        "scene",
        "WholeModel",
        "--prompt",
        "2+2=",
        "--width",
        "1200",
        "--format",
        "png",
        "-o",
        str(tmp_path / "w.png"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (made,) = (tmp_path / "renders").glob("*.json")
    assert json.loads(made.read_text(encoding="utf-8"))["whole"]["width"] == 1200
    with Image.open(tmp_path / "w.png") as image:
        assert image.size[0] == 1200

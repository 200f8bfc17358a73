"""The CLI as a hostile user meets it: one sentence and exit code 2, and no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "data" / "small_trace.json"
NOT_UTF8 = os.fsdecode(b"caf\xff\xfe")  # what Python makes of these argv bytes


def _no_model_env(tmp_path: Path) -> dict[str, str]:
    """An environment where loading the model fails loudly (empty cache, missing wheel).

    A check that must run before the model loads passes its own message through;
    if the model were loaded first, the error would be about the wheel instead.
    """
    env = dict(os.environ)
    env["MECHVIZ_CACHE"] = str(tmp_path / "empty-cache")
    env["MECHVIZ_MODEL_WHEEL"] = str(tmp_path / "no-such-wheel.whl")
    return env


def _one_sentence(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "MECHVIZ_MODEL_WHEEL" not in lines[0], "the model was loaded before the check"
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["trace", NOT_UTF8],
        ["trace", "ok " + NOT_UTF8, "-o", "x.json"],
        ["scene", "Unembedding", "--prompt", NOT_UTF8],
        ["scene", "Attention", "--prompt", "\udcff"],
    ],
    ids=["trace", "trace-middle", "scene-prompt", "scene-lone-byte"],
)
def test_prompt_that_is_not_utf8(tmp_path: Path, args: list[str]) -> None:
    message = _one_sentence(run_cli(*args, cwd=tmp_path, env=_no_model_env(tmp_path)))
    assert "not valid UTF-8" in message and "0xFF" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "hello", "-o", "/proc/x.json"],
        ["trace", "hello", "-o", "/proc/self/x.json"],
        ["trace", "hello", "-o", "/dev/null/x.json"],
        ["scene", "Unembedding", "--trace", str(SMALL), "-o", "/proc/out.png"],
        ["scene", "Unembedding", "--prompt", "hello", "-o", "/proc/out.gif"],
    ],
    ids=["trace-proc", "trace-proc-self", "trace-under-a-file", "scene-proc", "scene-prompt-proc"],
)
def test_unwritable_output_is_refused_before_any_work(tmp_path: Path, args: list[str]) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("uses /proc")
    message = _one_sentence(run_cli(*args, cwd=tmp_path, env=_no_model_env(tmp_path)))
    assert "Cannot write" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [["trace", "-m", "default", "-in the beginning"], ["trace", "-1 is less than 0"]],
    ids=["after-model", "alone"],
)
def test_prompt_starting_with_a_dash_gets_a_hint(tmp_path: Path, args: list[str]) -> None:
    message = _one_sentence(run_cli(*args, cwd=tmp_path, env=_no_model_env(tmp_path)))
    assert "No such option" in message and "put -- before the prompt" in message


@pytest.mark.parametrize("command", ["inspect", "scene"])
def test_dev_null_as_a_trace(tmp_path: Path, command: str) -> None:
    args = (
        ["inspect", "/dev/null"]
        if command == "inspect"
        else ["scene", "Embedding", "--trace", "/dev/null"]
    )
    message = _one_sentence(run_cli(*args, cwd=tmp_path))
    assert "not a regular file" in message and "does not exist" not in message
    assert list(tmp_path.iterdir()) == []


def _start_render(cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mechviz", "scene", "ResidualFlow", "--trace", str(SMALL), *extra],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_render_folder(cwd: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until Manim is writing partial movie files (the worst moment to stop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.suffix == ".mp4" for p in cwd.rglob("*")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the render ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no partial movie file appeared")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGTERM, 143, "Terminated"), (signal.SIGINT, 130, "Interrupted")],
    ids=["sigterm", "sigint"],
)
@pytest.mark.parametrize("output", ["default", "given"])
def test_stopping_a_render_leaves_nothing(
    tmp_path: Path, sig: int, code: int, word: str, output: str
) -> None:
    extra = [] if output == "default" else ["-o", "out/flow.gif"]
    if output == "given":
        (tmp_path / "out").mkdir()
    proc = _start_render(tmp_path, *extra)
    _wait_for_render_folder(tmp_path, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and word in stderr, stderr
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ([] if output == "default" else ["out"]), left


@pytest.mark.parametrize(
    "prompt", [NOT_UTF8, "\ud800 lone", "", 42], ids=["bytes", "surrogate", "empty", "int"]
)
def test_library_tokenize_refuses_bad_prompts(prompt: object) -> None:
    """The same sentence from the Python API, before the tokenizer sees the text."""
    from conftest import VOCAB, CharTokenizer, build_tiny_model

    from mechviz.errors import MechvizError
    from mechviz.model.load import wrap_model
    from mechviz.tracing.record import tokenize

    loaded = wrap_model(build_tiny_model("llama"), CharTokenizer(VOCAB), "tiny")
    with pytest.raises(MechvizError, match="prompt"):
        tokenize(loaded, prompt, 64)  # type: ignore[arg-type]

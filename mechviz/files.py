"""Files on disk: atomic writes, writable checks, the cache folder.

It imports nothing of mechviz but its errors, so every stage can write safely.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mechviz.errors import MechvizError, raise_if_stopped


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


def cache_dir() -> Path:
    """``$MECHVIZ_CACHE``, else ``$XDG_CACHE_HOME/mechviz``, else ``~/.cache/mechviz``."""
    if os.environ.get("MECHVIZ_CACHE"):
        return Path(os.environ["MECHVIZ_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "mechviz"

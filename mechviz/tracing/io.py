"""Reading and writing trace files: canonical JSON on disk, validated loads."""

from __future__ import annotations

import json
from pathlib import Path

from mechviz.errors import MechvizError
from mechviz.tracing.schema import Trace


def dumps(trace: Trace) -> str:
    """The canonical JSON text of a trace (sorted keys, so byte-stable)."""
    return trace.to_json()


def save_trace(trace: Trace, path: Path | str) -> Path:
    """Write ``trace`` to ``path`` atomically (:meth:`Trace.save`)."""
    return trace.save(path)


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

"""The documentation cannot rot: the notebook runs, the examples render, api.md is current."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import mechviz

DOCS = Path(__file__).resolve().parent.parent / "docs"


def run_cells(cells: list[str], namespace: dict) -> list[object]:
    """Run code cells as Jupyter does: each cell's last expression is its output."""
    outputs = []
    for source in cells:
        tree = ast.parse(source)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<cell>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
            outputs.append(value)
    return outputs


def test_notebook_runs_without_network(
    default_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = json.loads((DOCS / "notebook.ipynb").read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    outputs = run_cells(cells, {"__name__": "__main__"})
    shown = [o for o in outputs if isinstance(o, mechviz.Rendered)]
    assert len(shown) >= 2, outputs
    for path in shown:
        assert path.is_file() and path.stat().st_size > 1000
        assert path._repr_html_().startswith(("<img", "<video"))
    assert "opposite" in str(outputs[-1])
    assert not any(c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code"), (
        "commit the notebook without outputs (they hold megabytes of base64)"
    )

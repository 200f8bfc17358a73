"""The documentation cannot rot: the notebook runs, the examples render, api.md is current."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest

import mechviz
import mechviz.visual

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
    assert len(shown) >= 5, outputs  # two renders, then Ablation, Patching, Compare
    for path in shown:
        assert path.is_file() and path.stat().st_size > 1000
        assert path._repr_html_().startswith(("<img", "<video"))
    assert "opposite" in str(outputs[-1])
    assert not any(c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code"), (
        "commit the notebook without outputs (they hold megabytes of base64)"
    )


def example_scenes() -> list[tuple[Path, str]]:
    """(file, class name) of every TraceScene defined in docs/examples/."""
    found = []
    for path in sorted((DOCS / "examples").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", None) == "TraceScene" for base in node.bases
            ):
                found.append((path, node.name))
    return found


def load_example(path: Path, name: str) -> type:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return getattr(module, name)


def test_there_are_examples() -> None:
    assert example_scenes(), "docs/examples/ holds no TraceScene"


@pytest.mark.parametrize("aspect", ["16:9", "9:16"])
@pytest.mark.parametrize(("path", "name"), example_scenes(), ids=lambda v: getattr(v, "stem", v))
def test_examples_render(path: Path, name: str, aspect: str, tmp_path: Path) -> None:
    from mechviz.visual.settings import example_trace

    scene = load_example(path, name)
    out = mechviz.render(
        scene, example_trace(), format="png", aspect=aspect, output=tmp_path / f"{name}.png"
    )
    from PIL import Image

    with Image.open(out) as image:
        width, height = image.size
        assert (width > height) == (aspect == "16:9")
        # Not an empty frame: a good share of pixels differ from the background's.
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        assert (np.abs(pixels.astype(int) - pixels[0]).sum(axis=1) > 30).mean() > 0.03


def test_example_renders_with_plain_manim(tmp_path: Path) -> None:
    """Copied outside the repository, the example renders with plain `manim` too."""
    import shutil
    import subprocess
    import sys

    path, name = example_scenes()[0]
    mine = shutil.copy(path, tmp_path / "my_scene.py")
    env = dict(os.environ, MECHVIZ_ASPECT="1:1")
    result = subprocess.run(
        [sys.executable, "-m", "manim", "-ql", "-s", "--format", "png", str(mine), name],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pngs = list((tmp_path / "media").rglob(f"{name}*.png"))
    assert pngs, list(tmp_path.rglob("*"))
    from PIL import Image

    with Image.open(pngs[0]) as image:
        assert image.size == (480, 480)


def test_api_page_is_current() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_api", DOCS / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)  # type: ignore[union-attr]
    names = make_api.picture_names()
    assert (DOCS / "api.md").read_text(encoding="utf-8") == make_api.page(names), (
        "docs/api.md is stale: run `make gallery` (or python docs/make_api.py)"
    )
    for name in names:
        assert (DOCS / "api" / f"{name}.png").is_file(), name
    public = set(mechviz.__all__) | set(mechviz.visual.__all__)
    for name in public - {"__version__"}:
        value = getattr(mechviz.visual if name in mechviz.visual.__all__ else mechviz, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_every_public_method_has_a_docstring() -> None:
    import inspect

    missing = []
    for module, names in ((mechviz, mechviz.__all__), (mechviz.visual, mechviz.visual.__all__)):
        for name in names:
            obj = getattr(module, name)
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                func = getattr(member, "__func__", member)
                func = func.fget if isinstance(func, property) else func
                if callable(func) and not (inspect.getdoc(func) or "").strip():
                    missing.append(f"{name}.{attr}")
    assert not missing, missing

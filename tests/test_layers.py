"""The package's imports follow its data flow: no cycles, and no stage imports a later one.

prompt -> model -> trace -> analyses / interventions / learned readouts -> JSON ->
visual blocks and scenes -> render -> CLI and API. Every import inside ``mechviz``
counts, also one made inside a function (it runs the same way, only later);
``if TYPE_CHECKING:`` imports do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Stages in data-flow order; a module may import its own stage and earlier ones.
STAGES = [
    ("base", {"mechviz", "errors", "files"}),
    ("model", {"model"}),
    ("tracing", {"tracing"}),
    ("analyses", {"analyses"}),
    ("interventions", {"interventions"}),
    ("learned", {"learned"}),
    ("visual", {"visual", "scenes", "assets"}),
    ("rendering", {"rendering"}),
    ("interface", {"cli", "api", "__main__"}),
]


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``scenes/`` is ``mechviz.scenes``)."""
    found = {}
    for base, package in ((ROOT / "mechviz", "mechviz"), (ROOT / "scenes", "mechviz.scenes")):
        for path in sorted(base.rglob("*.py")):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``name`` imports, at any depth but ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(n) for part in node.body for n in ast.walk(part)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def stage_of(name: str) -> int:
    """The stage index of a module: by its sub-package (or module) under ``mechviz``."""
    head = name.split(".")[1] if "." in name else "mechviz"
    for i, (_, members) in enumerate(STAGES):
        if head in members:
            return i
    raise AssertionError(f"{name} belongs to no stage: add it to STAGES in {__file__}")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_cycles_are_found() -> None:
    # The checker itself: a made-up cycle through three modules is reported.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_stage_imports_a_later_one() -> None:
    against = [
        f"{name} ({STAGES[stage_of(name)][0]}) imports {dep} ({STAGES[stage_of(dep)][0]})"
        for name, deps in sorted(graph().items())
        for dep in sorted(deps)
        if stage_of(dep) > stage_of(name)
    ]
    assert against == []


def test_every_module_has_a_stage() -> None:
    for name in modules():
        stage_of(name)

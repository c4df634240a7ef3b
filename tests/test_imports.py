"""One concern per module, and layers that only point down: no module of `ncf/`, `container/` or `benchmarks/`
reaches itself through its imports, and none of the library or the container outgrows 400 lines.

The graph is read from the source (`ast`), not by importing, so nothing here needs TensorFlow to run. Every
import counts: one inside a function, since a circle a lazy import hides still ties two modules into one
concern, and one under `if TYPE_CHECKING:`, since a module that names another's types depends on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ncf", "container", "benchmarks")
#: Packages whose modules stay a reader's afternoon: the library and the SageMaker contract.
SIZED = ("ncf", "container")
MAX_LINES = 400


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """`{dotted name: file}` of every Python file under `packages` (a package's `__init__` by its own name)."""
    return {module_name(root, path): path for package in packages for path in sorted((root / package).rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `name` imports anywhere in its body, relative imports resolved.

    `from X import a` names the module `X.a` when there is one, else `X` itself (a name defined in `X`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return (found & known) - {name}


def graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    files = modules(root, packages)
    return {name: imports(name, path, set(files)) for name, path in files.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle `[a, b, ..., a]` through each group of modules that reach each other (Tarjan's strongly
    connected components), shortest first; empty when the imports form layers."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted((_shortest_circle(edges, group) for group in groups), key=len)


def _shortest_circle(edges: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, within the group (breadth first)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(edges[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not a circle")


def test_no_two_modules_import_each_other_directly_or_through_a_circle():
    found = [" -> ".join(circle) for circle in circles(graph(ROOT))]
    assert found == [], "modules that import each other:\n" + "\n".join(found)


def test_no_module_of_the_library_or_the_container_is_over_400_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules(ROOT, SIZED).items()}
    over = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert over == {}, f"modules over {MAX_LINES} lines (split them by concern): {over}"


def test_the_graph_has_the_modules_it_checks():
    edges = graph(ROOT)
    assert {"ncf.training", "ncf.loop", "container.train", "benchmarks.scale"} <= set(edges)
    assert "ncf.history" in edges["ncf.checkpoint"] and "ncf.training" not in edges["ncf.checkpoint"]
    assert "ncf.training" in edges["container.train"]  # a lazy import, inside a function


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("a, b, c, circle", [
    ("from . import b\n", "from .c import x\n", "def f():\n    import pkg.a\n", ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]),
    ("from .b import y\n", "from pkg import a\n", "", ["pkg.a", "pkg.b", "pkg.a"]),
    ("from .sub.d import z\n", "", "", ["pkg.a", "pkg.sub.d", "pkg.a"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n", "import pkg.a as a\n", "",
     ["pkg.a", "pkg.b", "pkg.a"]),
])
def test_a_circle_is_named_module_by_module_however_its_imports_are_spelled(tmp_path, a, b, c, circle):
    root = write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": a, "pkg/b.py": b, "pkg/c.py": c,
                            "pkg/sub/__init__.py": "", "pkg/sub/d.py": "from .. import a\n"})
    assert circles(graph(root, ("pkg",))) == [circle]


def test_layers_that_only_point_down_have_no_circle(tmp_path):
    root = write(tmp_path, {"pkg/__init__.py": "VERSION = 1\n", "pkg/a.py": "from . import VERSION, b\n",
                            "pkg/b.py": "from .c import x\nimport os\n", "pkg/c.py": "import numpy\n"})
    edges = graph(root, ("pkg",))
    assert edges == {"pkg": set(), "pkg.a": {"pkg", "pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert circles(edges) == []

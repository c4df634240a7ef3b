"""`benchmarks/` is a package: each script runs as `python -m benchmarks.NAME` from the repository root, none
edits `sys.path`, and shared parts (the stamp, the server harness) live in modules of their own, so no two
benchmark modules import each other."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")
#: fake_model.py still inserts the repository root into sys.path; its owner removes that line, then this entry.
STILL_EDITS_SYS_PATH = {"fake_model"}


def imported_benchmarks(module: str) -> set[str]:
    """The `benchmarks.X` modules `module` imports anywhere in its body (lazy imports in functions included)."""
    tree = ast.parse((ROOT / "benchmarks" / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmarks."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "benchmarks":
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("benchmarks."))
    return out


def test_no_benchmark_module_reaches_itself_through_its_imports():
    graph = {m: imported_benchmarks(m) & set(MODULES) for m in MODULES}

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return seen

    circles = [m for m in MODULES if m in reaches(m)]
    assert circles == [], {m: graph[m] for m in circles}


def test_every_benchmark_imports_as_part_of_the_package_without_touching_sys_path():
    modules = [m for m in MODULES if m not in STILL_EDITS_SYS_PATH]
    probe = ("import importlib, sys\nbefore = list(sys.path)\n"
             f"for name in {modules!r}:\n    importlib.import_module('benchmarks.' + name)\n"
             "print(sys.path == before)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True"]


def test_a_benchmark_runs_as_a_module_from_the_repository_root():
    out = subprocess.run([sys.executable, "-m", "benchmarks.ab", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--config NAME:KEY=VALUE" in out.stdout

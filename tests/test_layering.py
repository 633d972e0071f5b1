"""The layering contract, read from the source with ``ast`` (no import runs): the core library
(``stnkit`` outside ``stnkit.experiments``) imports nothing of the experiment side, and no module of
``src/stnkit`` imports itself back through a chain of imports (an import cycle), counting the
imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "stnkit"
EXPERIMENTS = "stnkit.experiments"
#: `python -m stnkit` runs the command, which lives on the experiment side: the one allowed crossing.
ENTRY_POINTS = {"stnkit.__main__"}


def _modules() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under ``src/stnkit``."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> set[str]:
    """The ``stnkit`` modules that ``module`` imports (anywhere in its file)."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name` imports pkg
            names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in MODULES else origin for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import stnkit.x.y` where y is an attribute
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE) and name != module:
                found.add(name)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None`` (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_source_tree_is_read():
    assert "stnkit.coords" in GRAPH and "stnkit.experiments.cli" in GRAPH
    assert "stnkit.experiments.train" in GRAPH["stnkit.experiments.cli"]  # `from .train import ...` in functions
    assert "stnkit.experiments.tasks" in GRAPH["stnkit.experiments.train.build"]


CORE = sorted(m for m in MODULES if not m.startswith(EXPERIMENTS) and m not in ENTRY_POINTS)


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_nothing_of_the_experiments(module):
    bad = sorted(m for m in GRAPH[module] if m.startswith(EXPERIMENTS))
    assert not bad, f"{module} (core) imports {', '.join(bad)} (experiment side)"


def test_there_are_no_import_cycles():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_a_cycle_and_a_core_import():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None

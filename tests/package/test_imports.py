"""The package's import graph: no cycle among reslab's modules, and ``import reslab`` works in a
fresh interpreter (this test session has imported much of reslab already, which hides a module
that only imports because another one ran first).

The graph is read from the source with :mod:`ast`, so it holds every import a module can run:
module level and inside functions (the lazy ones), under any condition. An edge goes to the
module an import names: ``import a.b.c`` and ``from a.b import c`` (``c`` a module) to ``a.b.c``,
``from a.b import name`` to ``a.b``. That importing ``a.b.c`` first runs the package ``a.b``'s
``__init__`` is not an edge: a package that imports its own modules would otherwise be a cycle
with each of them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import reslab

PACKAGE_DIR = Path(reslab.__file__).resolve().parent


def _module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) for every module of reslab."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _known(name: str, modules) -> str | None:
    """``name``, or the nearest of its parents, if it is a reslab module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {reslab module it imports: line of the first such import}."""
    modules = _module_files()
    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            else:
                continue
            for target in targets:
                known = _known(target, modules)
                if known is not None and known != name:
                    edges.setdefault(known, node.lineno)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        start = min(group)
        # Shortest way back to the start inside the group: a breadth-first search.
        previous = {start: None}
        frontier = [start]
        while frontier and start not in [o for n in frontier for o in graph[n]]:
            frontier_next = []
            for node in frontier:
                for other in sorted(graph[node]):
                    if other in group and other not in previous:
                        previous[other] = node
                        frontier_next.append(other)
            frontier = frontier_next
        last = next(n for n in frontier if start in graph[n])
        path = [last]
        while previous[path[-1]] is not None:
            path.append(previous[path[-1]])
        cycles.append([*reversed(path), start])
    return cycles


def _describe(cycle: list[str], graph) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])]
    return f"{cycle}: " + ", ".join(steps)


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "reslab.models.registry" in graph["reslab.models.unet"]
    # The experiments import the report only inside functions (matplotlib stays unloaded until they draw).
    lazy = [(name, target) for name, edges in graph.items() for target in edges
            if name.startswith("reslab.experiments") and target.startswith("reslab.report")]
    assert lazy


def test_no_import_cycle_among_reslab_modules():
    graph = import_graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles among reslab modules:\n" + "\n".join(_describe(c, graph) for c in cycles)


def test_import_reslab_in_a_fresh_interpreter():
    done = subprocess.run([sys.executable, "-c", "import reslab; print(reslab.__version__)"], capture_output=True,
                          text=True, timeout=300, cwd=PACKAGE_DIR.parent)
    assert done.returncode == 0, done.stderr

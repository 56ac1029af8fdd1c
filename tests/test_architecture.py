"""The shape of the code: no import circles, and a map that names every module.

* No import circles among the project's modules, counting imports inside functions too.
* ``docs/architecture.md`` names every module (the map is the code).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from test_public_imports import PACKAGES, ROOT, imported_module, module_name, python_files

MAP = ROOT / "docs" / "architecture.md"


def import_graph() -> dict[str, set[str]]:
    """Edges between project modules, from every import statement (inside functions too)."""
    modules = {module_name(path): path for path in python_files(*PACKAGES)}
    names = {name for name, _ in modules}
    graph: dict[str, set[str]] = {name: set() for name in names}
    for (current, is_package), path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = imported_module(node, current, is_package)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in names else source
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in names:
                    target = target.rpartition(".")[0]
                if target and target != current:
                    graph[current].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


def test_no_import_circles() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "import circles (imports inside functions count):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_the_cycle_finder_finds_a_circle_closed_inside_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def named_on_the_map(path: Path, text: str) -> bool:
    """The map names a module by its repository path, or by its file name on a line that names
    its package's folder (the tables list a package's files on the package's row)."""
    relative = path.relative_to(ROOT).as_posix()
    if relative in text:
        return True
    folder = path.parent.relative_to(ROOT).as_posix()
    package_spellings = {folder + "/", "/".join(folder.split("/")[1:]) + "/"} - {"/"}
    pattern = re.compile(rf"(?<![\w/.]){re.escape(path.name)}")
    return any(spelling + path.name in text for spelling in package_spellings) or any(
        pattern.search(line) and any(spelling in line for spelling in package_spellings)
        for line in text.splitlines()
    )


def test_the_map_names_every_module() -> None:
    text = MAP.read_text(encoding="utf-8")
    missing = [
        path.relative_to(ROOT).as_posix()
        for path in python_files(*PACKAGES)
        if path.name != "__init__.py" and not named_on_the_map(path, text)
    ]
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_the_map_check_needs_the_file_on_its_packages_row() -> None:
    row = "| `cl_core/cluster/` | `sources.py` (chunk readers), `fit.py` |"
    assert named_on_the_map(ROOT / "cl_core" / "cluster" / "fit.py", row)
    assert named_on_the_map(ROOT / "cl_core" / "cluster" / "fit.py", "`cluster/fit.py`")
    assert not named_on_the_map(ROOT / "cl_core" / "schedule" / "fit.py", row)
    assert not named_on_the_map(ROOT / "cl_core" / "cluster" / "nowhere.py", row)

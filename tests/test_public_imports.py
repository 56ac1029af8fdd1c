"""An underscore name is used only inside its own module (``design.md``, "Interfaces").

No module, test or benchmark imports another module's underscore name or a private module, or
reaches ``module._name`` through an imported name. The AST of every file is walked. A private name
that another module needs is a request for a public one (or for merging the two modules).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cl_core", "flows", "curriculum_learning", "benchmarks", "deployments")
CHECKED = (*PACKAGES, "examples", "tests")


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path) -> tuple[str, bool]:
    """``(dotted name, is a package)`` of the file at ``path`` (relative to ROOT)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported_module(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    """The absolute module named by a ``from ... import`` in module ``current``."""
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


ALLOWED_PRIVATE = {"os._exit"}
"""Underscore names that are the standard library's documented API."""


def private_uses(source: str, current: str = "module", is_package: bool = False) -> list[str]:
    """Every use of another module's underscore name in ``source``, as ``"line: what"``."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    bound: set[str] = set()  # local names bound to imported modules or to names imported from them
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(private(part) for part in alias.name.split(".")):
                    found.append((node.lineno, f"import {alias.name}"))
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            module = imported_module(node, current, is_package)
            if any(private(part) for part in module.split(".")):
                found.append((node.lineno, f"from {module} import ..."))
            for alias in node.names:
                if private(alias.name):
                    found.append((node.lineno, f"from {module} import {alias.name}"))
                bound.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            text = ast.unparse(node)
            if isinstance(root, ast.Name) and root.id in bound and text not in ALLOWED_PRIVATE:
                found.append((node.lineno, text))
    return [f"{line}: {what}" for line, what in sorted(found)]


@pytest.mark.parametrize("folder", CHECKED)
def test_no_module_uses_another_modules_underscore_names(folder: str) -> None:
    violations = []
    for path in python_files(folder):
        current, is_package = module_name(path)
        source = path.read_text(encoding="utf-8")
        violations += [
            f"{path.relative_to(ROOT)}:{use}" for use in private_uses(source, current, is_package)
        ]
    assert not violations, (
        "an underscore name means 'this module only': give it a public name in its package, "
        "or merge the modules:\n" + "\n".join(violations)
    )


def test_the_private_name_checker_finds_each_kind_of_use() -> None:
    source = """
import cl_core.cluster._threads
import cl_core.schedule as schedule
from cl_core import store
from cl_core.artifacts._private import x
from cl_core.cluster import _derive_seed, StoreSource
from ._checks import check
from .fit import _helper
import os

schedule._solve(1)
store._LABEL_FILL
StoreSource._read
os._exit(0)
self_thing = object()
self_thing._ok  # not bound by an import: an object's own business
schedule.build_schedule  # public
name = StoreSource.__name__  # dunder
"""
    found = [use.split(": ", 1)[1] for use in private_uses(source, "cl_core.cluster.stage")]
    assert found == [
        "import cl_core.cluster._threads",
        "from cl_core.artifacts._private import ...",
        "from cl_core.cluster import _derive_seed",
        "from cl_core.cluster._checks import ...",
        "from cl_core.cluster.fit import _helper",
        "schedule._solve",
        "store._LABEL_FILL",
        "StoreSource._read",
    ]


def test_the_prefect_boundary_offers_the_library_vocabularies() -> None:
    """The pydantic models at the Prefect boundary spell the choices as Literal types; they must
    stay the library's own lists (one vocabulary, checked here instead of copied by hand)."""
    import typing

    from cl_core.difficulty import NORMALIZATIONS as DIFFICULTY_METHODS
    from cl_core.embed.plan import PRECISIONS
    from cl_core.store import DTYPES, NORMALIZATIONS
    from cl_core.update import REFIT_POLICIES
    from flows.params import ClusterParams, CurriculumParams, EmbedParams

    def choices(model: typing.Any, field: str) -> set[str]:
        return set(typing.get_args(model.model_fields[field].annotation))

    assert choices(EmbedParams, "dtype") == set(DTYPES)
    assert choices(EmbedParams, "precision") == set(PRECISIONS)
    assert choices(ClusterParams, "normalize") == set(NORMALIZATIONS)
    assert choices(CurriculumParams, "difficulty") == set(DIFFICULTY_METHODS)
    assert choices(ClusterParams, "refit") == set(REFIT_POLICIES)

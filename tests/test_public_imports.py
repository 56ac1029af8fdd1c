"""``flows/`` and ``curriculum_learning/`` use public ``cl_core`` names only.

The AST of every module is walked; a violation is a private name (one leading underscore; dunders
such as ``__version__`` are fine) anywhere in what comes from ``cl_core``:

* ``from cl_core.artifacts._private import x`` (a private module),
* ``from cl_core.cluster import _derive_seed`` (a private name),
* ``import cl_core.cluster._threads`` / ``cl_core.schedule._solve(...)`` /
  ``schedule._solve`` after ``from cl_core import schedule`` (private attribute of a module),
* ``StoreSource._read`` after ``from cl_core.cluster import StoreSource`` (private attribute of an
  imported name).

A private ``cl_core`` name that another package needs is a request for a public one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOT_PACKAGE = "cl_core"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_cl_core(module: str | None) -> bool:
    return module is not None and (module == ROOT_PACKAGE or module.startswith(ROOT_PACKAGE + "."))


def private_uses(source: str, filename: str = "<source>") -> list[str]:
    """Every use of a private ``cl_core`` name in ``source``, as ``"line: text"``."""
    tree = ast.parse(source, filename=filename)
    found: list[tuple[int, str]] = []
    bound: set[str] = set()  # local names bound to cl_core modules or to names imported from them

    def report(node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", 0)
        found.append((line, f"{filename}:{line}: {what}"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _from_cl_core(alias.name):
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    report(node, f"import {alias.name}")
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _from_cl_core(node.module):
            module = node.module or ""
            if any(_private(part) for part in module.split(".")):
                report(node, f"from {module} import ...")
            for alias in node.names:
                if _private(alias.name):
                    report(node, f"from {module} import {alias.name}")
                bound.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                report(node, ast.unparse(node))
    return [text for _, text in sorted(found, key=lambda item: item[0])]


def package_violations(package: str) -> list[str]:
    directory = ROOT / package
    assert directory.is_dir(), f"{directory} is missing"
    violations = []
    for path in sorted(directory.rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        violations += private_uses(path.read_text(encoding="utf-8"), relative)
    return violations


@pytest.mark.parametrize(
    "package",
    ["curriculum_learning", "flows", "deployments", "benchmarks", "examples"],
)
def test_package_uses_public_cl_core_names_only(package: str) -> None:
    violations = package_violations(package)
    assert not violations, (
        f"{package}/ uses private cl_core names (ask for a public one):\n" + "\n".join(violations)
    )


def test_the_checker_finds_each_kind_of_private_use() -> None:
    source = """
import cl_core.cluster._threads
import cl_core.schedule as schedule
from cl_core import store
from cl_core.artifacts._private import x
from cl_core.cluster import _derive_seed, StoreSource
from cl_core.sampler import Curriculum as C
import numpy as np

schedule._solve(1)
store._LABEL_FILL
StoreSource._read
C._cache.clear()
np._private_numpy_thing  # not cl_core: fine
schedule.build_schedule  # public: fine
cl_core_version = C.__name__  # dunder: fine
"""
    found = private_uses(source)
    assert [line.split(": ", 1)[1] for line in found] == [
        "import cl_core.cluster._threads",
        "from cl_core.artifacts._private import ...",
        "from cl_core.cluster import _derive_seed",
        "schedule._solve",
        "store._LABEL_FILL",
        "StoreSource._read",
        "C._cache",
    ]


def test_relative_and_other_packages_imports_are_not_flagged() -> None:
    source = "from ._checks import check_choice\nfrom curriculum_learning._checks import x\n"
    assert private_uses(source) == []


def test_the_prefect_boundary_offers_the_library_vocabularies() -> None:
    """The pydantic models at the Prefect boundary spell the choices as Literal types; they must
    stay the library's own lists (one vocabulary, checked here instead of copied by hand)."""
    import typing

    from cl_core.difficulty import NORMALIZATIONS as DIFFICULTY_METHODS
    from cl_core.embed.plan import PRECISIONS
    from cl_core.store import DTYPES, NORMALIZATIONS
    from flows.params import ClusterParams, CurriculumParams, EmbedParams

    def choices(model: typing.Any, field: str) -> set[str]:
        return set(typing.get_args(model.model_fields[field].annotation))

    assert choices(EmbedParams, "dtype") == set(DTYPES)
    assert choices(EmbedParams, "precision") == set(PRECISIONS)
    assert choices(ClusterParams, "normalize") == set(NORMALIZATIONS)
    assert choices(CurriculumParams, "difficulty") == set(DIFFICULTY_METHODS)

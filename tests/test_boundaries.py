"""Architecture boundaries: cl_core stays pure, flows depend on cl_core and never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_FORBIDDEN = ("prefect", "prefect_dask", "flows", "dask.distributed", "distributed")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _is_forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in CORE_FORBIDDEN)


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "cl_core").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT / "cl_core")),
)
def test_cl_core_module_imports_no_orchestration(path: Path) -> None:
    bad = sorted(m for m in _imported_modules(path) if _is_forbidden(m))
    assert not bad, f"{path.name} imports {bad}; cl_core must stay free of Prefect/dask.distributed"


def test_forbidden_import_detector_catches_violations(tmp_path: Path) -> None:
    offender = tmp_path / "offender.py"
    offender.write_text("import prefect\nfrom dask.distributed import Client\nimport dask.array\n")
    found = {m for m in _imported_modules(offender) if _is_forbidden(m)}
    assert found == {"prefect", "dask.distributed"}


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(result.stdout.split())


@pytest.mark.integration
def test_importing_cl_core_is_cheap() -> None:
    loaded = _modules_loaded_by("import cl_core")
    heavy = {"torch", "prefect", "dask", "sklearn", "zarr", "timm", "matplotlib"} & loaded
    assert not heavy, f"`import cl_core` pulled in {sorted(heavy)}"


@pytest.mark.integration
def test_sampler_imports_only_numpy_and_stdlib() -> None:
    loaded = _modules_loaded_by("import cl_core.sampler")
    heavy = {"torch", "prefect", "dask", "sklearn", "zarr", "timm", "matplotlib", "scipy"}
    assert not (heavy & loaded), f"cl_core.sampler pulled in {sorted(heavy & loaded)}"
    # Stricter: nothing outside numpy, the standard library and cl_core itself (private names
    # such as the interpreter's start-up hooks are left out).
    outside = {
        name.split(".")[0]
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names and not name.startswith("_")
    }
    assert outside == {"cl_core", "numpy"}, f"cl_core.sampler pulled in {sorted(outside)}"
    assert {"cl_core.sampler.curriculum", "cl_core.sampler.draws"} <= loaded


def test_tests_import_required_dependencies_instead_of_skipping() -> None:
    """A broken install must fail the suite, not skip the tests that need the broken package."""
    needle = "importorskip" + "("  # split so that this file does not match itself
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if needle in line
    ]
    assert not offenders, f"pytest.importorskip on a required dependency: {offenders}"

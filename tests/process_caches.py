"""The project's per-process caches, found by what they are: ``tests/conftest.py`` clears them
around every test (:func:`clear_process_caches`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

PROJECT_PACKAGES = ("cl_core", "flows", "curriculum_learning", "benchmarks")


def _in_project(module_name: object) -> bool:
    return isinstance(module_name, str) and module_name.partition(".")[0] in PROJECT_PACKAGES


def _project_modules() -> list[tuple[str, object]]:
    # `dict.copy()` copies without allocating an object per item: listing the items one by one
    # can start the garbage collector, whose finalizers may import (or log) meanwhile.
    return [
        (name, module)
        for name, module in sys.modules.copy().items()
        if name.startswith(PROJECT_PACKAGES) and module is not None and _in_project(name)
    ]


def _find_caches(modules: list[tuple[str, object]]) -> list[tuple[str, Callable[[], object]]]:
    found: dict[str, Callable[[], object]] = {}
    for module_name, module in modules:
        for attr, value in vars(module).copy().items():
            defined_in = getattr(value, "__module__", None)
            if isinstance(value, type) or not callable(value) or not _in_project(defined_in):
                continue
            name = f"{defined_in}.{getattr(value, '__qualname__', attr)}"
            if callable(getattr(value, "cache_clear", None)) and hasattr(value, "cache_info"):
                found[name] = value.cache_clear
            elif attr.startswith("clear_") and "cache" in attr and defined_in == module_name:
                found[name] = value
    return sorted(found.items())


_found: tuple[tuple[int, ...], list[tuple[str, Callable[[], object]]]] = ((), [])


def process_caches() -> list[tuple[str, Callable[[], object]]]:
    """``(name, clear)`` for every per-process cache of the project's imported modules.

    Found by what they are, not by where they live (modules move): every ``functools.lru_cache``
    / ``functools.cache`` function defined in a project module, every module-level function named
    ``clear_*cache*`` defined there (``cl_core.embed.clear_model_cache``,
    ``flows.sweep_sample.clear_sample_cache``), and s3fs's per-process client cache. Modules not imported yet are not
    imported (a test that never loaded torch does not pay for it here). The search (~5 ms) runs
    again only when another project module has been imported.
    """
    global _found
    modules = _project_modules()
    key = tuple(id(module) for _, module in modules)
    if key != _found[0]:
        _found = (key, _find_caches(modules))
    caches = list(_found[1])
    s3fs = sys.modules.get("s3fs")
    if s3fs is not None:
        caches.append(
            ("s3fs.S3FileSystem.clear_instance_cache", s3fs.S3FileSystem.clear_instance_cache)
        )
    return caches


def clear_process_caches() -> list[str]:
    """Clear :func:`process_caches`; the names of the caches cleared."""
    caches = process_caches()
    for _, clear in caches:
        clear()
    return [name for name, _ in caches]

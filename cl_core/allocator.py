"""Memory-allocator set-up for CPU inference (standard library only; no torch import).

With glibc's defaults every allocation above the (dynamic, at most 32 MiB) mmap threshold is a fresh
``mmap`` that is unmapped on ``free``, and the top of the heap is trimmed back to the kernel as soon
as 128 KiB are free. A CNN forward at batch 64 allocates and frees activations of ~100 MB per
layer, so every batch faults every page in again: on a 2-core machine the bare EfficientNet-Lite0
forward spent about as much CPU in the kernel (page faults) as in the model. Raising the mmap and
trim thresholds keeps the freed memory in the process heap for reuse, at the price of a peak RSS
that stays at its high-water mark instead of shrinking between batches.

Two ways to apply it:

- environment variables read by glibc at process start (:func:`recommended_env`); the
  ``cl-curriculum`` launcher (``flows.launcher``) re-executes itself once with them, and every child
  process (DataLoader workers, Dask workers) inherits them;
- :func:`apply_mallopt` for library users who cannot set the environment before Python starts:
  ``mallopt`` through ctypes in the running process (also exports the variables so processes
  started afterwards get them).

Measured on the 2-core build machine (heavily shared, so CPU seconds are the reliable figure;
EfficientNet-Lite0, random weights for the bare forward):

=========================  ===================  ==========================================
set-up                     bare forward 384     ``embed_dataset("digits")`` (1,797 images)
                           user / sys / RSS     user / sys / peak RSS / minor faults
=========================  ===================  ==========================================
system default             24.0 / 21.5 / 2.4 G  118.8 / 101.8 / 6.1 G / 50.3 M
mmap + trim thresholds     23.7 /  0.9 / 2.7 G  116.0 /  20.0 / 9.7 G /  9.9 M
+ ARENA_MAX=1 (default)    22.8 /  0.9 / 2.7 G  149.3 /  20.9 / 7.7 G /  7.8 M
tcmalloc (LD_PRELOAD)      20.8 /  0.7 / 2.5 G  143.6 /   5.7 / 8.0 G /  2.6 M
jemalloc (PyTorch conf.)   20.5 /  0.7 / 2.5 G  129.6 /   5.1 / 7.7 G /  1.7 M
=========================  ===================  ==========================================

``cl-curriculum demo`` (Prefect runs the embedding in a worker thread), wall / user / sys / peak RSS:
system default 520 s / 148 / 105 / 2.5 G and 243 s / 113 / 89 / 2.5 G; mmap + trim thresholds only
228 s / 123 / 70.5 / 2.5 G (a thread arena still mmaps every activation above 64 MiB); with
``MALLOC_ARENA_MAX=1`` too (the default set-up) 121 s / 115 / 4.2 / 3.2 G and 177 s / 124 / 4.2 /
3.3 G (machine load differed between runs; sys time and minor faults, 41 M -> 0.8 M, did not).

The glibc tunables need nothing installed, so they are the default; jemalloc / tcmalloc are the
opt-in when installed (lower peak RSS, less kernel time). ``mallopt`` at start-up measured the
same as the environment variables (bare forward: 18.8 s user, 0.7 s sys).

``CL_CURRICULUM_ALLOCATOR`` selects the set-up: ``glibc`` (default: the tunables), ``tcmalloc`` or
``jemalloc`` (``LD_PRELOAD`` of an installed library: ``apt-get install libtcmalloc-minimal4`` /
``libjemalloc2``), or ``system`` (change nothing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ALLOCATORS",
    "ALLOCATOR_ENV",
    "GLIBC_TUNABLES",
    "REEXEC_MARKER",
    "AllocatorStatus",
    "allocator_status",
    "apply_mallopt",
    "find_preload_library",
    "recommended_env",
]

ALLOCATOR_ENV = "CL_CURRICULUM_ALLOCATOR"
"""Environment variable choosing the set-up (one of :data:`ALLOCATORS`)."""

ALLOCATORS = ("glibc", "tcmalloc", "jemalloc", "system")
"""``glibc``: tunables (default); ``tcmalloc`` / ``jemalloc``: LD_PRELOAD; ``system``: untouched."""

REEXEC_MARKER = "_CL_CURRICULUM_ALLOCATOR_REEXEC"
"""Set in the environment of the re-executed process: the launcher never re-executes twice."""

GLIBC_TUNABLES: dict[str, str] = {
    # Allocations up to ~4 GB come from the heap instead of a fresh mmap per call.
    "MALLOC_MMAP_THRESHOLD_": "4000000000",
    # Freed heap memory is kept for the next batch instead of being trimmed back to the kernel.
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    # One arena: threads (Prefect runs tasks in worker threads) allocate from the main heap too. A
    # thread arena's heaps are at most 64 MiB, so a larger activation allocated in a thread is
    # always a fresh mmap whatever the threshold (the demo kept 70 s of kernel time without it).
    "MALLOC_ARENA_MAX": "1",
}
"""The glibc tunables (legacy ``MALLOC_*_`` names, read by glibc >= 2.0 at start-up).

``MALLOC_TOP_PAD_`` (as the issue measured with 1 GB) is left out: it gave no further speed-up and
raised the peak RSS by ~380 MB on the EfficientNet-Lite0 benchmark.
"""

# jemalloc settings from PyTorch's CPU performance guide: never decay dirty pages back to the OS.
_JEMALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"

_PRELOAD_NAMES = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "tcmalloc_minimal", "tcmalloc"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so.1", "jemalloc"),
}
_INSTALL_HINT = {
    "tcmalloc": "apt-get install libtcmalloc-minimal4 (or conda install gperftools)",
    "jemalloc": "apt-get install libjemalloc2 (or conda install jemalloc)",
}
_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)

# mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_MALLOPT_APPLIED = False


def _is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _choice(choice: str | None, environ: Mapping[str, str]) -> str:
    value = choice if choice is not None else environ.get(ALLOCATOR_ENV, "glibc")
    value = (value or "glibc").strip().lower()
    if value not in ALLOCATORS:
        source = "choice" if choice is not None else ALLOCATOR_ENV
        raise ValueError(
            f"{source}={value!r} is not one of {list(ALLOCATORS)}; unset {ALLOCATOR_ENV} for the "
            f"default (glibc tunables) or set it to 'system' to leave the allocator alone"
        )
    return value


def find_preload_library(name: str) -> str | None:
    """Path of an installed tcmalloc or jemalloc shared library, or None.

    Parameters
    ----------
    name : {"tcmalloc", "jemalloc"}
    """
    if name not in _PRELOAD_NAMES:
        raise ValueError(f"name={name!r} is not one of {sorted(_PRELOAD_NAMES)}")
    for candidate in _PRELOAD_NAMES[name]:
        if candidate.startswith("lib"):
            for directory in (*_LIB_DIRS, os.path.join(sys.prefix, "lib")):
                path = Path(directory) / candidate
                if path.is_file():
                    return str(path)
        else:
            found = ctypes.util.find_library(candidate)
            if found:
                for directory in (*_LIB_DIRS, os.path.join(sys.prefix, "lib")):
                    path = Path(directory) / found
                    if path.is_file():
                        return str(path)
    return None


def recommended_env(
    choice: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment variables to add so that a new process starts with the allocator set-up.

    Variables the user already set are respected (never overridden) and not returned; an empty
    dict means nothing is missing (or ``system`` was chosen, or the platform is not glibc Linux).

    Parameters
    ----------
    choice : str, optional
        One of :data:`ALLOCATORS`; read from ``CL_CURRICULUM_ALLOCATOR`` (default ``glibc``) when None.
    environ : mapping, optional
        The environment to complete; ``os.environ`` when None.

    Raises
    ------
    ValueError
        Unknown choice, or ``tcmalloc`` / ``jemalloc`` chosen but not installed (the message names
        the package to install).
    """
    env = os.environ if environ is None else environ
    chosen = _choice(choice, env)
    if chosen == "system" or not sys.platform.startswith("linux"):
        return {}
    if chosen == "glibc":
        if not _is_glibc():
            return {}
        return {key: value for key, value in GLIBC_TUNABLES.items() if key not in env}
    library = find_preload_library(chosen)
    if library is None:
        raise ValueError(
            f"{ALLOCATOR_ENV}={chosen!r} but no {chosen} library is installed; "
            f"{_INSTALL_HINT[chosen]}, or unset {ALLOCATOR_ENV} for the glibc tunables"
        )
    extra: dict[str, str] = {}
    preload = env.get("LD_PRELOAD", "")
    if library not in preload.replace(":", " ").split():
        extra["LD_PRELOAD"] = f"{library} {preload}".strip() if preload else library
    if chosen == "jemalloc" and "MALLOC_CONF" not in env:
        extra["MALLOC_CONF"] = _JEMALLOC_CONF
    return extra


def apply_mallopt(*, export: bool = True) -> bool:
    """Apply the glibc tunables to the running process with ``mallopt`` (ctypes).

    For library users whose process was not started with :func:`recommended_env`; call it early,
    before large tensors are allocated. The launcher does not need it.

    Parameters
    ----------
    export : bool
        Also put :data:`GLIBC_TUNABLES` into ``os.environ`` (without overriding user values) so
        processes started afterwards (spawn / forkserver DataLoader workers) start with them.

    Returns
    -------
    bool
        True when both mallopt calls succeeded; False on non-glibc platforms, when
        ``CL_CURRICULUM_ALLOCATOR`` is ``system`` (or a preload allocator), or when glibc refused.
    """
    global _MALLOPT_APPLIED
    if _choice(None, os.environ) != "glibc" or not _is_glibc():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt takes an int: 2**31 - 1 is the largest value (the env variables allow more).
    largest = 2**31 - 1
    mmap_value = min(int(GLIBC_TUNABLES["MALLOC_MMAP_THRESHOLD_"]), largest)
    trim_value = min(int(GLIBC_TUNABLES["MALLOC_TRIM_THRESHOLD_"]), largest)
    arena_value = int(GLIBC_TUNABLES["MALLOC_ARENA_MAX"])
    # Threads that already allocated keep their arena; threads started afterwards share the main one.
    ok = (
        bool(mallopt(_M_MMAP_THRESHOLD, mmap_value))
        and bool(mallopt(_M_TRIM_THRESHOLD, trim_value))
        and bool(mallopt(_M_ARENA_MAX, arena_value))
    )
    if ok:
        _MALLOPT_APPLIED = True
        if export:
            for key, value in GLIBC_TUNABLES.items():
                os.environ.setdefault(key, value)
    return ok


@dataclass(frozen=True)
class AllocatorStatus:
    """What allocator set-up the current process runs with.

    Attributes
    ----------
    choice : str
        The requested set-up (``CL_CURRICULUM_ALLOCATOR``, default ``glibc``).
    active : bool
        True when the requested set-up is in effect in this process (tunables in the start-up
        environment or applied with mallopt; the preload library mapped; ``system`` always).
    mechanism : str
        ``"env"`` (tunables from the environment), ``"mallopt"``, ``"preload"``, ``"none"``.
    env : dict of str to str
        The allocator variables present in ``os.environ``.
    preloaded : str or None
        Path of a tcmalloc / jemalloc library mapped into the process, if any.
    reexecuted : bool
        True when the launcher re-executed this process to apply the set-up.
    """

    choice: str
    active: bool
    mechanism: str
    env: dict[str, str] = field(default_factory=dict)
    preloaded: str | None = None
    reexecuted: bool = False

    def __post_init__(self) -> None:
        if self.choice not in ALLOCATORS:
            raise ValueError(f"choice={self.choice!r} is not one of {list(ALLOCATORS)}")
        if self.mechanism not in ("env", "mallopt", "preload", "none"):
            raise ValueError(f"mechanism={self.mechanism!r} is not env, mallopt, preload or none")

    def describe(self) -> str:
        """One line for logs and run summaries."""
        if self.choice == "system":
            return "allocator: system default (CL_CURRICULUM_ALLOCATOR=system)"
        state = "active" if self.active else "NOT active"
        detail = self.preloaded or ", ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        return f"allocator: {self.choice} {state} via {self.mechanism} ({detail or 'no settings'})"


def _mapped_preload() -> str | None:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        name = os.path.basename(path)
        if name.startswith(("libtcmalloc", "libjemalloc")):
            return path
    return None


def allocator_status(environ: Mapping[str, str] | None = None) -> AllocatorStatus:
    """The allocator set-up of the current process (see :class:`AllocatorStatus`).

    Parameters
    ----------
    environ : mapping, optional
        Environment to inspect; ``os.environ`` when None.
    """
    env = os.environ if environ is None else environ
    try:
        chosen = _choice(None, env)
    except ValueError:
        chosen = "glibc"
    keys = (*GLIBC_TUNABLES, "LD_PRELOAD", "MALLOC_CONF", "MALLOC_TOP_PAD_")
    present = {key: env[key] for key in keys if key in env}
    preloaded = _mapped_preload()
    reexecuted = env.get(REEXEC_MARKER) == "1"
    if chosen == "system":
        return AllocatorStatus(chosen, True, "none", present, preloaded, reexecuted)
    if chosen in ("tcmalloc", "jemalloc"):
        active = preloaded is not None and chosen in os.path.basename(preloaded)
        return AllocatorStatus(
            chosen, active, "preload" if active else "none", present, preloaded, reexecuted
        )
    if _MALLOPT_APPLIED:
        return AllocatorStatus(chosen, True, "mallopt", present, preloaded, reexecuted)
    active = _is_glibc() and all(key in env for key in GLIBC_TUNABLES)
    return AllocatorStatus(
        chosen, active, "env" if active else "none", present, preloaded, reexecuted
    )

# The two commands a new machine needs: `make demo` and `make test` (both create .venv on demand).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

# The lock: the exact versions the suite passed with. Every install here is held to it, the
# packages (-c) and the build backend of the editable install (--build-constraint), so a new
# release of a dependency cannot change what a fresh `make test` runs. pyproject.toml keeps the
# ranges a user's `pip install` needs. `make lock` refreshes it on purpose; `CONSTRAINTS=`
# (empty) installs from the ranges alone.
CONSTRAINTS ?= requirements/constraints.txt
LOCKED := $(if $(CONSTRAINTS),-c $(CONSTRAINTS) --build-constraint $(CONSTRAINTS))
LOCK_HINT := echo "make: the install failed; $(CONSTRAINTS) pins what was tested on the Python and \
platform its header names. Another Python: make lock (a lock for it) or CONSTRAINTS= (ranges only)" >&2

.PHONY: demo test test-fast test-all lint format bench install install-dev lock clean

# glibc malloc tunables (flows/allocator.py, the values' one home): pytest and the benchmarks start
# under `python -m flows.allocator`, which sets them and execs the command (CPU inference was mostly
# kernel time without them); `cl-curriculum` applies them itself. Opt out:
# CL_CURRICULUM_ALLOCATOR=system.
TUNED := $(PY) -m flows.allocator

$(PY):
	$(PYTHON) -m venv $(VENV)

# Markers make re-runs instant; they are rebuilt when pyproject.toml or the lock changes. pip
# itself comes from the lock first (an older pip lacks --build-constraint).
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) --upgrade pip
	$(PIP) install -q $(LOCKED) -e . || { $(LOCK_HINT); exit 1; }
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) --upgrade pip
	$(PIP) install -q $(LOCKED) -e ".[dev]" || { $(LOCK_HINT); exit 1; }
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/cl-curriculum demo

# Everything but `slow` (CI: .ci/run) on pytest-xdist workers, one more than the cores (at most 8):
# with one worker a core the cores sat idle a third of the time, while workers waited on servers
# and child processes to start, and a spare worker fills it (2 cores: 1,025 s with 2, 766 s with 3);
# `worksteal` hands a finished worker the queue of a busy one. test-fast (no processes, servers or
# Dask clusters) is CPU-bound: one worker a core.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; n = len(os.sched_getaffinity(0)) \
	if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1; print(min(n + 1, 8))")
test: $(VENV)/.installed-dev
	$(TUNED) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: $(VENV)/.installed-dev
	$(TUNED) $(PY) -m pytest -n auto -m "not integration and not slow"

test-all: $(VENV)/.installed-dev
	$(TUNED) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal -m "slow or not slow"

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed-dev
	$(TUNED) $(PY) -m benchmarks

# Refresh the lock on purpose: pip resolves pyproject's ranges (all extras) to their newest
# releases in a fresh throwaway venv, and `pip freeze --all` records every package of it, pip and
# setuptools included. Then run `make test` (it reinstalls from the new lock) and commit the lock.
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip setuptools; \
	"$$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"; \
	mkdir -p $(dir $(CONSTRAINTS)); \
	{ echo "# The tested versions: make installs with pip install -c (and --build-constraint) this file."; \
	  echo "# Refreshed by make lock (pip freeze --all --exclude-editable of a fresh venv with .[dev]), not by hand."; \
	  "$$tmp/venv/bin/python" -c 'import platform, sys; print(f"# Python {platform.python_version()}, {sys.platform} {platform.machine()}")'; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable --disable-pip-version-check; \
	} > "$$tmp/constraints.txt"; \
	mv "$$tmp/constraints.txt" $(CONSTRAINTS); \
	echo "$(CONSTRAINTS): $$(grep -c '==' $(CONSTRAINTS)) pinned packages"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info

# The two commands a new machine needs: `make demo` and `make test` (both create .venv on demand).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test test-all lint format bench install install-dev clean

# glibc malloc tunables (cl_core/allocator.py, issue 10): keep freed activations in the heap
# instead of unmapping and page-faulting them in again on every batch (CPU inference was mostly
# kernel time). Exported to every recipe and so to pytest, the demo, benchmarks and their worker
# processes; values already in the environment win. Opt out: CL_CURRICULUM_ALLOCATOR=system.
ifeq ($(filter-out glibc,$(CL_CURRICULUM_ALLOCATOR)),)
export MALLOC_MMAP_THRESHOLD_ ?= 4000000000
export MALLOC_TRIM_THRESHOLD_ ?= 4000000000
export MALLOC_ARENA_MAX ?= 1
endif

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Markers make re-runs instant; they are rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/cl-curriculum demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest

test-all: $(VENV)/.installed-dev
	$(PY) -m pytest -m "slow or not slow"

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed-dev
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info

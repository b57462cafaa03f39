# Quick start: `make demo` (install, build every algebra, run the comparison) and `make test` (which also builds
# the wheel and installs it into a fresh venv: tests/test_wheel.py).  `make wheel` writes dist/algebranets-*.whl.
# `make study`: every algebra at 3 widths x 3 seeds on the demo's data (about an hour on 2 cores, resumable).
# `make pareto`: quality against batch-1 decoding speed, byte LMs at 3 sizes per algebra (~56 min on 2 cores, resumable).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install build test demo study pareto wheel clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,demo]"

build: install
	$(PY) -m codegen build

test: build
	$(PY) -m pytest -q

demo: build
	$(PY) -m examples.compare

study: build
	$(PY) -m examples.study

pareto: build
	$(PY) -m examples.pareto

wheel: install
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

clean:
	rm -rf generated/*/ generated/manifest.json .pytest_cache build dist *.egg-info

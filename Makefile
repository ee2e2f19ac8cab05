# Every target sets itself up: a virtual environment in .venv and Azurite from npm.
# `make demo` runs the product on this machine; `make test` runs the whole test suite.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test bench lint sandbox clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(PY) cli.py demo

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(PY_STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench: setup $(BENCH_STAMP)
	$(PY) -m bench

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

sandbox: setup
	$(PY) cli.py sandbox

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache

# The README's commands. Each target installs what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# torch first, through a variable: a bare `torch` requirement pulls a multi-GB CUDA build.
# On a GPU machine: make TORCH=torch report
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.terrain-installed
PYTEST_ARGS ?=

.PHONY: install report test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The property suite on the default models of models.yaml; writes reports/.
report: install
	$(BIN)/pytest properties -n auto $(PYTEST_ARGS)

# Self-tests of the harness and the property suite; non-zero on any failure.
test: install
	$(BIN)/pytest -n auto $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/simplex_cv.py

clean:
	rm -rf $(VENV) reports/index.html reports/findings.json reports/assets

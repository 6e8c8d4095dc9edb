# Common commands. `make sweep` and `make test` each set up .venv first (see README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup sweep test lint format bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a looser requirement would pull gigabytes of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

sweep: setup
	$(BIN)/pareto-bench sweep sweeps/tiny.yaml

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check pareto_bench tests && $(BIN)/ruff format --check pareto_bench tests

format: setup
	$(BIN)/ruff check --fix pareto_bench tests && $(BIN)/ruff format pareto_bench tests

bench: setup
	$(BIN)/pareto-bench bench decode --json
	$(BIN)/pareto-bench bench score --json
	$(BIN)/pareto-bench bench sweep --json

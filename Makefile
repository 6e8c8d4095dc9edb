# Common commands. `make sweep` and `make test` each set up .venv first (see README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact versions CI last passed with, hash-checked; `make lock` refreshes it.
LOCK := requirements.lock
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.7.0
# uv installs the lock in seconds where pip takes minutes; pip still installs torch, from the
# machine's local CPU wheel, which uv does not look for.
UV_VERSION := 0.13.9
UV := $(BIN)/uv pip install -q --python $(BIN)/python
TORCH := torch==2.13.0
# Both cores (or however many there are); each test is safe to run beside the others. Workers
# steal queued tests from each other, so that a few long tests do not leave one core idle.
PYTEST := pytest -q -n auto --dist worksteal

.PHONY: setup sweep test test-newest test-lower-bounds lock lint format bench

$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	# torch first, pinned and outside the lock: on a CPU machine pip takes the local CPU wheel,
	# where a lock of PyPI's files would pull gigabytes of CUDA wheels.
	$(BIN)/pip install -q --no-deps $(TORCH)
	$(UV) --no-deps --require-hashes -r $(LOCK)
	$(UV) --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

setup: $(STAMP)

sweep: setup
	$(BIN)/pareto-bench sweep sweeps/tiny.yaml

test: setup
	$(BIN)/$(PYTEST)

# The suite against the newest releases that pyproject.toml allows, in a venv of its own: the
# next upstream release that breaks us fails here, by name, and not in a newcomer's first run.
# NEWEST_TESTS selects tests; CI passes -m "not slow" to stay within its time budget.
NEWEST_TESTS ?=
test-newest:
	rm -rf .venv-newest
	$(PY) -m venv .venv-newest
	.venv-newest/bin/pip install -q uv==$(UV_VERSION)
	.venv-newest/bin/pip install -q --no-deps $(TORCH)
	.venv-newest/bin/uv pip install -q --python .venv-newest/bin/python --upgrade -e '.[dev]'
	.venv-newest/bin/pip check
	.venv-newest/bin/pip list --format=freeze > .venv-newest/versions.txt
	.venv-newest/bin/$(PYTEST) $(NEWEST_TESTS)

# The sampler contract against the oldest optuna that pyproject.toml allows (the newest is the
# lock's, or test-newest's).
test-lower-bounds: setup
	rm -rf .lower-bounds
	$(UV) --no-deps --target .lower-bounds "$$($(BIN)/python scripts/lower_bound.py optuna)"
	PYTHONPATH=.lower-bounds $(BIN)/pytest -q -p no:cacheprovider tests/test_samplers.py

# Re-resolve every dependency to its newest allowed release and write the lock with hashes.
lock:
	$(PY) -m venv .venv-lock
	.venv-lock/bin/pip install -q pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)
	.venv-lock/bin/pip-compile -q --upgrade --generate-hashes --reuse-hashes --extra dev \
		--strip-extras --unsafe-package torch --no-emit-index-url --no-emit-find-links \
		-o $(LOCK) pyproject.toml

lint: setup
	$(BIN)/ruff check pareto_bench tests && $(BIN)/ruff format --check pareto_bench tests

format: setup
	$(BIN)/ruff check --fix pareto_bench tests && $(BIN)/ruff format pareto_bench tests

bench: setup
	$(BIN)/pareto-bench bench decode --json
	$(BIN)/pareto-bench bench score --json
	$(BIN)/pareto-bench bench sweep --json

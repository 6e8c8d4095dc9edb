#!/usr/bin/env bash
# Every check that needs a GPU, in one run: the `gpu`-marked tests, then
# `python -m pareto_bench.bench.gpu_check`, which prints one JSON object on stdout (bf16
# decoding tokens/s vs HF generate on an SDAR-1.7B-shaped model, one RL step of 16 x 8 at 1k
# tokens). Progress goes to stderr. It needs torch with CUDA and the project's dependencies
# (transformers >= 5.24); where they are missing, install the project's wheels first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 180 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests >&2 || echo "gpu tests failed" >&2
fi
exec timeout "${GPU_CHECK_TIMEOUT:-420}" "$PY" -m pareto_bench.bench.gpu_check

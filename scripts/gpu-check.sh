#!/usr/bin/env bash
# Every check that needs a GPU, in one run: `python -m pareto_bench.bench.gpu_check`, which
# prints one JSON object on stdout (bf16 decoding tokens/s vs HF generate and vs a bare
# backbone forward on an SDAR-1.7B-shaped model; one RL step of 16 x 8 at 1k tokens, per phase
# its time, model FLOPs, MFU and peak memory; one profiled step), then the `gpu`-marked tests.
# The profile's top kernels and idle gaps, and the JSON, go to $OUT (else a temporary
# directory that the JSON names). Progress and the tests' output go to stderr.
# Both parts stop at 6 minutes together (270 + 90 s), so that a second run fits in a 15-minute
# device lease with the machine's start-up. It needs torch with CUDA and the project's
# dependencies (transformers >= 5.24); where they are missing, install the project's wheels
# first. On an image with torch but an older transformers and no pydantic (as on the H200 lent
# on 2026-11-28), these wheels for its Python were enough: transformers==5.24.0,
# pydantic==2.14.4, pydantic_core==2.50.5, annotated-types, typing-inspection,
# typing_extensions>=4.16 and regex>=2025.10.22 (pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux_2_17_x86_64 ...; pip install --target there).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
timeout "${GPU_CHECK_TIMEOUT:-270}" "$PY" -m pareto_bench.bench.gpu_check
status=$?
if "$PY" -c "import pytest" 2>/dev/null; then
  # Only the files that hold gpu tests: the others import the sweep and report stacks,
  # which a bare GPU image may lack.
  timeout "${GPU_TESTS_TIMEOUT:-90}" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
    $(grep -l "pytest.mark.gpu" tests/test_*.py) >&2 || { echo "gpu tests failed" >&2; status=1; }
fi
exit $status

"""Shared fixtures: the evaluation data beside the repo, and small random models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# The evaluation sets live in ../shared/data beside the checkout (see its README);
# the package never hard-codes this path, only the tests do.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def random_tiny():
    """A randomly initialised tiny model in float64, so that cached/uncached and batched/unbatched
    comparisons are not at the mercy of float32 rounding near the threshold."""
    from pareto_bench.models import build_tiny

    lm = build_tiny(seed=0, hidden_size=64, layers=2)
    lm.model.to(torch.float64)
    return lm

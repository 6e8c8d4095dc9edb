"""Shared fixtures: the evaluation data beside the repo, and small random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist, each worker gets its share of the cores: torch's default of one thread
    per core in every worker would oversubscribe them and slow every test down. Child processes
    (trials, torchrun ranks) inherit the same share through OMP_NUM_THREADS."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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
    from pareto_bench.dllm.models import build_tiny

    lm = build_tiny(seed=0, hidden_size=64, layers=2)
    lm.model.to(torch.float64)
    return lm


# Groups that CI must run: a skip of one of them (missing data, no PostgreSQL, namespaces
# refused) fails the run under CI=true instead of passing quietly. Locally they may skip, and
# the summary names what did not run. Keys are the skip reasons' own words.
REQUIRED_GROUPS = {
    "evaluation data not found": "gold and task tests (../shared/data)",
    "PostgreSQL is not installed": "PostgreSQL workers",
    "psycopg2 is not installed": "PostgreSQL workers",
    "no `postgres` user": "PostgreSQL workers",
    "refuses namespaces": "the namespaced sandbox",
    "no headless Chromium": "the MLflow UI in a browser",
}


def _required_group(report) -> str | None:
    text = str(report.longrepr)
    return next((group for key, group in REQUIRED_GROUPS.items() if key in text), None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and _required_group(report):
        report.outcome = "failed"
        report.longrepr = f"required under CI=true, but skipped: {report.longrepr}"


def pytest_terminal_summary(terminalreporter):
    missed = {_required_group(r) for r in terminalreporter.stats.get("skipped", [])} - {None}
    if missed:
        terminalreporter.write_line(f"did not run (skipped): {', '.join(sorted(missed))}")


@pytest.fixture(scope="session", autouse=True)
def session_plan_cache(tmp_path_factory):
    """Code scoring caches its reference plans (and their run times, which set the sandbox's
    limits) on disk. Each test session gets an empty cache of its own, so no result depends on
    an earlier run; a test about the cache points PARETO_BENCH_CACHE elsewhere itself."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PARETO_BENCH_CACHE", str(tmp_path_factory.mktemp("plan-cache")))
    yield
    patch.undo()

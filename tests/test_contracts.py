"""Every registered implementation of a seam passes its contract (``contracts.py``)."""

from __future__ import annotations

import pytest
from contracts import (
    ExecutorContract,
    ModelFamilyContract,
    TaskContract,
    TrackerContract,
    tracker_uri,
)

from pareto_bench.dllm.families import MODELS
from pareto_bench.sweep.executors import EXECUTORS
from pareto_bench.tasks import TASKS
from pareto_bench.tracking import TRACKERS


class TestEveryTask(TaskContract):
    @pytest.fixture(params=TASKS.names())
    def task_name(self, request) -> str:
        return request.param


class TestEveryTracker(TrackerContract):
    @pytest.fixture(params=TRACKERS.names())
    def tracker(self, request, tmp_path):
        return TRACKERS.get(request.param)(tracker_uri(request.param, tmp_path))


class TestEveryExecutor(ExecutorContract):
    @pytest.fixture(params=EXECUTORS.names())
    def executor_name(self, request) -> str:
        return request.param


class TestEveryModelFamily(ModelFamilyContract):
    @pytest.fixture(params=MODELS.names())
    def family(self, request) -> str:
        return request.param

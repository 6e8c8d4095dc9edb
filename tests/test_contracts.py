"""Every registered implementation of a seam passes its contract (``contracts.py``)."""

from __future__ import annotations

import pytest
from contracts import TaskContract

from pareto_bench.tasks import TASKS


class TestEveryTask(TaskContract):
    @pytest.fixture(params=TASKS.names())
    def task_name(self, request) -> str:
        return request.param

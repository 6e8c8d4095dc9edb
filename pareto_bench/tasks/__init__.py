"""Benchmarks: one module per benchmark family, each registering its tasks (``base.register_task``)."""

from pareto_bench.tasks.base import (
    TASKS,
    Problem,
    SampleFileTask,
    Task,
    TaskDataError,
    Verdict,
    get_task,
    register_task,
)

__all__ = [
    "TASKS",
    "Problem",
    "SampleFileTask",
    "Task",
    "TaskDataError",
    "Verdict",
    "get_task",
    "register_task",
]

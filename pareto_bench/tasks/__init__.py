"""Benchmarks. Each module registers its tasks in ``TASKS``; imports stay lazy."""

from pareto_bench.tasks.base import TASKS, Problem, Task, TaskDataError, Verdict, get_task

TASKS.register("synthetic", "pareto_bench.tasks.synthetic:SyntheticTask")
TASKS.register("synthetic-train", "pareto_bench.tasks.synthetic:SyntheticTrainTask")

__all__ = ["TASKS", "Problem", "Task", "TaskDataError", "Verdict", "get_task"]

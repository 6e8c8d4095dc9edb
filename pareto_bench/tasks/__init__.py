"""Benchmarks. Each module registers its tasks in ``TASKS``; imports stay lazy."""

from pareto_bench.tasks.base import TASKS, Problem, Task, TaskDataError, Verdict, get_task

TASKS.register("synthetic", "pareto_bench.tasks.synthetic:SyntheticTask")
TASKS.register("synthetic-train", "pareto_bench.tasks.synthetic:SyntheticTrainTask")

TASKS.register("gsm8k", "pareto_bench.tasks.gsm8k:GSM8K")
TASKS.register("gsm8k-train", "pareto_bench.tasks.gsm8k:GSM8KTrain")
TASKS.register("math500", "pareto_bench.tasks.math500:MATH500")
TASKS.register("humaneval", "pareto_bench.tasks.humaneval:HumanEval")
TASKS.register("humanevalplus", "pareto_bench.tasks.humaneval:HumanEvalPlus")
TASKS.register("mbpp", "pareto_bench.tasks.mbpp:MBPP")
TASKS.register("mbpp-train", "pareto_bench.tasks.mbpp:MBPPTrain")
TASKS.register("mbpp-sanitized", "pareto_bench.tasks.mbpp:MBPPSanitized")
TASKS.register("mbppplus", "pareto_bench.tasks.mbpp:MBPPPlus")

__all__ = ["TASKS", "Problem", "Task", "TaskDataError", "Verdict", "get_task"]

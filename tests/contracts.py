"""Contract test classes for the seams, in the way Optuna ships them for its plug-ins: a class
of tests that every implementation must pass. ``test_contracts.py`` runs each class on every
registered implementation; a new task, tracker or executor inherits its class by registering.
"""

from __future__ import annotations

import pytest

from pareto_bench.tasks import Task, get_task

# Gold answers that a task's scorer cannot yet judge right, {task: {problem id: cause}}.
KNOWN_GOLD_FAILURES = {
    "mbpp-train": {
        "Mbpp/601": "its tests pass instances of a class the solution defines (Pair); the codec "
        "carries them as opaque values, so the sample cannot be called with them",
    },
}


class TaskContract:
    """What the evaluator, the trainer and the CLI rely on in a benchmark. Subclasses provide
    a ``task_name`` fixture (a registered name)."""

    problems_checked = 2  # code tasks run each reference and sample in the sandbox

    @pytest.fixture
    def task(self, task_name: str) -> Task:
        return get_task(task_name)

    @pytest.fixture
    def problems(self, task: Task, data_dir):
        problems = task.load(data_dir)
        assert problems, f"{task.name}: no problems"
        return problems

    def test_states_the_protocol(self, task: Task, task_name: str) -> None:
        assert isinstance(task, Task)
        assert task.name == task_name
        assert isinstance(task.version, str) and task.version
        assert task.kind in {"math", "code", "synthetic"}
        assert task.higher_is_better is True
        assert isinstance(task.max_new_tokens, int) and task.max_new_tokens > 0

    def test_problems_have_unique_ids_and_prompts(self, task: Task, problems) -> None:
        assert len({p.id for p in problems}) == len(problems)
        for problem in problems[: self.problems_checked]:
            prompt = task.prompt(problem)
            assert isinstance(prompt, str) and prompt.strip()

    def test_gold_scores_right_and_corruption_wrong(self, task: Task, problems) -> None:
        known = KNOWN_GOLD_FAILURES.get(task.name, {})
        chosen = [p for p in problems if p.id not in known][: self.problems_checked]
        gold = task.score(chosen, [p.gold for p in chosen])
        wrong = task.score(chosen, [task.corrupt(p) for p in chosen])
        assert [(v.correct, v.reward) for v in gold] == [(True, 1.0)] * len(chosen)
        assert [(v.correct, v.reward) for v in wrong] == [(False, 0.0)] * len(chosen)

"""The task seam: a benchmark loads its problems, writes prompts and scores responses.

A benchmark is one module of this package: a class that satisfies ``Task`` (most inherit a
family's base: ``MathTask``, ``CodeTask``), decorated with ``@register_task``. ``get_task`` finds
it by its ``name``; nothing else needs editing (``tasks/math500_level5.py`` is an example).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pareto_bench.core.registry import Registry

DATA_DIR_ENV = "PARETO_BENCH_DATA"
MAX_NEW_TOKENS = 512  # the generation budget of a benchmark that does not need another


class TaskDataError(FileNotFoundError):
    """A task's data file is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Problem:
    id: str
    question: str  # the raw problem text that the prompt template wraps
    reference: Any  # gold answer (maths) or test material (code)
    gold: str  # a response that must score as correct (used by `score --gold`)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    correct: bool
    score: float  # 1/0, or the pass rate for code
    detail: str = ""
    answer_correct: bool | None = None
    pass_fraction: float | None = None  # code: the fraction of tests passed (partial credit)

    @property
    def reward(self) -> float:
        """What RL rewards: the fraction of tests passed where there are tests, else the score."""
        return self.score if self.pass_fraction is None else self.pass_fraction


@runtime_checkable
class Task(Protocol):
    """Everything the evaluator, the trainer and the CLI use of a benchmark."""

    name: str
    version: str
    max_new_tokens: int  # generation budget per response

    def load(self, data_dir: Path | None = None) -> list[Problem]: ...

    def prompt(self, problem: Problem) -> str:
        """The user message for one problem (the model adds its chat template)."""
        ...

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[Verdict]: ...

    def corrupt(self, problem: Problem) -> str:
        """A response that must score as wrong (``score --gold`` checks the scorer with it)."""
        ...


@runtime_checkable
class SampleFileTask(Task, Protocol):
    """A code task that also scores EvalPlus-style sample files (``score --samples``)."""

    def program_from_sample(self, problem: Problem, sample: dict[str, Any]) -> str | None:
        """The whole program a sample file's row stands for; None where it holds no code."""
        ...

    def score_programs(
        self, problems: Sequence[Problem], programs: Sequence[str | None]
    ) -> list[Verdict]:
        """Score whole programs, as ``score`` does responses (``None``: a sample without code)."""
        ...


TASKS: Registry[Any] = Registry("task", discover="pareto_bench.tasks")


def register_task(cls: type) -> type:
    """Class decorator: ``get_task(cls.name)`` builds ``cls()``."""
    TASKS.register(cls.name, cls)
    return cls


def get_task(name: str) -> Task:
    """Instantiate a registered task by name."""
    return TASKS.get(name)()


def training_task_name(name: str) -> str:
    """The task RL trains on to improve ``name``: its ``-train`` split when one is registered
    (``gsm8k-train``, ``mbpp-train``, ``synthetic-train``), else ``name`` itself."""
    return f"{name}-train" if f"{name}-train" in TASKS else name


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def require_file(data_dir: Path | None, relative: str, task: str) -> Path:
    """The path of a task's data file, or an error naming the file and the option that sets it."""
    if data_dir is None:
        raise TaskDataError(
            f"task {task!r} needs {relative}: pass --data-dir DIR or set {DATA_DIR_ENV}=DIR "
            f"(a directory holding {relative})"
        )
    path = Path(data_dir) / relative
    if not path.is_file():
        raise TaskDataError(
            f"task {task!r}: {path} not found; pass --data-dir DIR or set {DATA_DIR_ENV}=DIR "
            f"to a directory holding {relative}"
        )
    return path

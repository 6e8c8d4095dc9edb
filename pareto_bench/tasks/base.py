"""The task seam: a benchmark loads its problems, writes prompts and scores responses."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pareto_bench.core.registry import Registry

DATA_DIR_ENV = "PARETO_BENCH_DATA"


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


@runtime_checkable
class Task(Protocol):
    name: str
    version: str
    kind: str  # "math" | "code" | "synthetic"
    higher_is_better: bool

    def load(self, data_dir: Path | None = None) -> list[Problem]: ...

    def prompt(self, problem: Problem) -> str:
        """The user message for one problem (the model adds its chat template)."""
        ...

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[Verdict]: ...


TASKS: Registry[Any] = Registry("task")


def get_task(name: str) -> Task:
    """Instantiate a registered task by name."""
    import pareto_bench.tasks  # noqa: F401  (fills the registry)

    factory = TASKS.get(name)
    return factory()


def training_task_name(name: str) -> str:
    """The task RL trains on to improve ``name``: its ``-train`` split when one is registered
    (``gsm8k-train``, ``mbpp-train``, ``synthetic-train``), else ``name`` itself."""
    import pareto_bench.tasks  # noqa: F401  (fills the registry)

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

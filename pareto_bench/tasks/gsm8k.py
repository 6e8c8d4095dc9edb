"""GSM8K (openai/grade-school-math): grade-school word problems with a numeric answer.

The published JSONL has ``question`` and ``answer``; the answer is a worked solution with
calculator annotations (``<<9*2=18>>``) that ends in ``#### <number>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pareto_bench.tasks.base import (
    Problem,
    TaskDataError,
    register_task,
    require_file,
    resolve_data_dir,
)
from pareto_bench.tasks.math_scoring import MathTask

_ANNOTATION = re.compile(r"<<[^>]*>>")


def gold_answer(solution: str) -> str:
    """The text after ``####``, thousands separators removed (``1,000`` -> ``1000``)."""
    head, sep, tail = solution.rpartition("####")
    if not sep:
        raise ValueError("no '####' final answer")
    return tail.strip().replace(",", "")


def gold_response(solution: str) -> str:
    """The published solution as a model would write it: annotations removed and the
    ``####`` line turned into a boxed answer."""
    steps = _ANNOTATION.sub("", solution.rpartition("####")[0]).strip()
    return f"{steps}\nThe answer is \\boxed{{{gold_answer(solution)}}}."


def load_gsm8k(path: Path, prefix: str) -> list[Problem]:
    problems = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                question, solution = record["question"], record["answer"]
                answer = gold_answer(solution)
            except (ValueError, KeyError, TypeError) as e:
                raise TaskDataError(
                    f"{path}:{lineno}: not a GSM8K record with 'question' and an 'answer' "
                    f"ending in '#### N' ({e}); check --data-dir"
                ) from e
            problems.append(
                Problem(
                    id=f"{prefix}/{len(problems)}",
                    question=question,
                    reference=answer,
                    gold=gold_response(solution),
                    meta={"solution": solution},
                )
            )
    return problems


@register_task
@dataclass
class GSM8K(MathTask):
    name: ClassVar[str] = "gsm8k"
    version: ClassVar[str] = "1"
    split: ClassVar[str] = "test"

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        path = require_file(resolve_data_dir(data_dir), f"gsm8k/{self.split}.jsonl", self.name)
        return load_gsm8k(path, self.name)


@register_task
@dataclass
class GSM8KTrain(GSM8K):
    """The 7473 training problems, for RL."""

    name: ClassVar[str] = "gsm8k-train"
    split: ClassVar[str] = "train"

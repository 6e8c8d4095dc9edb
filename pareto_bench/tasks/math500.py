"""MATH-500: the 500-problem test split of MATH used by PRM800K (openai/prm800k).

Each JSONL record has ``problem``, ``solution`` (ending in a ``\\boxed{}`` answer),
``answer`` (PRM800K's extracted final answer), ``subject``, ``level`` and ``unique_id``.
The prompt is 4-shot by default, as in the paper, with the four Minerva examples that
math-verify ships.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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

_FIELDS = ("problem", "solution", "answer", "unique_id")


def minerva_examples() -> list[tuple[str, str]]:
    """(question, worked solution) for the standard 4-shot MATH prompt. The trailing
    "The final answer is ..." line is dropped: the answer is already boxed."""
    from math_verify.few_shots import MATH_HARD_FEW_SHOTS

    examples = []
    for shot in MATH_HARD_FEW_SHOTS:
        answer = re.sub(r"\n?The final answer is .*$", "", shot["answer"], flags=re.S).strip()
        examples.append((shot["question"].strip(), answer))
    return examples


@register_task
@dataclass
class MATH500(MathTask):
    name: ClassVar[str] = "math500"
    version: ClassVar[str] = "1"

    shots: int = 4
    few_shot_examples: list[tuple[str, str]] = field(default_factory=minerva_examples)

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        path = require_file(resolve_data_dir(data_dir), "math500/test.jsonl", self.name)
        problems = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    missing = [k for k in _FIELDS if not isinstance(record.get(k), str)]
                    if missing:
                        raise KeyError(", ".join(missing))
                except (ValueError, KeyError, AttributeError) as e:
                    raise TaskDataError(
                        f"{path}:{lineno}: not a MATH-500 record (missing or bad field {e}); "
                        "check --data-dir"
                    ) from e
                problems.append(
                    Problem(
                        id=record["unique_id"],
                        question=record["problem"],
                        reference=record["answer"],
                        gold=record["solution"],  # the published solution, ending in \boxed{}
                        meta={"subject": record.get("subject"), "level": record.get("level")},
                    )
                )
        return problems

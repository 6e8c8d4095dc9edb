"""MATH-500's hardest problems: the 134 of level 5, where decoding many tokens per forward
costs the most accuracy. Everything else (prompt, 4-shot examples, scoring) is MATH-500's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pareto_bench.tasks.base import Problem, register_task
from pareto_bench.tasks.math500 import MATH500


@register_task
@dataclass
class MATH500Level5(MATH500):
    name: ClassVar[str] = "math500-level5"
    version: ClassVar[str] = "1"
    level: ClassVar[int] = 5

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        return [p for p in super().load(data_dir) if p.meta.get("level") == self.level]

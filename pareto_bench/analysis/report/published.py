"""Published reference points (paper tables) shipped in ``pareto_bench/data/published.csv``.

Each row carries its citation (paper, arXiv id, table). Task names follow the project's task
registry (``gsm8k``, ``math500``, ``mbpp``, ``humaneval``); ``average`` rows summarise the four.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

DATA_FILE = "published.csv"

# Groups that hold points on an accuracy-vs-TPF plane, in the order plots draw them.
OVERLAY_GROUPS = ("main", "ablation", "reduction")


@dataclass(frozen=True)
class PublishedPoint:
    group: str  # main | ablation | reduction | speed | average
    model: str
    variant: str
    task: str
    accuracy: float | None  # percent
    tpf: float | None
    aup: float | None
    tokens_per_s: float | None
    paper: str
    arxiv: str
    table: str
    note: str
    recipe: str = ""  # the trainer recipe (trainers/<recipe>.yaml) that reproduces this row

    @property
    def label(self) -> str:
        return f"{self.model} ({self.variant})" if self.variant else self.model

    @property
    def citation(self) -> str:
        return f"{self.paper}, arXiv {self.arxiv}, {self.table}"


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


@cache
def _all_points() -> tuple[PublishedPoint, ...]:
    text = resources.files("pareto_bench").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    points = []
    for row in csv.DictReader(io.StringIO(text)):
        points.append(
            PublishedPoint(
                group=row["group"],
                model=row["model"],
                variant=row["variant"],
                task=row["task"],
                accuracy=_number(row["accuracy"]),
                tpf=_number(row["tpf"]),
                aup=_number(row["aup"]),
                tokens_per_s=_number(row["tokens_per_s"]),
                paper=row["paper"],
                arxiv=row["arxiv"],
                table=row["table"],
                note=row["note"],
                recipe=row["recipe"],
            )
        )
    return tuple(points)


def load_published(task: str | None = None, group: str | None = None) -> list[PublishedPoint]:
    """Every published number, optionally only one task's or one table group's."""
    return [
        p
        for p in _all_points()
        if (task is None or p.task == task) and (group is None or p.group == group)
    ]


def overlay_points(task: str, groups: tuple[str, ...] = ("main",)) -> list[PublishedPoint]:
    """Published (TPF, accuracy) points for ``task``, ready to overlay on its frontier plot."""
    return [
        p
        for p in load_published(task)
        if p.group in groups and p.accuracy is not None and p.tpf is not None
    ]

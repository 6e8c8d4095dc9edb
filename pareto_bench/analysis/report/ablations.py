"""The paper's ablation table, reproduced: each recipe of a sweep beside the published row that
the recipe reproduces (``published.csv``'s ``recipe`` column), with the rank order by AUP in
both and whether they agree.

A recipe is a baseline of the sweep (``sweeps/ablations.yaml``). Its accuracy and TPF are at
the operating threshold and its AUP is that of its curve, each as the median and the range
over its seeds. The share of prompt groups the TPF filter dropped comes from the training
logs, so that an order that differs from the paper's can be traced to the filter. Each step of
our order carries the AUP difference to the next recipe with a 95% interval that resamples
seeds, then problems: a step whose interval holds 0 is not resolved by this many seeds.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pareto_bench.analysis.frontier import Interval, compare_replicated, task_curve
from pareto_bench.analysis.report.published import PublishedPoint, load_published
from pareto_bench.analysis.report.summary import SweepSummary
from pareto_bench.analysis.report.sweep_data import SweepData, TrialData
from pareto_bench.core.defaults import OPERATING_THRESHOLD
from pareto_bench.core.records import EvalRecord

PAPER_GROUPS = ("ablation", "reduction")  # the published rows a recipe may reproduce


@dataclass(frozen=True)
class Spread:
    """A median with the range over seeds."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def text(self, digits: int = 1) -> str:
        if not self.values:
            return "n/a"
        middle = f"{self.median:.{digits}f}"
        if len(self.values) == 1:
            return middle
        return f"{middle} ({min(self.values):.{digits}f}-{max(self.values):.{digits}f})"


@dataclass(frozen=True)
class RecipeRow:
    recipe: str
    seeds: int
    accuracy: Spread
    tpf: Spread
    aup: Spread
    filtered: Spread  # mean share of prompt groups the TPF filter dropped per step, per seed
    paper: PublishedPoint | None


@dataclass(frozen=True)
class AblationTable:
    task: str
    y_max: float
    rows: list[RecipeRow]
    ours: list[str]  # recipes with a paper row, best AUP first
    paper: list[str]
    concordant: int  # pairs of recipes in the same order in both
    pairs: int
    steps: dict[str, Interval]  # recipe -> its AUP minus the next one's in our order

    @property
    def unresolved(self) -> list[str]:
        """Steps of our order whose interval holds 0, as "a > b"."""
        return [
            f"{a} > {b}"
            for a, b in itertools.pairwise(self.ours)
            if a in self.steps and not self.steps[a].excludes_zero
        ]

    @property
    def agrees(self) -> bool:
        return self.ours == self.paper

    def verdict(self) -> str:
        if len(self.paper) < 2:
            return (
                f"{self.task}: fewer than two recipes with a published row, so no order to compare."
            )
        order = " > ".join(self.ours)
        noise = (
            f" Within noise (95% CI of the AUP step holds 0): {', '.join(self.unresolved)}."
            if self.unresolved
            else ""
        )
        if self.agrees:
            return f"{self.task}: the order by AUP agrees with the paper's: {order}.{noise}"
        return (
            f"{self.task}: the order by AUP differs from the paper's. Here: {order}; paper: "
            f"{' > '.join(self.paper)} ({self.concordant} of {self.pairs} pairs in the same "
            f"order).{noise}"
        )


def _at(records: Sequence[EvalRecord], operating: float) -> EvalRecord:
    return min(records, key=lambda r: abs(r.threshold - operating))


def _recipe_row(
    trial: TrialData, task: str, operating: float, y_max: float, paper: PublishedPoint | None
) -> RecipeRow:
    curves = [c for c in (task_curve(rs, task) for rs in trial.seed_records()) if c]
    at_op = [_at(c, operating) for c in curves]
    trains = trial.replicate_train.values() if trial.replicate_train else [trial.train]
    filtered = [statistics.fmean(s.filtered_fraction for s in steps) for steps in trains if steps]
    return RecipeRow(
        recipe=trial.record.name,
        seeds=len(curves),
        accuracy=Spread(tuple(r.accuracy for r in at_op)),
        tpf=Spread(tuple(r.tpf for r in at_op)),
        aup=Spread(tuple(trial.seed_aups(task, y_max))),
        filtered=Spread(tuple(100.0 * f for f in filtered)),
        paper=paper,
    )


def ablation_table(
    sweep: SweepData, task: str, y_max: float, n_boot: int = 1000, seed: int = 0
) -> AblationTable:
    """Every completed baseline of ``sweep`` on ``task``, beside its published row."""
    published = {p.recipe: p for p in load_published() if p.group in PAPER_GROUPS and p.recipe}
    operating = (
        sweep.operating_threshold if sweep.operating_threshold is not None else OPERATING_THRESHOLD
    )
    rows = [
        _recipe_row(t, task, operating, y_max, published.get(t.record.name))
        for t in sweep.trials
        if t.is_baseline and t.record.state == "COMPLETE" and t.task_records(task)
    ]
    compared = [r for r in rows if r.paper is not None and r.paper.aup is not None]
    ours = [r.recipe for r in sorted(compared, key=lambda r: -r.aup.median)]
    paper = [r.recipe for r in sorted(compared, key=lambda r: -(r.paper.aup or 0.0))]
    pairs = list(itertools.combinations(paper, 2))
    concordant = sum(ours.index(a) < ours.index(b) for a, b in pairs)
    by_name = {t.record.name: t for t in sweep.trials if t.is_baseline}
    steps = {
        a: compare_replicated(
            by_name[a].seed_records(),
            by_name[b].seed_records(),
            y_max=y_max,
            aggregate=sweep.replicate_aggregate,
            n=n_boot,
            seed=seed,
        )[task].aup_diff
        for a, b in itertools.pairwise(ours)
    }
    return AblationTable(task, y_max, rows, ours, paper, concordant, len(pairs), steps)


def ablation_tables(sweep: SweepData, summary: SweepSummary, seed: int = 0) -> list[AblationTable]:
    """One table per task of the summary, with its ``y_max`` and bootstrap size."""
    return [ablation_table(sweep, t.task, t.y_max, summary.n_boot, seed) for t in summary.tasks]


def ablation_verdict(tables: Sequence[AblationTable]) -> str:
    return " ".join(table.verdict() for table in tables)


def table_rows(table: AblationTable) -> list[list[str]]:
    header = [
        "recipe", "seeds", "accuracy (%)", "TPF", "AUP", "ΔAUP to the next [95% CI]",
        "groups filtered (%)", "paper: acc / TPF / AUP", "rank here", "rank in paper",
    ]  # fmt: skip
    rows = [header]
    for r in table.rows:
        paper = (
            f"{r.paper.accuracy:.1f} / {r.paper.tpf:.2f} / {r.paper.aup:.1f} ({r.paper.variant})"
            if r.paper is not None
            else "-"
        )
        rank_here = table.ours.index(r.recipe) + 1 if r.recipe in table.ours else None
        rank_paper = table.paper.index(r.recipe) + 1 if r.recipe in table.paper else None
        rows.append(
            [
                r.recipe,
                str(r.seeds),
                r.accuracy.text(),
                r.tpf.text(2),
                r.aup.text(),
                str(table.steps[r.recipe]) if r.recipe in table.steps else "-",
                r.filtered.text(),
                paper,
                str(rank_here or "-"),
                str(rank_paper or "-"),
            ]
        )
    return rows

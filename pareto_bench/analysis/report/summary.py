"""The report's findings: the best trial per task and how far it is ahead of the base model.

Everything is computed from the recorded eval points. AUP here is the paper's AUP of each
trial's curve (:func:`pareto_bench.analysis.frontier.records_aup`) with one ``y_max`` per task, the
best accuracy any trial or baseline reached on it, as the paper sets it. Where the best trial
or the baseline was trained with several seeds, the verdict's interval resamples seeds, then
problems (:func:`pareto_bench.analysis.frontier.compare_replicated`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pareto_bench.analysis.frontier import (
    HV_REFERENCE,
    ReplicatedComparison,
    TaskComparison,
    combine,
    compare,
    compare_replicated,
    default_y_max,
    record_points,
)
from pareto_bench.analysis.report.sweep_data import SweepData, TrialData
from pareto_bench.core.records import BASE_MODEL_BASELINE


@dataclass(frozen=True)
class TaskSummary:
    task: str
    y_max: float
    best: TrialData | None  # the completed trial with the highest AUP on this task
    best_aup: float
    base: TrialData | None
    comparison: TaskComparison | None  # best versus base, on pooled records
    replicated: ReplicatedComparison | None  # the same over seeds, where either has several
    verdict: str  # one clause


@dataclass(frozen=True)
class SweepSummary:
    tasks: list[TaskSummary]
    verdict: str  # one sentence
    ref: tuple[float, float]
    n_boot: int
    baseline: str  # the baseline each task's best trial is measured against


def task_y_max(sweep: SweepData, task: str) -> float:
    """``default_y_max`` over every curve of the sweep on ``task``, replicates included."""
    records = [
        r
        for t in sweep.trials
        for records in (t.evals, *t.replicates.values())
        for r in records
        if r.task == task
    ]
    return default_y_max(record_points(records))


def trial_aup(trial: TrialData, task: str, y_max: float, aggregate: str = "median") -> float:
    """The AUP of the trial's curve on ``task``; with seed replicates, the ``aggregate`` of each
    seed's AUP, as the sweep's objective has it."""
    return combine(trial.seed_aups(task, y_max), aggregate)


def _best_trial(sweep: SweepData, task: str, y_max: float) -> tuple[TrialData | None, float]:
    scored = [
        (trial_aup(t, task, y_max, sweep.replicate_aggregate), t)
        for t in sweep.searched
        if t.record.state == "COMPLETE" and t.task_records(task)
    ]
    if not scored:
        return None, float("nan")
    aup, trial = max(scored, key=lambda item: (item[0], -item[1].number))
    return trial, aup


def _against(baseline: str) -> str:
    return "the base model" if baseline == BASE_MODEL_BASELINE else baseline


def _clause(
    summary_task: str,
    best: TrialData | None,
    comparison: TaskComparison | ReplicatedComparison | None,
    baseline: str = BASE_MODEL_BASELINE,
) -> str:
    other = _against(baseline)
    if best is None:
        return f"{summary_task}: no trial completed"
    if comparison is None:
        return f"{summary_task}: {best.label} is best, with no {other} to compare against"
    diff = comparison.aup_diff
    if not diff.available:
        direction = "leads" if diff.estimate >= 0 else "trails"
        return (
            f"{summary_task}: {best.label} {direction} {other} by {abs(diff.estimate):.1f} "
            "AUP (no per-sample results, so no CI)"
        )
    ci = f"AUP {diff.estimate:+.1f}, 95% CI {diff.low:+.1f} to {diff.high:+.1f}"
    if isinstance(comparison, ReplicatedComparison):
        ci = (
            f"{comparison.aggregate} AUP over seeds {diff.estimate:+.1f}, 95% CI "
            f"{diff.low:+.1f} to {diff.high:+.1f}, resampling {comparison.seeds_a} and "
            f"{comparison.seeds_b} seeds, then {comparison.problems} problems"
        )
    if diff.low > 0:
        return f"{summary_task}: {best.label} beats {other} ({ci})"
    if diff.high < 0:
        return f"{summary_task}: even the best trial, {best.label}, falls behind {other} ({ci})"
    return f"{summary_task}: {best.label} is level with {other} within noise ({ci})"


def summarise(
    sweep: SweepData,
    *,
    ref: tuple[float, float] = HV_REFERENCE,
    n_boot: int = 1000,
    seed: int = 0,
    baseline: str = BASE_MODEL_BASELINE,
) -> SweepSummary:
    """Each task's best trial against ``baseline`` (the template's ``compare_to``)."""
    base = sweep.baseline(baseline)
    summaries = []
    for task in sweep.tasks:
        y_max = task_y_max(sweep, task)
        best, best_aup = _best_trial(sweep, task, y_max)
        comparison = replicated = None
        if best is not None and base is not None and base.task_records(task):
            comparison = compare(
                best.task_records(task),
                base.task_records(task),
                ref=ref,
                y_max=y_max,
                n=n_boot,
                seed=seed,
            )[task]
            if len(best.replicates) > 1 or len(base.replicates) > 1:
                replicated = compare_replicated(
                    best.seed_records(),
                    base.seed_records(),
                    y_max=y_max,
                    aggregate=sweep.replicate_aggregate,
                    n=n_boot,
                    seed=seed,
                )[task]
        summaries.append(
            TaskSummary(
                task,
                y_max,
                best,
                best_aup,
                base,
                comparison,
                replicated,
                _clause(task, best, replicated or comparison, baseline),
            )
        )
    if not summaries:
        verdict = "No task was evaluated, so there is nothing to compare yet."
    elif base is None:
        verdict = (
            f"No `{baseline}` baseline was recorded, so the best trials cannot be measured "
            f"against it; " + "; ".join(s.verdict for s in summaries) + "."
        )
    else:
        verdict = (
            f"Best trial per task against {_against(baseline)}: "
            + "; ".join(s.verdict for s in summaries)
            + "."
        )
    return SweepSummary(summaries, verdict, ref, n_boot, baseline)

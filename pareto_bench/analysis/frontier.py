"""Pareto analysis of accuracy-vs-parallelism points.

A point is ``(TPF, accuracy)`` with accuracy in percent (0-100), and both coordinates are
maximised. Every function here is pure and vectorised with numpy; none reads files or knows
about sweeps, so the report, the CLI and the sweep harness can all share them.

Conventions, the same in every function:

- Rows with a NaN in either coordinate are ignored: they are never on a frontier, never
  dominate anything and add nothing to a hypervolume or an AUP.
- ``p`` dominates ``q`` when ``p >= q`` in both coordinates and ``p > q`` in at least one.
  Exact duplicates do not dominate each other, so every copy of a non-dominated point is
  reported. A point that ties another on one coordinate and loses on the other is dominated.
- Confidence intervals come from a bootstrap over *problems*: a replicate redraws the
  evaluated problems with replacement and recomputes every (TPF, accuracy) point from its
  per-sample results, so the points of one curve stay correlated as they really are. Where a
  configuration was trained with several seeds, a replicate first redraws its seeds, then the
  problems (:func:`compare_replicated`), so the interval carries both sources of variance.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pareto_bench.core.defaults import HV_REFERENCE
from pareto_bench.core.records import EvalRecord

__all__ = [
    "AUP_ALPHA",
    "FIXED_Y_MAX",
    "AttainmentSurfaces",
    "Interval",
    "ReplicatedComparison",
    "TaskComparison",
    "aup",
    "aup_method",
    "aup_weight",
    "as_points",
    "attainment_surface",
    "attainment_surfaces",
    "bootstrap_ci",
    "compare",
    "compare_replicated",
    "dominance_matrix",
    "dominates_any",
    "frontier_aup",
    "hierarchical_differences",
    "hypervolume",
    "pareto_front",
    "record_points",
    "combine",
    "default_y_max",
    "records_aup",
    "task_curve",
]

# d3LLM's AUP keeps only points within this many accuracy points of the lowest-TPF point.
AUP_ACCURACY_DROP = 5.0
# d3LLM's AUP weight exponent: how steeply a point below y_max loses weight.
AUP_ALPHA = 3.0
# The y_max of accuracy in percent: a ceiling no curve can pass, so AUPs computed with it are
# comparable across trials and sweeps (the sweep's objective), unlike ``default_y_max``'s.
FIXED_Y_MAX = 100.0

Statistic = Callable[[NDArray[np.float64]], float]


def as_points(points: ArrayLike) -> NDArray[np.float64]:
    """``points`` as a float ``(n, 2)`` array of (TPF, accuracy) rows."""
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(
            f"points must be an (n, 2) array of (TPF, accuracy) pairs; got shape {array.shape}"
        )
    return array


def _rows_without_nan(points: NDArray[np.float64]) -> NDArray[np.intp]:
    return np.flatnonzero(~np.isnan(points).any(axis=1))


def pareto_front(points: ArrayLike) -> NDArray[np.intp]:
    """Indices of the non-dominated points, in ascending TPF order.

    Both coordinates are maximised. NaN rows are skipped. Duplicates of a non-dominated
    point are all returned (in index order), because neither copy dominates the other.
    O(n log n): one lexicographic sort and a running maximum.
    """
    pts = as_points(points)
    keep = _rows_without_nan(pts)
    if keep.size == 0:
        return np.empty(0, dtype=np.intp)
    x, y = pts[keep, 0], pts[keep, 1]
    # Best first: TPF descending, then accuracy descending; duplicates end up adjacent.
    order = np.lexsort((-y, -x))
    xs, ys = x[order], y[order]
    starts = np.ones(xs.size, dtype=bool)
    starts[1:] = (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])
    group = np.cumsum(starts) - 1
    # Every point before a group's first member has TPF >= its TPF, and is a distinct point,
    # so the group is dominated exactly when one of those reaches its accuracy.
    best_before = np.empty_like(ys)
    best_before[0] = -np.inf
    best_before[1:] = np.maximum.accumulate(ys)[:-1]
    first = np.flatnonzero(starts)
    group_kept = best_before[first] < ys[first]
    front = keep[order[group_kept[group]]]
    # Ascending TPF; among duplicates, index order.
    return front[np.lexsort((front, pts[front, 0]))]


def dominance_matrix(points: ArrayLike, others: ArrayLike) -> NDArray[np.bool_]:
    """``M[i, j]`` is true when ``points[i]`` dominates ``others[j]``.

    A pairwise comparison, meant for frontiers (tens to hundreds of points)."""
    p, q = as_points(points), as_points(others)
    ge = (p[:, None, :] >= q[None, :, :]).all(axis=2)
    gt = (p[:, None, :] > q[None, :, :]).any(axis=2)
    return ge & gt


def dominates_any(points: ArrayLike, others: ArrayLike) -> NDArray[np.bool_]:
    """For each row of ``points``, whether it dominates at least one row of ``others``."""
    return dominance_matrix(points, others).any(axis=1)


def hypervolume(points: ArrayLike, ref: ArrayLike) -> float:
    """Area dominated by ``points`` and bounded below by ``ref`` = (TPF, accuracy).

    Points that do not strictly beat ``ref`` in both coordinates add nothing; an empty or
    all-NaN set has hypervolume 0.
    """
    ref_x, ref_y = (float(v) for v in np.asarray(ref, dtype=float).reshape(2))
    pts = as_points(points)
    pts = pts[_rows_without_nan(pts)]
    pts = pts[(pts[:, 0] > ref_x) & (pts[:, 1] > ref_y)]
    if pts.size == 0:
        return 0.0
    front = pts[pareto_front(pts)]
    # Along the front TPF rises as accuracy falls: slice the area into vertical strips.
    widths = np.diff(front[:, 0], prepend=ref_x)
    return float(np.sum(widths * (front[:, 1] - ref_y)))


def aup_weight(accuracy: ArrayLike, y_max: float, alpha: float = AUP_ALPHA) -> NDArray[np.float64]:
    """d3LLM's weight ``W(y) = min(exp(-alpha * (1 - y / y_max)), 1)``."""
    y = np.asarray(accuracy, dtype=float)
    return np.minimum(np.exp(-alpha * (1.0 - y / y_max)), 1.0)


def aup(points: ArrayLike, y_max: float, alpha: float = AUP_ALPHA) -> float:
    """Accuracy Under Parallelism (d3LLM, arXiv 2601.07568), accuracy in percent.

    The points are sorted by TPF; those more than 5 accuracy points below the lowest-TPF
    point's accuracy ``y_1`` are dropped; then
    ``AUP = rho_1*y_1 + sum_i (rho_i - rho_{i-1}) * (y_i*W(y_i) + y_{i-1}*W(y_{i-1})) / 2``.
    A single point gives ``rho * y``. ``y_max`` is the best accuracy of any method on the
    task. Where several points share the lowest TPF, ``y_1`` is the best of them (the
    definition assumes distinct TPFs; equal TPFs elsewhere add zero-width trapezoids).
    NaN rows are ignored; an empty set scores 0.
    """
    if not y_max > 0:
        raise ValueError(f"aup: y_max must be a positive accuracy in percent; got {y_max}")
    pts = as_points(points)
    pts = pts[_rows_without_nan(pts)]
    if pts.size == 0:
        return 0.0
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]
    rho, y = pts[:, 0], pts[:, 1]
    kept = y >= y[0] - AUP_ACCURACY_DROP
    rho, y = rho[kept], y[kept]
    weighted = y * aup_weight(y, y_max, alpha)
    trapezoids = np.diff(rho) * (weighted[1:] + weighted[:-1]) / 2.0
    return float(rho[0] * y[0] + trapezoids.sum())


def frontier_aup(points: ArrayLike, y_max: float, alpha: float = AUP_ALPHA) -> float:
    """AUP of the non-dominated points: the score of the best curve a set of points attains.

    For one checkpoint whose accuracy falls as TPF rises this equals :func:`aup`; for a
    sweep's points (many curves mixed) it scores their common frontier.
    """
    pts = as_points(points)
    return aup(pts[pareto_front(pts)], y_max, alpha)


# --------------------------------------------------------------------------- attainment


@dataclass(frozen=True)
class AttainmentSurfaces:
    """Empirical attainment surfaces of several runs (one point set per seed).

    Each surface is an ``(k, 2)`` array of staircase corners in ascending TPF order:
    ``best`` is attained by at least one run, ``median`` by at least half of them and
    ``worst`` by every run.
    """

    best: NDArray[np.float64]
    median: NDArray[np.float64]
    worst: NDArray[np.float64]
    num_sets: int


def _eaf_levels(point_sets: Sequence[ArrayLike]) -> tuple[NDArray[np.float64], int, int]:
    """All attainment levels as rows (TPF, accuracy, number of sets attaining), via moocore."""
    import moocore

    cleaned = [as_points(s) for s in point_sets]
    cleaned = [s[_rows_without_nan(s)] for s in cleaned]
    nonempty = [s for s in cleaned if len(s)]
    if not nonempty:
        return np.empty((0, 3)), len(cleaned), 0
    stacked = np.concatenate(nonempty)
    set_ids = np.repeat(np.arange(1, len(nonempty) + 1), [len(s) for s in nonempty])
    # moocore minimises: negate on the way in and out.
    levels = moocore.eaf(-stacked, set_ids)
    out = np.column_stack([-levels[:, :2], np.rint(levels[:, 2] * len(nonempty) / 100.0)])
    return out, len(cleaned), len(nonempty)


def attainment_surface(point_sets: Sequence[ArrayLike], k: int) -> NDArray[np.float64]:
    """Corners of the region attained by at least ``k`` of the point sets (ascending TPF)."""
    return _surface_at(_eaf_levels(point_sets)[0], k)


def _surface_at(levels: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    surface = levels[levels[:, 2] == k, :2] if len(levels) else np.empty((0, 2))
    return surface[np.argsort(surface[:, 0], kind="stable")]


def attainment_surfaces(point_sets: Sequence[ArrayLike]) -> AttainmentSurfaces:
    """Best, median and worst attainment surfaces over runs (one point set per seed).

    The median is attained by ``ceil(n / 2)`` of ``n`` sets. An empty set attains nothing,
    so with one the worst surface is empty.
    """
    levels, n, _ = _eaf_levels(point_sets)
    if n == 0:
        empty = np.empty((0, 2))
        return AttainmentSurfaces(empty, empty, empty, 0)
    return AttainmentSurfaces(
        best=_surface_at(levels, 1),
        median=_surface_at(levels, math.ceil(n / 2)),
        worst=_surface_at(levels, n),
        num_sets=n,
    )


# ---------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval.

    ``low`` and ``high`` are NaN (and ``n_resamples`` 0) where no per-sample results were
    recorded to resample."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int

    @property
    def available(self) -> bool:
        return self.n_resamples > 0 and not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def excludes_zero(self) -> bool:
        return self.available and (self.low > 0 or self.high < 0)

    def __str__(self) -> str:
        if not self.available:
            return f"{self.estimate:.1f} (no CI)"
        return f"{self.estimate:.1f} [{self.low:.1f}, {self.high:.1f}]"


@dataclass(frozen=True)
class _ProblemTable:
    """Per-problem sums of one set of records, aligned on shared problem ids: (records, problems)."""

    score: NDArray[np.float64]
    count: NDArray[np.float64]
    tokens: NDArray[np.float64]
    forwards: NDArray[np.float64]

    def points(self, weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """(replicates, records, 2) points for problem weights of shape (replicates, problems)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            accuracy = 100.0 * (weights @ self.score.T) / (weights @ self.count.T)
            tpf = (weights @ self.tokens.T) / (weights @ self.forwards.T)
        return np.stack([tpf, accuracy], axis=-1)


def _problem_ids(record: EvalRecord) -> set[str]:
    if not record.samples:
        raise ValueError(
            f"record task={record.task!r} threshold={record.threshold} has no per-sample "
            "results; a bootstrap over problems needs EvalRecord.samples"
        )
    return {s.problem_id for s in record.samples}


def _shared_problems(records: Sequence[EvalRecord]) -> list[str]:
    shared = set.intersection(*(_problem_ids(r) for r in records))
    if not shared:
        raise ValueError(
            "the records share no problem_id, so problems cannot be resampled together"
        )
    return sorted(shared)


def _problem_table(records: Sequence[EvalRecord], problems: Sequence[str]) -> _ProblemTable:
    column = {pid: j for j, pid in enumerate(problems)}
    shape = (len(records), len(problems))
    table = {name: np.zeros(shape) for name in ("score", "count", "tokens", "forwards")}
    for i, record in enumerate(records):
        # Several samples of one problem (pass@k style) are summed into its column.
        for sample in record.samples:
            j = column.get(sample.problem_id)
            if j is None:
                continue
            table["score"][i, j] += sample.score
            table["count"][i, j] += 1
            table["tokens"][i, j] += sample.num_tokens
            table["forwards"][i, j] += sample.num_forwards
    return _ProblemTable(**table)


def _resample_weights(rng: np.random.Generator, n: int, num_problems: int) -> NDArray[np.float64]:
    """How often each problem is drawn in each of ``n`` replicates: (n, problems)."""
    draws = rng.integers(0, num_problems, size=(n, num_problems))
    flat = (np.arange(n)[:, None] * num_problems + draws).ravel()
    return np.bincount(flat, minlength=n * num_problems).reshape(n, num_problems).astype(float)


def _interval(estimate: float, replicates: NDArray[np.float64], confidence: float) -> Interval:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return Interval(estimate, math.nan, math.nan, confidence, 0)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high), confidence, int(finite.size))


def _check_bootstrap_args(n: int, confidence: float) -> None:
    if n < 1:
        raise ValueError(f"bootstrap: n must be at least 1; got {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bootstrap: confidence must lie in (0, 1); got {confidence}")


def bootstrap_ci(
    records: Sequence[EvalRecord],
    statistic: Statistic,
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Bootstrap CI of ``statistic(points)`` by resampling problems.

    ``records`` are the points of one curve (one task, for example every threshold of a
    checkpoint). Their per-sample results are matched by ``problem_id`` (problems missing
    from any record are left out), a replicate draws problems with replacement, and each
    record's accuracy and aggregate TPF (``sum(tokens) / sum(forwards)``) are recomputed.
    ``statistic`` receives an ``(len(records), 2)`` array of (TPF, accuracy) in record order.
    The estimate is the statistic on all matched problems.
    """
    _check_bootstrap_args(n, confidence)
    if not records:
        raise ValueError("bootstrap_ci: no records given")
    table = _problem_table(records, _shared_problems(records))
    num_problems = table.score.shape[1]
    estimate = statistic(table.points(np.ones((1, num_problems)))[0])
    points = table.points(_resample_weights(np.random.default_rng(seed), n, num_problems))
    replicates = np.array([statistic(p) for p in points], dtype=float)
    return _interval(estimate, replicates, confidence)


# ------------------------------------------------------------------------------ compare


@dataclass(frozen=True)
class TaskComparison:
    """How far curve/sweep A is ahead of B on one task (positive differences favour A)."""

    task: str
    hypervolume_a: float
    hypervolume_b: float
    hypervolume_diff: Interval
    aup_a: float
    aup_b: float
    aup_diff: Interval
    aup_method_a: str  # "curve" (the paper's AUP) or "frontier"; see records_aup
    aup_method_b: str
    dominating_share: float  # share of A's frontier points that dominate a point of B's frontier
    covered_share: float  # share of B's frontier points dominated by a point of A's frontier
    frontier_a: list[tuple[float, float]]
    frontier_b: list[tuple[float, float]]
    y_max: float
    ref: tuple[float, float]
    paired: bool  # A and B share problems, resampled together (a paired bootstrap)
    problems_a: int  # problems resampled per replicate (0: no per-sample results)
    problems_b: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_points(records: Sequence[EvalRecord]) -> NDArray[np.float64]:
    """(TPF, accuracy) rows of ``records``, in order."""
    return as_points([(r.tpf, r.accuracy) for r in records])


def aup_method(records: Sequence[EvalRecord]) -> str:
    """``"curve"`` when the records are one curve (each threshold once, as for one
    checkpoint on one task), else ``"frontier"`` (several curves mixed, as for a sweep)."""
    thresholds = [r.threshold for r in records]
    return "curve" if len(thresholds) == len(set(thresholds)) else "frontier"


def records_aup(records: Sequence[EvalRecord], y_max: float, alpha: float = AUP_ALPHA) -> float:
    """AUP of one task's records: the paper's AUP over all points of a single curve, or the
    AUP of the non-dominated points where several curves are mixed (:func:`aup_method`)."""
    return _aup_for(records, y_max, alpha)(record_points(records))


def _aup_for(records: Sequence[EvalRecord], y_max: float, alpha: float) -> Statistic:
    score = aup if aup_method(records) == "curve" else frontier_aup
    return lambda points: score(points, y_max, alpha)


def _by_task(records: Sequence[EvalRecord]) -> dict[str, list[EvalRecord]]:
    grouped: dict[str, list[EvalRecord]] = {}
    for record in records:
        grouped.setdefault(record.task, []).append(record)
    return grouped


def _share(flags: NDArray[np.bool_]) -> float:
    return float(flags.mean()) if flags.size else 0.0


def _compare_task(
    task: str,
    a: list[EvalRecord],
    b: list[EvalRecord],
    *,
    ref: tuple[float, float],
    y_max: float,
    alpha: float,
    n: int,
    rng: np.random.Generator,
    confidence: float,
) -> TaskComparison:
    def hv(points: NDArray[np.float64]) -> float:
        return hypervolume(points, ref)

    score_a, score_b = _aup_for(a, y_max, alpha), _aup_for(b, y_max, alpha)
    pts_a, pts_b = record_points(a), record_points(b)
    front_a, front_b = pts_a[pareto_front(pts_a)], pts_b[pareto_front(pts_b)]
    hv_a, hv_b, aup_a, aup_b = hv(pts_a), hv(pts_b), score_a(pts_a), score_b(pts_b)

    replicate_a, replicate_b, paired, problems = _replicate_points(a, b, n, rng)
    if replicate_a is None or replicate_b is None:
        nan = np.full(1, np.nan)
        hv_reps, aup_reps = nan, nan
    else:
        hv_reps = np.array([hv(p) - hv(q) for p, q in zip(replicate_a, replicate_b, strict=True)])
        aup_reps = np.array(
            [score_a(p) - score_b(q) for p, q in zip(replicate_a, replicate_b, strict=True)]
        )
    return TaskComparison(
        task=task,
        hypervolume_a=hv_a,
        hypervolume_b=hv_b,
        hypervolume_diff=_interval(hv_a - hv_b, hv_reps, confidence),
        aup_a=aup_a,
        aup_b=aup_b,
        aup_diff=_interval(aup_a - aup_b, aup_reps, confidence),
        aup_method_a=aup_method(a),
        aup_method_b=aup_method(b),
        dominating_share=_share(dominance_matrix(front_a, front_b).any(axis=1)),
        covered_share=_share(dominance_matrix(front_a, front_b).any(axis=0)),
        frontier_a=[tuple(map(float, p)) for p in front_a],
        frontier_b=[tuple(map(float, p)) for p in front_b],
        y_max=y_max,
        ref=ref,
        paired=paired,
        problems_a=problems[0],
        problems_b=problems[1],
    )


def _replicate_points(
    a: Sequence[EvalRecord], b: Sequence[EvalRecord], n: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64] | None, NDArray[np.float64] | None, bool, tuple[int, int]]:
    """Bootstrap replicates of A's and B's points, paired on shared problems where possible."""
    try:
        ids_a, ids_b = _shared_problems(a), _shared_problems(b)
    except ValueError:
        return None, None, False, (0, 0)
    shared = sorted(set(ids_a) & set(ids_b))
    if shared:
        # Same problems for both sides in each replicate: the difference then carries no
        # noise from which problems happened to be drawn for A versus B.
        weights = _resample_weights(rng, n, len(shared))
        table_a, table_b = _problem_table(a, shared), _problem_table(b, shared)
        return table_a.points(weights), table_b.points(weights), True, (len(shared), len(shared))
    table_a, table_b = _problem_table(a, ids_a), _problem_table(b, ids_b)
    points_a = table_a.points(_resample_weights(rng, n, len(ids_a)))
    points_b = table_b.points(_resample_weights(rng, n, len(ids_b)))
    return points_a, points_b, False, (len(ids_a), len(ids_b))


def default_y_max(points: ArrayLike) -> float:
    """AUP's y_max when none is given (d3LLM): the best accuracy among the (TPF, accuracy)
    points being compared, so that every method is weighed against the same ceiling."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    accuracy = points[:, 1][np.isfinite(points[:, 1])]
    best = float(accuracy.max()) if accuracy.size else 0.0
    # With every accuracy at 0 the AUP is 0 whatever y_max is; any positive value will do.
    return best if best > 0 else FIXED_Y_MAX


def compare(
    a: Sequence[EvalRecord],
    b: Sequence[EvalRecord],
    *,
    ref: ArrayLike = HV_REFERENCE,
    y_max: float | Mapping[str, float] | None = None,
    alpha: float = AUP_ALPHA,
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, TaskComparison]:
    """Compare two sets of evaluation records (two sweeps, runs or checkpoints), per task.

    For each task both sides have: the hypervolume (against ``ref``) and the AUP of A and B
    (:func:`records_aup`: the paper's AUP for one checkpoint's curve, the frontier's AUP for
    a sweep's mixed curves), their differences A - B with bootstrap CIs over problems, and how A's frontier
    relates to B's. ``y_max`` (per task, or one value) defaults to the best accuracy on the
    task in A or B, and stays fixed across replicates. Records without per-sample results
    still get estimates, with intervals marked unavailable.
    """
    _check_bootstrap_args(n, confidence)
    ref_point = tuple(float(v) for v in np.asarray(ref, dtype=float).reshape(2))
    by_task_a, by_task_b = _by_task(a), _by_task(b)
    tasks = sorted(set(by_task_a) & set(by_task_b))
    if not tasks:
        raise ValueError(
            f"A and B share no task: A has {sorted(by_task_a) or 'none'}, "
            f"B has {sorted(by_task_b) or 'none'}"
        )
    rng = np.random.default_rng(seed)
    result = {}
    for task in tasks:
        if isinstance(y_max, Mapping):
            task_y_max = float(y_max[task])
        elif y_max is not None:
            task_y_max = float(y_max)
        else:
            task_y_max = default_y_max(record_points(by_task_a[task] + by_task_b[task]))
        result[task] = _compare_task(
            task,
            by_task_a[task],
            by_task_b[task],
            ref=ref_point,  # type: ignore[arg-type]
            y_max=task_y_max,
            alpha=alpha,
            n=n,
            rng=rng,
            confidence=confidence,
        )
    return result


# ------------------------------------------------------------------- seeds, then problems

Aggregate = str  # "median" or "mean": how one configuration's seeds become one value


@dataclass(frozen=True)
class ReplicatedComparison:
    """AUP of A against B where either was trained with several seeds (positive favours A).

    ``aup_a`` is the ``aggregate`` over A's seeds of each seed's AUP (the paper's AUP of that
    seed's curve). The interval comes from a two-level bootstrap: each replicate redraws A's
    seeds and B's seeds with replacement, then the problems (the same draw for both sides when
    they share problems), and recomputes every point from its per-sample results."""

    task: str
    aup_a: float
    aup_b: float
    aup_diff: Interval
    seeds_a: int
    seeds_b: int
    problems: int  # problems resampled per replicate (0: no per-sample results)
    paired: bool
    y_max: float
    aggregate: Aggregate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def combine(values: Sequence[float], how: str) -> float:
    """The seed replicates' ``median`` or ``mean`` (a sweep's ``replicates.aggregate``) of one
    value."""
    return float(statistics.median(values) if how == "median" else statistics.fmean(values))


def _combine(values: NDArray[np.float64], aggregate: Aggregate) -> NDArray[np.float64]:
    """Aggregate over the last axis."""
    return np.median(values, axis=-1) if aggregate == "median" else values.mean(axis=-1)


def seed_aups(
    table: _ProblemTable, weights: NDArray[np.float64], y_max: float, alpha: float = AUP_ALPHA
) -> NDArray[np.float64]:
    """AUP of one seed's curve under each row of problem ``weights``: shape (replicates,)."""
    return np.array([aup(points, y_max, alpha) for points in table.points(weights)])


def hierarchical_differences(
    tables_a: Sequence[_ProblemTable],
    tables_b: Sequence[_ProblemTable],
    seed_draws_a: NDArray[np.intp],
    seed_draws_b: NDArray[np.intp],
    weights_a: NDArray[np.float64],
    weights_b: NDArray[np.float64],
    y_max: float,
    *,
    alpha: float = AUP_ALPHA,
    aggregate: Aggregate = "median",
) -> NDArray[np.float64]:
    """Per replicate ``r``: the aggregate AUP over A's seeds ``seed_draws_a[r]`` with problems
    weighted by ``weights_a[r]``, minus the same for B. Seed draws: (replicates, seeds) indices
    into the tables; weights: (replicates, problems) draw counts."""

    def side(tables, draws, weights) -> NDArray[np.float64]:
        per_seed = np.stack([seed_aups(t, weights, y_max, alpha) for t in tables], axis=1)
        return _combine(np.take_along_axis(per_seed, draws, axis=1), aggregate)

    return side(tables_a, seed_draws_a, weights_a) - side(tables_b, seed_draws_b, weights_b)


def compare_replicated(
    a: Sequence[Sequence[EvalRecord]],
    b: Sequence[Sequence[EvalRecord]],
    *,
    y_max: float | Mapping[str, float] | None = None,
    alpha: float = AUP_ALPHA,
    aggregate: Aggregate = "median",
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, ReplicatedComparison]:
    """Compare A and B, each given as one list of records per training seed (a single list
    for a configuration run once), per task: see :class:`ReplicatedComparison`. ``y_max``
    defaults to the best accuracy on the task in A or B."""
    _check_bootstrap_args(n, confidence)
    if not a or not b:
        raise ValueError("compare_replicated: each side needs at least one seed's records")
    tasks = sorted(set.intersection(*({r.task for r in records} for records in [*a, *b])))
    if not tasks:
        raise ValueError("A's and B's seeds share no task")
    rng = np.random.default_rng(seed)
    out = {}
    for task in tasks:
        curves_a = [task_curve(records, task) for records in a]
        curves_b = [task_curve(records, task) for records in b]
        every = [r for c in (*curves_a, *curves_b) for r in c]
        if isinstance(y_max, Mapping):
            task_y_max = float(y_max[task])
        else:
            task_y_max = float(y_max) if y_max is not None else default_y_max(record_points(every))
        values_a = np.array([aup(record_points(c), task_y_max, alpha) for c in curves_a])
        values_b = np.array([aup(record_points(c), task_y_max, alpha) for c in curves_b])
        estimate_a = float(_combine(values_a, aggregate))
        estimate_b = float(_combine(values_b, aggregate))
        draws_a = rng.integers(0, len(curves_a), size=(n, len(curves_a)))
        draws_b = rng.integers(0, len(curves_b), size=(n, len(curves_b)))
        try:
            shared = _shared_problems(every)
        except ValueError:
            shared = []
        if shared:
            weights = _resample_weights(rng, n, len(shared))
            diffs = hierarchical_differences(
                [_problem_table(c, shared) for c in curves_a],
                [_problem_table(c, shared) for c in curves_b],
                draws_a, draws_b, weights, weights, task_y_max, alpha=alpha, aggregate=aggregate,
            )  # fmt: skip
        else:
            diffs = np.full(1, np.nan)  # no per-sample results shared: no interval
        out[task] = ReplicatedComparison(
            task=task,
            aup_a=estimate_a,
            aup_b=estimate_b,
            aup_diff=_interval(estimate_a - estimate_b, diffs, confidence),
            seeds_a=len(curves_a),
            seeds_b=len(curves_b),
            problems=len(shared),
            paired=bool(shared),
            y_max=task_y_max,
            aggregate=aggregate,
        )
    return out


def task_curve(records: Sequence[EvalRecord], task: str) -> list[EvalRecord]:
    """The records on ``task`` (one model's curve), in threshold order."""
    return sorted((r for r in records if r.task == task), key=lambda r: r.threshold)

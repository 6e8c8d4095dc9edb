"""Frontier analysis: brute force on random sets, moocore as a peer, and the paper's numbers."""

from __future__ import annotations

import itertools
import math

import moocore
import numpy as np
import pytest

from pareto_bench.analysis import frontier as F
from pareto_bench.analysis.report.published import load_published
from pareto_bench.core.records import EvalRecord, SampleResult


def dominates(p, q) -> bool:
    return p[0] >= q[0] and p[1] >= q[1] and (p[0] > q[0] or p[1] > q[1])


def brute_front(points: np.ndarray) -> set[int]:
    finite = [i for i, p in enumerate(points) if not np.isnan(p).any()]
    return {i for i in finite if not any(dominates(points[j], points[i]) for j in finite)}


def random_points(rng: np.random.Generator, n: int, with_nan: bool = True) -> np.ndarray:
    # Small integer grid: many ties on one coordinate and exact duplicates.
    pts = rng.integers(0, 6, size=(n, 2)).astype(float)
    if with_nan and n:
        pts[rng.random(n) < 0.1, rng.integers(0, 2)] = np.nan
    return pts


# ------------------------------------------------------------------------ pareto_front


@pytest.mark.parametrize("seed", range(40))
def test_pareto_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pts = random_points(rng, int(rng.integers(0, 30)))
    front = F.pareto_front(pts)
    assert set(front.tolist()) == brute_front(pts)
    assert len(front) == len(set(front.tolist()))
    # Returned in ascending TPF order, duplicates in index order.
    keys = [(pts[i, 0], i) for i in front]
    assert keys == sorted(keys)


@pytest.mark.parametrize("seed", range(10))
def test_pareto_front_agrees_with_moocore(seed):
    rng = np.random.default_rng(100 + seed)
    pts = rng.normal(size=(500, 2)).round(1)  # rounding makes ties
    ours = np.zeros(len(pts), dtype=bool)
    ours[F.pareto_front(pts)] = True
    theirs = moocore.is_nondominated(pts, maximise=True, keep_weakly=True)
    np.testing.assert_array_equal(ours, theirs)


def test_pareto_front_documented_edge_cases():
    pts = [(1.0, 80.0), (2.0, 80.0), (2.0, 80.0), (2.0, 70.0), (np.nan, 99.0), (3.0, np.nan)]
    # (1, 80) ties on accuracy and loses on TPF: dominated. Both copies of (2, 80) stay.
    assert F.pareto_front(pts).tolist() == [1, 2]
    assert F.pareto_front([]).tolist() == []
    assert F.pareto_front([(np.nan, np.nan)]).tolist() == []
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        F.pareto_front([1.0, 2.0, 3.0])


def test_dominance_shares():
    a = [(2.0, 80.0), (4.0, 60.0)]
    b = [(1.0, 70.0), (5.0, 50.0)]
    matrix = F.dominance_matrix(a, b)
    assert matrix.tolist() == [[True, False], [False, False]]
    assert F.dominates_any(a, b).tolist() == [True, False]


# ------------------------------------------------------------------------- hypervolume


@pytest.mark.parametrize("seed", range(20))
def test_hypervolume_agrees_with_moocore(seed):
    rng = np.random.default_rng(200 + seed)
    pts = rng.random((int(rng.integers(1, 200)), 2)) * [8.0, 100.0]
    ref = (float(rng.random() * 2), float(rng.random() * 30))
    beyond = pts[(pts[:, 0] > ref[0]) & (pts[:, 1] > ref[1])]
    expected = moocore.hypervolume(beyond, ref=ref, maximise=True) if len(beyond) else 0.0
    assert F.hypervolume(pts, ref) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_hypervolume_by_hand_and_edge_cases():
    # Two rectangles from (1, 0): [1,3]x[0,80] union [1,5]x[0,60] = 2*80 + 2*60.
    assert F.hypervolume([(3, 80), (5, 60), (2, 50)], (1, 0)) == pytest.approx(280.0)
    assert F.hypervolume([], (1, 0)) == 0.0
    assert F.hypervolume([(0.5, 90), (np.nan, 90)], (1, 0)) == 0.0


# --------------------------------------------------------------------------------- AUP


def aup_by_definition(points, y_max, alpha=3.0) -> float:
    """d3LLM's formula written out step by step, for distinct TPF values."""
    pts = sorted(points)
    y1 = pts[0][1]
    pts = [p for p in pts if p[1] >= y1 - 5]

    def w(y):
        return min(math.exp(-alpha * (1 - y / y_max)), 1.0)

    total = pts[0][0] * pts[0][1]
    for (r0, y0), (r1, y1_) in itertools.pairwise(pts):
        total += (r1 - r0) * (y1_ * w(y1_) + y0 * w(y0)) / 2
    return total


@pytest.mark.parametrize("seed", range(30))
def test_aup_matches_definition(seed):
    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(1, 8))
    tpf = np.sort(rng.choice(np.arange(1, 200) / 10, size=n, replace=False))
    acc = np.clip(90 - 3 * tpf + rng.normal(0, 3, size=n), 0, 100)
    pts = np.column_stack([tpf, acc])
    y_max = float(acc.max() + rng.random() * 5)
    expected = aup_by_definition([tuple(p) for p in pts], y_max)
    assert F.aup(pts[rng.permutation(n)], y_max) == pytest.approx(expected)


def test_aup_by_hand():
    # Lowest-TPF point 80; (2, 70) is more than 5 below it and dropped.
    w75 = math.exp(-3 * (1 - 75 / 80))
    expected = 1 * 80 + (3 - 1) * (75 * w75 + 80 * 1.0) / 2
    assert F.aup([(3, 75), (1, 80), (2, 70)], y_max=80) == pytest.approx(expected)
    assert F.aup([], y_max=80) == 0.0
    with pytest.raises(ValueError, match="y_max"):
        F.aup([(1, 50)], y_max=0)


def test_default_y_max_is_the_best_accuracy_or_the_fixed_ceiling():
    assert F.default_y_max([(1, 40), (3, 55), (2, float("nan"))]) == 55
    assert F.default_y_max([(1, 0), (2, 0)]) == F.default_y_max([]) == F.FIXED_Y_MAX == 100


def test_aup_single_point_is_rho_times_y_for_any_y_max():
    for rho, y, y_max in [(2.5, 40.0, 90.0), (5.58, 90.3, 90.3), (1.0, 10.0, 100.0)]:
        assert F.aup([(rho, y)], y_max) == pytest.approx(rho * y)


def test_published_autoregressive_rows_are_single_point_aups():
    """The AR model decodes one token per forward: its curve is one point, AUP = rho * y,
    with y_max set as the paper sets it (the best accuracy of any method on the task)."""
    main = load_published(group="main")
    ar_rows = [p for p in main if "(AR)" in p.model]
    assert len(ar_rows) == 4
    for row in ar_rows:
        y_max = max(p.accuracy for p in main if p.task == row.task)
        assert F.aup([(row.tpf, row.accuracy)], y_max) == pytest.approx(row.aup, abs=0.05)


def test_published_averages_are_means_of_the_main_table():
    main = load_published(group="main")
    for row in load_published(group="average"):
        cells = [p for p in main if p.model == row.model]
        assert len(cells) == 4
        assert np.mean([p.tpf for p in cells]) == pytest.approx(row.tpf, abs=0.01)
        assert np.mean([p.aup for p in cells]) == pytest.approx(row.aup, abs=0.05)


def test_published_ablation_full_equals_main_table():
    (full,) = [p for p in load_published(group="ablation") if p.variant == "full"]
    (main,) = [p for p in load_published("gsm8k", "main") if p.model == full.model]
    assert (full.accuracy, full.tpf, full.aup) == (main.accuracy, main.tpf, main.aup)
    assert all(p.arxiv and p.table and p.paper for p in load_published())


def test_frontier_aup_ignores_dominated_points():
    curve = [(1.0, 80.0), (2.0, 70.0), (3.0, 77.0)]
    assert F.frontier_aup(curve, 80) == pytest.approx(F.aup([(1.0, 80.0), (3.0, 77.0)], 80))


# -------------------------------------------------------------------------- attainment


def attained_by(point_set: np.ndarray, query: np.ndarray) -> np.ndarray:
    return ((point_set[None, :, :] >= query[:, None, :]).all(axis=2)).any(axis=1)


@pytest.mark.parametrize("seed", range(10))
def test_attainment_surfaces_match_brute_force(seed):
    rng = np.random.default_rng(400 + seed)
    sets = [rng.random((int(rng.integers(1, 12)), 2)) * [6, 100] for _ in range(5)]
    queries = rng.random((2000, 2)) * [6, 100]
    counts = sum(attained_by(s, queries).astype(int) for s in sets)
    surfaces = F.attainment_surfaces(sets)
    assert surfaces.num_sets == 5
    for k, surface in [(1, surfaces.best), (3, surfaces.median), (5, surfaces.worst)]:
        np.testing.assert_array_equal(attained_by(surface, queries), counts >= k)
        assert np.all(np.diff(surface[:, 0]) >= 0)
        np.testing.assert_array_equal(F.attainment_surface(sets, k), surface)


def test_attainment_edge_cases():
    one = np.array([(1.0, 90.0), (2.0, 80.0), (1.5, 70.0)])
    surfaces = F.attainment_surfaces([one])
    front = one[F.pareto_front(one)]
    for surface in (surfaces.best, surfaces.median, surfaces.worst):
        np.testing.assert_array_equal(surface, front)
    # An empty run attains nothing, so nothing is attained by every run.
    with_empty = F.attainment_surfaces([one, np.empty((0, 2))])
    assert len(with_empty.worst) == 0 and len(with_empty.best) == 2
    assert F.attainment_surfaces([]).num_sets == 0


# --------------------------------------------------------------------------- bootstrap


def make_curve(task, curve, problems, seed=0, order=None):
    """EvalRecords of one checkpoint: ``curve`` is [(threshold, p_correct, tokens_per_forward)]."""
    rng = np.random.default_rng(seed)
    ids = [f"{task}/{i}" for i in range(problems)]
    records = []
    for threshold, p_correct, tpf in curve:
        samples = []
        for pid in ids:
            tokens = int(rng.integers(20, 60))
            forwards = max(1, round(tokens / tpf))
            ok = bool(rng.random() < p_correct)
            samples.append(SampleResult(pid, ok, float(ok), tokens, forwards))
        if order is not None:
            samples = [samples[i] for i in order]
        records.append(EvalRecord.from_samples(task, threshold, samples))
    return records


def test_bootstrap_estimate_is_the_full_data_statistic():
    records = make_curve("t", [(0.5, 0.4, 4.0), (0.9, 0.7, 2.0)], problems=200)
    interval = F.bootstrap_ci(records, lambda p: F.aup(p, 100.0), n=300, seed=1)
    full = F.aup(F.record_points(records), 100.0)
    assert interval.estimate == pytest.approx(full)
    assert interval.low < interval.estimate < interval.high
    assert interval.n_resamples == 300 and interval.available


def test_bootstrap_width_matches_binomial_theory():
    (record,) = make_curve("t", [(0.9, 0.5, 2.0)], problems=400, seed=3)
    interval = F.bootstrap_ci([record], lambda p: p[0, 1], n=2000, seed=0)
    p = record.accuracy / 100
    expected_width = 2 * 1.96 * math.sqrt(p * (1 - p) / 400) * 100
    assert interval.high - interval.low == pytest.approx(expected_width, rel=0.15)


def test_bootstrap_is_seeded_and_matches_problems_by_id():
    records = make_curve("t", [(0.5, 0.4, 4.0), (0.9, 0.7, 2.0)], problems=50)
    shuffled = make_curve("t", [(0.5, 0.4, 4.0), (0.9, 0.7, 2.0)], 50, order=np.arange(50)[::-1])
    stat = lambda p: F.hypervolume(p, (1, 0))  # noqa: E731
    a = F.bootstrap_ci(records, stat, n=200, seed=5)
    assert a == F.bootstrap_ci(records, stat, n=200, seed=5)
    assert a == F.bootstrap_ci(shuffled, stat, n=200, seed=5)
    assert a != F.bootstrap_ci(records, stat, n=200, seed=6)


def test_bootstrap_constant_samples_give_a_point_interval():
    samples = [SampleResult(f"p{i}", True, 1.0, 30, 10) for i in range(20)]
    record = EvalRecord.from_samples("t", 0.9, samples)
    interval = F.bootstrap_ci([record], lambda p: p[0, 0] * p[0, 1], n=100)
    assert interval.low == interval.high == interval.estimate == pytest.approx(300.0)


def test_bootstrap_leaves_out_problems_missing_from_a_record():
    full = [SampleResult(f"p{i}", i < 5, float(i < 5), 10, 5) for i in range(10)]
    partial = EvalRecord.from_samples("t", 0.5, full[:5])  # only the correct ones
    interval = F.bootstrap_ci([EvalRecord.from_samples("t", 0.9, full), partial], lambda p: p[0, 1])
    assert interval.estimate == pytest.approx(100.0)


def test_bootstrap_needs_samples():
    bare = EvalRecord(task="t", threshold=0.9, accuracy=50, tpf=2, num_samples=10,
                      total_tokens=20, total_forwards=10)  # fmt: skip
    with pytest.raises(ValueError, match="per-sample"):
        F.bootstrap_ci([bare], lambda p: p[0, 1])


# ----------------------------------------------------------------------------- compare


def test_compare_with_itself_is_zero_with_a_point_interval():
    records = make_curve("t", [(0.5, 0.4, 4.0), (0.9, 0.7, 2.0)], problems=100)
    (result,) = F.compare(records, records, n=200).values()
    assert result.paired and result.problems_a == 100
    for diff in (result.aup_diff, result.hypervolume_diff):
        assert diff.estimate == diff.low == diff.high == 0.0
    assert result.dominating_share == 0.0 and result.covered_share == 0.0


def test_compare_detects_a_better_curve():
    base = make_curve("t", [(0.5, 0.3, 3.0), (0.9, 0.6, 1.5)], problems=300, seed=1)
    better = make_curve("t", [(0.5, 0.6, 4.0), (0.9, 0.8, 2.0)], problems=300, seed=2)
    result = F.compare(better, base, n=300)["t"]
    assert result.aup_a > result.aup_b and result.aup_diff.low > 0
    assert result.hypervolume_diff.low > 0 and result.hypervolume_diff.excludes_zero
    assert result.dominating_share == 1.0 and result.covered_share == 1.0
    reverse = F.compare(base, better, n=300)["t"]
    assert reverse.aup_diff.estimate == pytest.approx(-result.aup_diff.estimate)
    assert reverse.dominating_share == 0.0


def test_compare_unpaired_and_without_samples():
    a = make_curve("t", [(0.9, 0.7, 2.0)], problems=50)
    b = make_curve("u", [(0.9, 0.5, 2.0)], problems=60)
    for r in b:
        r.task = "t"
        for s in r.samples:
            s.problem_id = "other-" + s.problem_id
    result = F.compare(a, b, n=100)["t"]
    assert not result.paired and (result.problems_a, result.problems_b) == (50, 60)
    bare = [EvalRecord(task="t", threshold=0.9, accuracy=10, tpf=2, num_samples=1,
                       total_tokens=2, total_forwards=1)]  # fmt: skip
    no_ci = F.compare(a, bare, n=100)["t"]
    assert not no_ci.aup_diff.available and no_ci.aup_diff.estimate > 0
    assert "no CI" in str(no_ci.aup_diff)
    with pytest.raises(ValueError, match="share no task"):
        F.compare(a, make_curve("other", [(0.9, 0.5, 2.0)], problems=5))


def test_aup_on_a_multi_point_curve_equals_the_hand_computed_d3llm_value():
    """(TPF, acc) = (2, 90), (3, 88), (4, 86), (5, 80) with y_max 92 and alpha 3, by hand:
    - the 5-point drop: 80 < 90 - 5, so (5, 80) is left out;
    - W(y) = exp(-3 (1 - y/92)): W(90) = 0.93686378, W(88) = 0.87771373, W(86) = 0.82229820;
    - AUP = 2*90 + 1*(88 W(88) + 90 W(90))/2 + 1*(86 W(86) + 88 W(88))/2
          = 180 + (77.238809 + 84.317740)/2 + (70.717645 + 77.238809)/2 = 334.756501."""
    points = [(3.0, 88.0), (5.0, 80.0), (2.0, 90.0), (4.0, 86.0)]  # any order
    assert F.aup(points, y_max=92.0) == pytest.approx(334.756501, abs=1e-6)


def test_aup_with_tied_tpf_and_accuracy_above_y_max():
    # Two points at the lowest TPF: y_1 is the better one (90); the tie adds a zero-width
    # trapezoid, and the next one starts from the tied point below it (86):
    # 2*90 + 0 + 1*(88 W(88) + 86 W(86))/2 = 180 + (77.238809 + 70.717645)/2 = 253.978227.
    assert F.aup([(2.0, 86.0), (2.0, 90.0), (3.0, 88.0)], y_max=92.0) == pytest.approx(
        253.978227, abs=1e-6
    )
    # Above y_max the weight is capped at 1: 1*95 + 1*(93 + 95)/2 = 189.
    assert F.aup([(1.0, 95.0), (2.0, 93.0)], y_max=92.0) == pytest.approx(189.0)


# ------------------------------------------------------------- seeds, then problems


def _seed_curve(scores: dict[float, list[float]], forwards: dict[float, list[int]]) -> list:
    """One seed's records: per threshold, per problem p0..p2, a score and its forwards (8
    tokens each), so accuracy and TPF move with the problems drawn."""
    from pareto_bench.core.records import EvalRecord, SampleResult

    return [
        EvalRecord.from_samples(
            "t",
            threshold,
            [
                SampleResult(f"p{j}", s > 0, s, 8, f)
                for j, (s, f) in enumerate(zip(scores[threshold], forwards[threshold], strict=True))
            ],
        )
        for threshold in scores
    ]


SEEDS_A = [
    _seed_curve({0.5: [1, 0, 1], 0.9: [1, 1, 1]}, {0.5: [2, 3, 2], 0.9: [4, 5, 8]}),
    _seed_curve({0.5: [0, 0, 1], 0.9: [1, 0, 1]}, {0.5: [1, 2, 2], 0.9: [4, 4, 8]}),
]
SEEDS_B = [
    _seed_curve({0.5: [0, 1, 0], 0.9: [1, 1, 0]}, {0.5: [2, 2, 4], 0.9: [8, 8, 4]}),
    _seed_curve({0.5: [1, 0, 0], 0.9: [1, 1, 1]}, {0.5: [4, 2, 2], 0.9: [8, 4, 8]}),
]


def _brute_force(draw_a, draw_b, problem_draw, y_max, aggregate):
    """The statistic of one replicate from first principles: loops, no shared code but aup."""
    import statistics

    def seed_aup(records):
        points = []
        for record in records:
            by_problem = {s.problem_id: s for s in record.samples}
            chosen = [by_problem[f"p{j}"] for j in problem_draw]
            accuracy = 100 * sum(s.score for s in chosen) / len(chosen)
            tpf = sum(s.num_tokens for s in chosen) / sum(s.num_forwards for s in chosen)
            points.append((tpf, accuracy))
        return F.aup(points, y_max)

    combine = statistics.median if aggregate == "median" else statistics.fmean
    a = combine([seed_aup(SEEDS_A[i]) for i in draw_a])
    b = combine([seed_aup(SEEDS_B[i]) for i in draw_b])
    return a - b


@pytest.mark.parametrize("aggregate", ["median", "mean"])
def test_hierarchical_bootstrap_equals_brute_force_enumeration(aggregate: str) -> None:
    import itertools

    y_max = 100.0
    seed_draws = list(itertools.product(range(2), repeat=2))
    problem_draws = list(itertools.product(range(3), repeat=3))
    combos = list(itertools.product(seed_draws, seed_draws, problem_draws))
    problems = ["p0", "p1", "p2"]
    weights = np.array([np.bincount(p, minlength=3) for _, _, p in combos], dtype=float)
    got = F.hierarchical_differences(
        [F._problem_table(c, problems) for c in SEEDS_A],
        [F._problem_table(c, problems) for c in SEEDS_B],
        np.array([a for a, _, _ in combos]),
        np.array([b for _, b, _ in combos]),
        weights,
        weights,
        y_max,
        aggregate=aggregate,
    )
    expected = [_brute_force(a, b, p, y_max, aggregate) for a, b, p in combos]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)

    # Every one of the 4 x 4 x 27 draws is equally likely, so the enumeration is the exact
    # bootstrap distribution, and the Monte Carlo interval's ends are its 2.5% and 97.5%
    # quantiles: P(X < q) <= p <= P(X <= q), up to Monte Carlo error.
    result = F.compare_replicated(
        SEEDS_A, SEEDS_B, y_max=y_max, aggregate=aggregate, n=40_000, seed=1
    )["t"]
    exact = np.array(expected)
    for end, p in ((result.aup_diff.low, 0.025), (result.aup_diff.high, 0.975)):
        assert (exact < end - 1e-9).mean() <= p + 0.005
        assert (exact <= end + 1e-9).mean() >= p - 0.005
    assert (result.seeds_a, result.seeds_b, result.problems, result.paired) == (2, 2, 3, True)
    full = (np.array([0, 1]), np.array([0, 1]), [0, 1, 2])
    assert result.aup_diff.estimate == pytest.approx(_brute_force(*full, y_max, aggregate))


def test_one_seed_per_side_is_the_problem_bootstrap() -> None:
    """With one seed each, redrawing seeds changes nothing: the interval is the paired
    problem bootstrap's, draw for draw."""
    a, b = SEEDS_A[0], SEEDS_B[0]
    replicated = F.compare_replicated([a], [b], y_max=100.0, n=500, seed=3)["t"]
    problems = ["p0", "p1", "p2"]
    rng = np.random.default_rng(3)
    rng.integers(0, 1, size=(500, 1))  # the two seed draws come first
    rng.integers(0, 1, size=(500, 1))
    weights = F._resample_weights(rng, 500, 3)
    direct = F.seed_aups(F._problem_table(a, problems), weights, 100.0) - F.seed_aups(
        F._problem_table(b, problems), weights, 100.0
    )
    low, high = np.percentile(direct, [2.5, 97.5])
    assert (replicated.aup_diff.low, replicated.aup_diff.high) == pytest.approx((low, high))

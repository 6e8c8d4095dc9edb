"""The sampler contract, over every registered name, as Optuna tests its own samplers: each one
runs a multi-objective study beside baselines without error, proposes only points inside the
search space, and sees the baselines as failed trials at their own numbers.

`make test-lower-bounds` runs this file again with the oldest optuna that pyproject.toml allows,
so both ends of the range are covered."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from pareto_bench.core.records import BASELINE
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep import load_spec
from pareto_bench.sweep.samplers import KIND_ATTR, SAMPLERS, _SearchTrialsView, build_sampler

TINY = Path(__file__).resolve().parent.parent / "sweeps" / "tiny.yaml"
SPACE = [
    "search_space.reward.tpf_weight={type: float, low: 0.5, high: 2.0, step: 0.5}",
    "search_space.loss.nll_weight={type: float, low: 0.0, high: 0.4, step: 0.2}",
]
TRIALS = 6  # NSGA-II (population 4) reaches its second generation


def _objectives(params: dict[str, float]) -> list[float]:
    # Two objectives in tension, so that a multi-objective sampler has a front to work on.
    w, n = params["reward.tpf_weight"], params["loss.nll_weight"]
    return [w - n, 2.0 - w + n]


def run_study(name: str) -> optuna.Study:
    """The sweep's pattern: baselines enqueued first, then ask/tell (grid points enqueued)."""
    # GP's multi-objective acquisition takes seconds a point: two model-based points are enough.
    startup = ["sampler.options={n_startup_trials: 4}"] if name in ("gp", "tpe") else []
    spec = load_spec(TINY, [*SPACE, f"sampler.name={name}", f"trials={TRIALS}", *startup])
    plan = build_sampler(spec)
    study = optuna.create_study(directions=["maximize"] * 2, sampler=plan.sampler)
    for baseline in ("base", "grpo"):
        study.enqueue_trial({}, user_attrs={KIND_ATTR: BASELINE, "name": baseline})
    for point in (plan.fixed_points or [])[:TRIALS]:
        study.enqueue_trial(point)
    for index in range(2 + TRIALS):
        trial = study.ask()
        if trial.user_attrs.get(KIND_ATTR) == BASELINE:
            study.tell(trial, [float(index), 0.0])  # a baseline's values: never learned from
            continue
        params = {p: spec.search_space[p].suggest(trial, p) for p in spec.search_space}
        study.tell(trial, _objectives(params))
    return study


@pytest.fixture(params=sorted(SAMPLERS.names()))
def sampler_name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_sampler_runs_beside_baselines(sampler_name: str) -> None:
    study = run_study(sampler_name)
    searched = [t for t in study.trials if t.user_attrs.get(KIND_ATTR) != BASELINE]
    assert len(searched) == TRIALS
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for trial in searched:
        assert 0.5 <= trial.params["reward.tpf_weight"] <= 2.0
        assert 0.0 <= trial.params["loss.nll_weight"] <= 0.4
    baselines = [t for t in study.trials if t.user_attrs.get(KIND_ATTR) == BASELINE]
    assert [t.params for t in baselines] == [{}, {}]  # the sampler proposed nothing for them


def test_samplers_see_baselines_failed_at_their_numbers() -> None:
    study = run_study("random")
    view = _SearchTrialsView(study)
    seen = view._get_trials(deepcopy=False, use_cache=True)
    # Optuna's samplers may index this list by trial number (NSGA-II's generation cache does).
    assert [t.number for t in seen] == list(range(len(study.trials)))
    states = {t.number: t.state for t in seen}
    assert states[0] == states[1] == optuna.trial.TrialState.FAIL
    assert all(seen[i].values is None and seen[i].params == {} for i in (0, 1))
    complete = view.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.number for t in complete] == list(range(2, 2 + TRIALS))
    assert len(view.trials) == len(study.trials)


def searched_points(study: optuna.Study) -> list[tuple[float, float]]:
    return [
        (t.params["reward.tpf_weight"], t.params["loss.nll_weight"])
        for t in study.trials
        if t.user_attrs.get(KIND_ATTR) != BASELINE
    ]


def test_a_rerun_draws_the_same_points(sampler_name: str) -> None:
    assert searched_points(run_study(sampler_name)) == searched_points(run_study(sampler_name))


def test_no_two_trials_get_the_same_point(sampler_name: str) -> None:
    """On a space of 4 x 3 = 12 points, 6 trials are 6 different points, whatever the sampler
    (the model-based ones would otherwise come back to their best point)."""
    points = searched_points(run_study(sampler_name))
    assert len(set(points)) == len(points) == TRIALS


def test_workers_sharing_a_study_draw_different_points() -> None:
    """Two workers ask before either tells, as parallel workers do: each trial's draw is seeded
    by its number, and a point that a running trial holds is not drawn again."""
    spec = load_spec(TINY, [*SPACE, "sampler.name=tpe", "trials=4"])
    storage = optuna.storages.InMemoryStorage()
    workers = [
        optuna.create_study(
            storage=storage,
            study_name="shared",
            directions=["maximize"] * 2,
            sampler=build_sampler(spec).sampler,
            load_if_exists=True,
        )
        for _ in range(2)
    ]
    asked = [(w, w.ask()) for w in workers for _ in range(2)]
    points = []
    for worker, trial in asked:
        params = {p: spec.search_space[p].suggest(trial, p) for p in spec.search_space}
        points.append(tuple(params.values()))
        worker.tell(trial, _objectives(params))
    assert len(set(points)) == 4


def test_an_exhausted_space_is_an_error_that_names_the_field() -> None:
    spec = load_spec(TINY, [*SPACE, "sampler.name=random", "trials=20"])
    study = optuna.create_study(directions=["maximize"] * 2, sampler=build_sampler(spec).sampler)
    for _ in range(12):  # every point of the 4 x 3 space
        trial = study.ask()
        params = {p: spec.search_space[p].suggest(trial, p) for p in spec.search_space}
        study.tell(trial, _objectives(params))
    with pytest.raises(ConfigError, match="search_space: .* exhausted"):
        trial = study.ask()
        spec.search_space["reward.tpf_weight"].suggest(trial, "reward.tpf_weight")


def test_a_converged_sampler_still_finds_the_free_points_of_a_finite_space() -> None:
    """TPE comes back to its best points; on a finite space the free ones are drawn instead,
    until every point has been tried once."""
    spec = load_spec(TINY, [*SPACE, "sampler.name=tpe", "sampler.options={n_startup_trials: 2}"])
    plan = build_sampler(spec)
    assert plan.space_size == plan.capacity == 12
    study = optuna.create_study(directions=["maximize"] * 2, sampler=plan.sampler)
    points = []
    for _ in range(12):
        trial = study.ask()
        params = {p: spec.search_space[p].suggest(trial, p) for p in spec.search_space}
        points.append(tuple(params.values()))
        study.tell(trial, [params["reward.tpf_weight"], 0.0])  # one clear best point
    assert len(set(points)) == 12

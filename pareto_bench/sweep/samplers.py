"""Optuna samplers by name, and the view of the study they get: search trials only.

Baselines live in the study (so that Optuna, the dashboard and the report see them beside the
trials) but they have no search parameters: the base model is untrained and ``grpo`` is a
fixed recipe. A sampler that saw them would learn nothing useful and, worse, GP's intersection
search space would collapse to nothing and fall back to random search. So every sampler is
wrapped to see each baseline as a failed trial with no parameters, which every Optuna sampler
ignores. The baseline keeps its place: Optuna's samplers may index the full trial list by
trial number (NSGA-II's generation cache does since optuna 5), so the list must not shrink.

No configuration is trained twice. Each searched trial draws its point from a sampler seeded
with the spec's seed and the trial's number, so a re-run at one worker repeats its points, while
parallel workers and a resumed process draw different ones (a sampler seeded once per process
would repeat its random start-up points in every process). A point equal to one that a running,
finished or queued trial already holds is drawn again with the next seed.

The grid "sampler" enumerates the grid up front: the sweep enqueues one trial per grid point,
so workers never race for grid cells and a grid sweep resumes like any other.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pareto_bench.core.records import BASELINE
from pareto_bench.core.registry import Registry
from pareto_bench.core.schema import ConfigError

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from pareto_bench.sweep.spec import SweepSpec

KIND_ATTR = "kind"  # trial user attribute: a TrialRecord kind (core/records.py)


@dataclass
class SamplerPlan:
    """A sampler, and for the grid the parameters of every trial, fixed in advance."""

    sampler: BaseSampler
    fixed_points: list[dict[str, Any]] | None = None
    space_size: int | None = None  # distinct points of a finite search space; None if infinite

    @property
    def capacity(self) -> int | None:
        """How many distinct trials the sweep can run; None when unbounded."""
        return len(self.fixed_points) if self.fixed_points is not None else self.space_size


SamplerFactory = Callable[["SweepSpec"], SamplerPlan]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


def build_sampler(spec: SweepSpec, source: str = "spec") -> SamplerPlan:
    """The spec's sampler, wrapped so that it never sees baselines. Bad ``sampler.options``
    raise a ``ConfigError`` naming the option."""
    factory = SAMPLERS.get(spec.sampler.name)
    try:
        plan = factory(spec)
    except TypeError as e:
        raise ConfigError(f"{source}: field 'sampler.options': {e}") from None
    space = {name: p.distribution() for name, p in spec.search_space.items()}
    finite = grid_points(spec)
    plan.space_size = None if finite is None else len(finite)

    def seeded(seed: int) -> BaseSampler:
        return factory(spec.model_copy(update={"seed": seed})).sampler

    plan.sampler = search_trials_only(plan.sampler, seeded, spec.seed, space, finite)
    return plan


def grid_points(spec: SweepSpec) -> list[dict[str, Any]] | None:
    """Every point of the search space, in grid order; None when an axis is continuous."""
    names = list(spec.search_space)
    axes = [spec.search_space[n].grid() for n in names]
    if any(axis is None for axis in axes):
        return None
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]


def _startup(spec: SweepSpec) -> int:
    # Random trials before the model-based samplers take over: a third of the budget, 2..10.
    return max(2, min(10, spec.trials // 3))


@SAMPLERS.register("tpe")
def _tpe(spec: SweepSpec) -> SamplerPlan:
    from optuna.samplers import TPESampler

    # constant_liar keeps parallel workers from proposing the same point.
    options = {"multivariate": True, "constant_liar": True, "n_startup_trials": _startup(spec)}
    return SamplerPlan(TPESampler(seed=spec.seed, **{**options, **spec.sampler.options}))


@SAMPLERS.register("nsga2")
def _nsga2(spec: SweepSpec) -> SamplerPlan:
    from optuna.samplers import NSGAIISampler

    options = {"population_size": max(4, min(50, spec.trials // 2))}
    return SamplerPlan(NSGAIISampler(seed=spec.seed, **{**options, **spec.sampler.options}))


@SAMPLERS.register("gp")
def _gp(spec: SweepSpec) -> SamplerPlan:
    import warnings

    from optuna.samplers import GPSampler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" and the optional greenlet notice
        options = {"n_startup_trials": _startup(spec)}
        return SamplerPlan(GPSampler(seed=spec.seed, **{**options, **spec.sampler.options}))


@SAMPLERS.register("random")
def _random(spec: SweepSpec) -> SamplerPlan:
    from optuna.samplers import RandomSampler

    return SamplerPlan(RandomSampler(seed=spec.seed, **spec.sampler.options))


@SAMPLERS.register("grid")
def _grid(spec: SweepSpec) -> SamplerPlan:
    from optuna.samplers import RandomSampler

    if spec.sampler.options:
        raise TypeError("the grid sampler takes no options")
    points = grid_points(spec) or []
    random.Random(spec.seed).shuffle(points)  # a truncated grid still spreads over the space
    return SamplerPlan(RandomSampler(seed=spec.seed), fixed_points=points)


def is_baseline(trial: Any) -> bool:
    return trial.user_attrs.get(KIND_ATTR) == BASELINE


def _masked(trial: Any) -> Any:
    """A baseline as samplers see it: at its number, failed, with no parameters or values."""
    from optuna.trial import FrozenTrial, TrialState

    return FrozenTrial(
        number=trial.number,
        trial_id=trial._trial_id,
        state=TrialState.FAIL,
        value=None,
        values=None,
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params={},
        distributions={},
        user_attrs=dict(trial.user_attrs),
        system_attrs={},
        intermediate_values={},
    )


def _search_only(trials: Sequence[Any], states: Container[Any] | None) -> list[Any]:
    masked = [_masked(t) if is_baseline(t) else t for t in trials]
    return masked if states is None else [t for t in masked if t.state in states]


class _SearchTrialsView:
    """The study as a sampler should see it: the same object, with baselines masked."""

    def __init__(self, study: Any) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[Any] | None = None, **kwargs: Any
    ) -> list[Any]:
        # Masking changes states, so the inner study is asked for every state and filtered here.
        return _search_only(self._study._get_trials(deepcopy=deepcopy, **kwargs), states)

    def get_trials(self, deepcopy: bool = True, states: Container[Any] | None = None) -> list[Any]:
        return _search_only(self._study.get_trials(deepcopy=deepcopy), states)

    @property
    def trials(self) -> list[Any]:
        return self.get_trials()

    def stop(self) -> None:
        """The sweep owns its budget; a sampler asking to stop (outside ``optimize``) is ignored."""


DRAWS = 32  # seeds tried for one trial before its search space counts as exhausted


def trial_seed(seed: int, number: int, draw: int = 0) -> int:
    """The seed of a trial's ``draw``-th point: a function of the spec's seed and the trial's
    number only, so it is the same in every process."""
    import numpy as np

    return int(np.random.SeedSequence([seed % 2**32, number, draw]).generate_state(1)[0])


def _point_key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items())
    )


def _taken_points(view: _SearchTrialsView, number: int) -> set[tuple[Any, ...]]:
    """The points held by every other trial that is queued, running or finished (not failed:
    a killed trial's retry is queued with its point and holds it)."""
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
    taken = set()
    for t in view.get_trials(deepcopy=False, states=live):
        params = t.params or t.system_attrs.get("fixed_params") or {}
        if t.number != number and params:
            taken.add(_point_key(params))
    return taken


def _draw(inner: BaseSampler, view: _SearchTrialsView, trial: Any, space: dict[str, Any]) -> dict:
    """One point of the whole space from ``inner``: its joint sample where it has a model, its
    independent samples for the rest (its random start-up, for instance)."""
    inner_space = inner.infer_relative_search_space(view, trial)
    point = dict(inner.sample_relative(view, trial, inner_space)) if inner_space else {}
    for name, distribution in space.items():
        if name not in point:
            point[name] = inner.sample_independent(view, trial, name, distribution)
    return {name: point[name] for name in space}


def search_trials_only(
    inner: BaseSampler,
    seeded: Callable[[int], BaseSampler],
    seed: int,
    space: dict[str, Any],
    finite: list[dict[str, Any]] | None = None,
) -> BaseSampler:
    """Wrap ``inner`` so that it never sees baselines, baselines sample nothing, and each
    searched trial gets a point of ``space`` that no other trial holds, drawn by
    ``seeded(trial_seed(seed, number, draw))``. ``finite`` lists every point of a finite space:
    where the sampler keeps returning held points (a model-based one converges), a free one is
    picked from it at random."""
    return _wrapper_class()(inner, seeded, seed, space, finite)


@functools.cache
def _wrapper_class() -> type:
    # Defined on first use so that importing this module does not import optuna.
    from optuna.samplers import BaseSampler

    class SearchTrialsOnly(BaseSampler):
        def __init__(
            self,
            inner: BaseSampler,
            seeded: Callable[[int], BaseSampler],
            seed: int,
            space: dict[str, Any],
            finite: list[dict[str, Any]] | None,
        ) -> None:
            self.inner, self.seeded, self.seed, self.space = inner, seeded, seed, space
            self.finite = finite

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            # Baselines search nothing; an enqueued point (grid, retry) keeps its parameters.
            if is_baseline(trial) or trial.system_attrs.get("fixed_params"):
                return {}
            return dict(self.space)

        def sample_relative(
            self, study: Any, trial: Any, search_space: dict[str, Any]
        ) -> dict[str, Any]:
            if not search_space:
                return {}
            view = _SearchTrialsView(study)
            taken = _taken_points(view, trial.number)
            for draw in range(DRAWS):
                inner = self.seeded(trial_seed(self.seed, trial.number, draw))
                point = _draw(inner, view, trial, search_space)
                if _point_key(point) not in taken:
                    return point
            free = [p for p in self.finite or [] if _point_key(p) not in taken]
            if free:
                return random.Random(trial_seed(self.seed, trial.number, DRAWS)).choice(free)
            raise ConfigError(
                f"search_space: {DRAWS} draws for trial {trial.number} all repeat a configuration "
                f"that another trial holds ({len(taken)} held); the space looks exhausted: widen "
                "search_space or lower trials"
            )

        def sample_independent(
            self, study: Any, trial: Any, param_name: str, param_distribution: Any
        ) -> Any:
            return self.inner.sample_independent(
                _SearchTrialsView(study), trial, param_name, param_distribution
            )

        def before_trial(self, study: Any, trial: Any) -> None:
            if not is_baseline(trial):
                self.inner.before_trial(_SearchTrialsView(study), trial)

        def after_trial(
            self, study: Any, trial: Any, state: Any, values: Sequence[float] | None
        ) -> None:
            if not is_baseline(trial):
                self.inner.after_trial(_SearchTrialsView(study), trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return SearchTrialsOnly

"""Optuna samplers by name, and the view of the study they get: search trials only.

Baselines live in the study (so that Optuna, the dashboard and the report see them beside the
trials) but they have no search parameters: the base model is untrained and ``grpo`` is a
fixed recipe. A sampler that saw them would learn nothing useful and, worse, GP's intersection
search space would collapse to nothing and fall back to random search. So every sampler is
wrapped to see each baseline as a failed trial with no parameters, which every Optuna sampler
ignores. The baseline keeps its place: Optuna's samplers may index the full trial list by
trial number (NSGA-II's generation cache does since optuna 5), so the list must not shrink.

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


SamplerFactory = Callable[["SweepSpec"], SamplerPlan]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


def build_sampler(spec: SweepSpec, source: str = "spec") -> SamplerPlan:
    """The spec's sampler, wrapped so that it never sees baselines. Bad ``sampler.options``
    raise a ``ConfigError`` naming the option."""
    try:
        plan = SAMPLERS.get(spec.sampler.name)(spec)
    except TypeError as e:
        raise ConfigError(f"{source}: field 'sampler.options': {e}") from None
    plan.sampler = search_trials_only(plan.sampler)
    return plan


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
    names = list(spec.search_space)
    axes = [spec.search_space[n].grid() or [] for n in names]
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]
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


def search_trials_only(inner: BaseSampler) -> BaseSampler:
    """Wrap ``inner`` so that it never sees baselines, and baselines sample nothing."""
    return _wrapper_class()(inner)


@functools.cache
def _wrapper_class() -> type:
    # Defined on first use so that importing this module does not import optuna.
    from optuna.samplers import BaseSampler

    class SearchTrialsOnly(BaseSampler):
        def __init__(self, inner: BaseSampler) -> None:
            self.inner = inner

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            if is_baseline(trial):
                return {}
            return self.inner.infer_relative_search_space(_SearchTrialsView(study), trial)

        def sample_relative(
            self, study: Any, trial: Any, search_space: dict[str, Any]
        ) -> dict[str, Any]:
            if not search_space:
                return {}
            return self.inner.sample_relative(_SearchTrialsView(study), trial, search_space)

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

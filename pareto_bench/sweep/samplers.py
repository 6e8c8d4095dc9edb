"""Optuna samplers by name, and the view of the study they get: search trials only.

Baselines live in the study (so that Optuna, the dashboard and the report see them beside the
trials) but they have no search parameters: the base model is untrained and ``grpo`` is a
fixed recipe. A sampler that saw them would learn nothing useful and, worse, GP's intersection
search space would collapse to nothing and fall back to random search. So every sampler is
wrapped to see the study without its baselines.

The grid "sampler" enumerates the grid up front: the sweep enqueues one trial per grid point,
so workers never race for grid cells and a grid sweep resumes like any other.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pareto_bench.core.registry import Registry
from pareto_bench.core.schema import ConfigError

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from pareto_bench.sweep.spec import SweepSpec

KIND_ATTR = "kind"  # trial user attribute: "trial" or "baseline"
BASELINE = "baseline"
SEARCH = "trial"


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


def _search_only(trials: Sequence[Any]) -> list[Any]:
    return [t for t in trials if not is_baseline(t)]


class _SearchTrialsView:
    """The study as a sampler should see it: the same object, minus the baselines."""

    def __init__(self, study: Any) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[Any]:
        return _search_only(self._study._get_trials(*args, **kwargs))

    def get_trials(self, *args: Any, **kwargs: Any) -> list[Any]:
        return _search_only(self._study.get_trials(*args, **kwargs))

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

"""Checking a sweep before it runs, and ``--dry-run``: the resolved trials, printed.

The dry run goes through the same code as a real sweep (an in-memory copy of the study, the
same claims, the same parameter sampling and trainer-config resolution); it only stops short
of the executor. It needs neither the model nor the data: on a machine without them it plans
the whole sweep and lists what it could not check, which a real sweep checks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_bench.core.records import BASELINE, TRIAL
from pareto_bench.sweep.resolve import preflight, resolve_trial_config
from pareto_bench.sweep.samplers import KIND_ATTR, build_sampler
from pareto_bench.sweep.spec import SweepSpec
from pareto_bench.sweep.study import SweepStudy, quiet_optuna, trial_name


@dataclass
class PlannedTrial:
    number: int
    kind: str
    name: str
    params: dict[str, Any]
    config: dict[str, Any] | None  # the resolved TrainConfig; None for the base model


def plan_trials(
    spec: SweepSpec,
    spec_path: Path | None,
    budget: int | None = None,
    unchecked: list[str] | None = None,
) -> list[PlannedTrial]:
    """The baselines and the first ``budget`` trials, with the parameters the sampler would
    propose before it has seen any result. A missing model or data file raises, or, with
    ``unchecked``, is listed there and the plan goes on."""
    import optuna

    budget = spec.trials if budget is None else budget
    preflight(spec, spec_path, unchecked)
    plan = build_sampler(spec, str(spec_path or "spec"))
    quiet_optuna()
    storage = optuna.storages.InMemoryStorage()
    study = SweepStudy.open(spec, storage, "(dry run)", plan, n_trials=budget, coordinator=True)
    planned = []
    while (claimed := study.claim(budget)) is not None:
        trial, _ = claimed
        kind = trial.user_attrs.get(KIND_ATTR, TRIAL)
        name = trial_name(trial)
        params = (
            {key: p.suggest(trial, key) for key, p in spec.search_space.items()}
            if kind == TRIAL
            else {}
        )
        config = resolve_trial_config(spec, spec_path, kind, name, params)
        planned.append(PlannedTrial(trial.number, kind, name, params, config))
    return planned


def render_plan(spec: SweepSpec, planned: list[PlannedTrial], *, adaptive: bool) -> Any:
    """A rich renderable of the plan (printed on stdout by the CLI)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    header = Text.assemble(
        ("sweep ", "bold"),
        (spec.name, "bold cyan"),
        f": model {spec.model}, recipe {spec.recipe}, training task {spec.task}\n",
        f"eval {', '.join(spec.eval.tasks)} at tau {', '.join(f'{t:g}' for t in spec.eval.all_thresholds)}"
        f" (operating {spec.eval.operating_threshold:g}"
        + (f", limit {spec.eval.limit}" if spec.eval.limit else "")
        + ")\n",
        f"objectives (maximised): {', '.join(spec.objective_keys)}\n",
        f"sampler {spec.sampler.name}, seed {spec.seed}, executor {spec.executor.name}, "
        f"device {spec.device}, dtype {spec.dtype}",
        (
            f"\n{spec.replicates.size} replicates per configuration (seeds "
            f"{', '.join(map(str, spec.seeds))}; the untrained base model runs once), "
            f"{spec.replicates.aggregate} objective, at least {spec.replicates.required} must complete"
            if spec.replicates.size > 1
            else ""
        ),
    )
    space = Table(title="search space", title_justify="left", box=None)
    space.add_column("trainer field")
    space.add_column("Optuna distribution")
    for key, param in spec.search_space.items():
        space.add_row(key, str(param.distribution()))
    trials = Table(title="trials", title_justify="left", box=None)
    for column in ("#", "kind", "name", "steps", "params"):
        trials.add_column(column)
    for p in planned:
        steps = str(p.config["steps"]) if p.config else "-"
        recipe = "" if p.kind != BASELINE else (" (untrained)" if p.config is None else " (recipe)")
        params = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.params.items()
        )
        trials.add_row(str(p.number), p.kind, p.name + recipe, steps, params)
    parts: list[Any] = [header, space, trials]
    if adaptive:
        parts.append(
            Text(
                f"{spec.sampler.name} adapts to results: the parameters above are what it proposes before "
                "any trial has finished; later trials will differ.",
                style="dim",
            )
        )
    return Group(*parts)

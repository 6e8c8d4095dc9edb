"""Optuna hyperparameter importances, one ranking per objective.

The study is read from the storage that sweep.json names. If that storage cannot be read (a
database that is gone, a sweep loaded from MLflow), the study is rebuilt in memory from
trials.jsonl, with each parameter's distribution inferred from the values it took.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pareto_bench.analysis.report.sweep_data import SweepData

# fANOVA fits a random forest; below this many finished trials its ranking is noise.
MIN_TRIALS = 3


@dataclass
class Importances:
    by_objective: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""  # where the study came from
    note: str = ""  # why some or all rankings are missing


def _resolve_storage(sweep: SweepData) -> Any | None:
    """An Optuna storage for the sweep's study, or None where none can be read safely."""
    import optuna

    storage = sweep.meta.get("storage")
    if not storage:
        journal = sweep.root / "study.journal"
        storage = str(journal) if journal.is_file() else None
    if not storage:
        return None
    storage = str(storage)
    if "://" not in storage:
        candidates = [Path(storage), sweep.root / storage, sweep.root / Path(storage).name]
        journal = next((p for p in candidates if p.is_file()), None)
        if journal is None:
            return None
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        )
    if storage.startswith("sqlite:///"):
        # Opening a missing SQLite file would create an empty database: check first.
        path = Path(storage.removeprefix("sqlite:///"))
        located = next(
            (p for p in (path, sweep.root / path, sweep.root / path.name) if p.is_file()), None
        )
        return f"sqlite:///{located}" if located else None
    return storage


def _study_from_storage(sweep: SweepData) -> tuple[Any | None, str]:
    import optuna

    try:
        storage = _resolve_storage(sweep)
        if storage is None:
            return None, "no readable study storage"
        study = optuna.load_study(study_name=sweep.meta.get("study_name"), storage=storage)
    except Exception as e:  # any storage failure falls back to the recorded trials
        return None, f"study storage unreadable ({type(e).__name__}: {e})"
    return study, "Optuna study storage"


def _infer_distribution(values: list[Any]) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if all(isinstance(v, bool | str) for v in values):
        return CategoricalDistribution(sorted(set(values), key=str))
    if all(isinstance(v, int) for v in values):
        return IntDistribution(min(values), max(values))
    if all(isinstance(v, int | float) for v in values):
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted({str(v) for v in values}))


def _study_from_records(sweep: SweepData, objectives: list[str]) -> Any | None:
    """An in-memory study of the completed trials that recorded every objective."""
    import optuna

    trials = [
        t.record
        for t in sweep.searched
        if t.record.state == "COMPLETE" and all(k in t.record.objectives for k in objectives)
    ]
    names = sorted({k for r in trials for k in r.params})
    distributions = {}
    for name in names:
        values = [r.params[name] for r in trials if name in r.params]
        distributions[name] = _infer_distribution(values)
    study = optuna.create_study(directions=["maximize"] * len(objectives))
    for record in trials:
        params = {k: _as_choice(distributions[k], v) for k, v in record.params.items()}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: distributions[k] for k in params},
                values=[float(record.objectives[k]) for k in objectives],
            )
        )
    return study


def _study_of(trials: list[Any], directions: list[Any]) -> Any:
    import optuna

    study = optuna.create_study(directions=directions)
    study.add_trials(trials)
    return study


def _as_choice(distribution: Any, value: Any) -> Any:
    """Mixed-type parameters become string categories; match their values to that."""
    choices = getattr(distribution, "choices", None)
    return str(value) if choices is not None and value not in choices else value


def _objective_names(study: Any, sweep: SweepData) -> list[str]:
    """The study's metric names, else sweep.json's ``objectives``, else positions."""
    for names in (getattr(study, "metric_names", None), sweep.meta.get("objectives")):
        if isinstance(names, list) and len(names) == len(study.directions):
            return [str(n) for n in names]
    return [f"objective {i}" for i in range(len(study.directions))]


def _default_objectives(sweep: SweepData) -> list[str]:
    recorded = {k for t in sweep.searched for k in t.record.objectives}
    return [
        key
        for task in sweep.tasks
        for key in (f"{task}/accuracy", f"{task}/tpf")
        if key in recorded
    ]


def compute_importances(sweep: SweepData, seed: int = 0) -> Importances:
    """Per-objective parameter importances (fANOVA, normalised to sum to 1)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, source = _study_from_storage(sweep)
    if study is not None:
        objectives = _objective_names(study, sweep)
    else:
        objectives = _default_objectives(sweep)
        fallback_reason = source
        study = _study_from_records(sweep, objectives) if objectives else None
        source = f"rebuilt from trials.jsonl ({fallback_reason})"
    result = Importances(source=source)
    if study is None:
        result.note = "no objectives were recorded, so there is nothing to rank"
        return result
    # Baselines sit in the study without parameters; Optuna ranks only the parameters every
    # trial has, so they would empty every ranking.
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.params]
    if len(finished) != len(study.trials):
        study = _study_of(finished, study.directions)
    if len(finished) < MIN_TRIALS:
        result.note = (
            f"needs at least {MIN_TRIALS} completed trials with parameters; "
            f"the study has {len(finished)}"
        )
        return result
    problems = []
    for index, name in enumerate(objectives):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ranking = get_param_importances(
                    study,
                    evaluator=FanovaImportanceEvaluator(seed=seed),
                    target=lambda t, i=index: t.values[i],
                )
        except (ValueError, RuntimeError) as e:
            problems.append(f"{name}: {e}")
            continue
        result.by_objective[name] = {k: float(v) for k, v in ranking.items()}
    result.note = "; ".join(problems)
    return result

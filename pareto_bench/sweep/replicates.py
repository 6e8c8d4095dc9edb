"""Seed replicates: every configuration of a sweep trains and evaluates once per seed.

A *configuration* is one trial of the sweep's study (a sampled point or a baseline); Optuna
sees one value per configuration, the aggregate (median, or mean) of its replicates'
objectives. Its *replicates* are jobs in a second study of the same storage,
``<sweep>.replicates``, claimed one at a time like trials, so that they run on free cores,
GPUs or SLURM nodes in parallel and a killed sweep resumes replicate by replicate.

The worker that claims a configuration samples its parameters, queues one job per seed and
marks the configuration with its seeds (``study.REPLICATE_SEEDS``); from then on the configuration lives as long as its
jobs do, whichever worker runs them. The worker that finishes a configuration's last job
aggregates: the configuration completes when at least ``replicates.min_complete`` jobs did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from pareto_bench.analysis.frontier import combine
from pareto_bench.core.files import replicate_dir_name
from pareto_bench.core.records import BASE_MODEL_BASELINE, BASELINE, REPLICATE, EvalRecord
from pareto_bench.sweep.samplers import KIND_ATTR
from pareto_bench.sweep.spec import SweepSpec
from pareto_bench.sweep.study import (
    ATTEMPT,
    NAME,
    OBJECTIVES,
    SEED,
    SLOT,
    TrialQueue,
    WorkerId,
)

CONFIGURATION = "configuration"  # job attribute: its configuration's trial number


def study_name(sweep: str) -> str:
    return f"{sweep}.replicates"


def seeds_of(spec: SweepSpec, kind: str, name: str) -> list[int]:
    """A configuration's seeds. The base model trains nothing and decodes greedily, so every
    seed would give the same result: it runs once."""
    seeds = spec.seeds
    return seeds[:1] if kind == BASELINE and name == BASE_MODEL_BASELINE else seeds


class ReplicateQueue(TrialQueue):
    """The replicate jobs of one sweep."""

    def __init__(self, storage: Any, sweep: str, directions: int, retry_killed: bool) -> None:
        super().__init__(storage, WorkerId.current())
        import optuna

        name = study_name(sweep)
        # Whichever worker comes first makes it; the others find it made.
        with contextlib.suppress(optuna.exceptions.DuplicatedStudyError):
            optuna.create_study(
                storage=storage, study_name=name, directions=["maximize"] * directions
            )
        self.name = name
        self.retry_killed = retry_killed
        self._study_id = storage.get_study_id_from_name(name)

    def _study(self) -> Any:
        import optuna

        return optuna.load_study(study_name=self.name, storage=self.storage)

    def enqueue(self, configuration: int, name: str, seeds: Sequence[int]) -> None:
        """One waiting job per seed of ``configuration``; idempotent."""
        existing = {
            (t.user_attrs.get(CONFIGURATION), t.user_attrs.get(SEED)) for t in self.trials()
        }
        study = self._study()
        for seed in seeds:
            if (configuration, seed) not in existing:
                study.enqueue_trial({}, user_attrs=_job_attrs(configuration, name, seed, 0))

    def claim(self) -> Any | None:
        return self.claim_next(lambda job: True)

    def complete(self, number: int, values: Sequence[float]) -> None:
        from optuna.trial import TrialState

        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, list(values))

    def jobs_of(self, configuration: int) -> list[Any]:
        """The configuration's jobs, the latest attempt per seed."""
        latest: dict[int, Any] = {}
        for job in self.trials():
            if job.user_attrs.get(CONFIGURATION) == configuration:
                latest[int(job.user_attrs[SEED])] = job
        return [latest[seed] for seed in sorted(latest)]

    def retry(self, dead: Any) -> bool:
        """Queue a killed job once more, for the same configuration and seed."""
        attempt = int(dead.user_attrs.get(ATTEMPT, 0)) + 1
        if not self.retry_killed or attempt > 1:
            return False
        attrs = dead.user_attrs
        self._study().enqueue_trial(
            {}, user_attrs=_job_attrs(attrs[CONFIGURATION], attrs[NAME], attrs[SEED], attempt)
        )
        return True


def _job_attrs(configuration: int, name: str, seed: int, attempt: int) -> dict[str, Any]:
    return {
        KIND_ATTR: REPLICATE,
        SLOT: f"{configuration}/{seed}",
        ATTEMPT: attempt,
        CONFIGURATION: configuration,
        NAME: name,
        SEED: seed,
    }


def replicate_name(configuration: str, seed: int) -> str:
    return f"{configuration}/{replicate_dir_name(seed)}"


def finished(jobs: Sequence[Any]) -> bool:
    return all(job.state.name in ("COMPLETE", "FAIL") for job in jobs)


def aggregate(objectives: Sequence[Mapping[str, float]], how: str) -> dict[str, float]:
    """Each objective's median (or mean) over the replicates that report it."""
    keys = dict.fromkeys(k for o in objectives for k in o)
    return {k: combine([o[k] for o in objectives if k in o], how) for k in keys}


def completed_objectives(jobs: Sequence[Any]) -> list[dict[str, float]]:
    return [dict(j.user_attrs.get(OBJECTIVES) or {}) for j in jobs if j.state.name == "COMPLETE"]


def pool(replicates: Sequence[Sequence[EvalRecord]]) -> list[EvalRecord]:
    """One record per (task, threshold) over all replicates: their samples together, accuracy
    over all samples and TPF as total tokens over total forwards."""
    groups: dict[tuple[str, float], list[EvalRecord]] = {}
    for records in replicates:
        for record in records:
            groups.setdefault((record.task, record.threshold), []).append(record)
    pooled = []
    for (task, threshold), rows in groups.items():
        n = sum(r.num_samples for r in rows)
        tokens = sum(r.total_tokens for r in rows)
        forwards = sum(r.total_forwards for r in rows)
        pooled.append(
            EvalRecord(
                task=task,
                threshold=threshold,
                accuracy=sum(r.accuracy * r.num_samples for r in rows) / n if n else 0.0,
                tpf=tokens / forwards if forwards else 0.0,
                num_samples=n,
                total_tokens=tokens,
                total_forwards=forwards,
                model=rows[0].model,
                task_version=rows[0].task_version,
                block_size=rows[0].block_size,
                strategy=rows[0].strategy,
                extra={  # e.g. answer accuracy: weighted by samples, as the accuracy is
                    key: sum(r.extra.get(key, 0.0) * r.num_samples for r in rows) / n
                    for key in rows[0].extra
                }
                if n
                else {},
                samples=[s for r in rows for s in r.samples],
            )
        )
    return pooled

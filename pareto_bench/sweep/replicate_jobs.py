"""Running seed replicates: queueing a configuration's jobs, running them, finishing the
configuration, and recovering jobs whose worker died (the queue itself and the arithmetic
are in :mod:`pareto_bench.sweep.replicates`)."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from pareto_bench.core.files import EVAL_FILE
from pareto_bench.core.records import TRIAL, EvalRecord, TrialRecord, append_jsonl, read_jsonl
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep import tracker_layout
from pareto_bench.sweep.display import params_text
from pareto_bench.sweep.replicates import (
    CONFIGURATION,
    ReplicateQueue,
    aggregate,
    completed_objectives,
    finished,
    pool,
    replicate_name,
    seeds_of,
)
from pareto_bench.sweep.samplers import KIND_ATTR
from pareto_bench.sweep.study import (
    NAME,
    OBJECTIVES,
    REPLICATE_SEEDS,
    RUN_ID,
    SEED,
    WALL_TIME,
    record_of,
    trial_name,
)
from pareto_bench.sweep.trial import TrialFailed
from pareto_bench.tracking import Metric

if TYPE_CHECKING:
    from pareto_bench.sweep.runner import Sweep


class ReplicateJobs:
    """The replicate side of one worker's loop: it runs jobs through the loop's executor and
    ends configurations through the loop's ``end_trial``."""

    def __init__(self, sweep: Sweep, queue: ReplicateQueue) -> None:
        self.sweep, self.queue = sweep, queue

    def claim(self) -> Any | None:
        return self.queue.claim()

    def enqueue(self, trial: Any) -> None:
        """Sample a claimed configuration, open its run and queue one job per seed. Its
        jobs are claimed like trials, by this worker or any other."""
        sweep = self.sweep
        number, name = trial.number, trial_name(trial)
        kind = trial.user_attrs.get(KIND_ATTR, TRIAL)
        params = sweep.sample(trial, kind)
        sweep.study.set_attrs(number, **{NAME: name, SEED: sweep.spec.seed})
        # The jobs' runs are its children: it must exist before any of them starts.
        run_id = sweep.runs.wait(sweep.runs.open_trial(number, name, kind))
        try:
            spec = sweep.trial_spec(number, kind, name, params)
        except ConfigError as e:  # a sampled value the trainer config rejects: no job would run
            sweep.end_trial(number, run_id, 0.0, f"ConfigError: {e}", {}, None)
            return
        sweep.tracker.log_params(run_id, tracker_layout.trial_params(spec))
        seeds = seeds_of(sweep.spec, kind, name)
        self.queue.enqueue(number, name, seeds)
        sweep.study.set_attrs(number, **{REPLICATE_SEEDS: seeds})
        sweep.display.note(
            f"{name} (#{number}): {len(seeds)} replicate(s) queued, seeds "
            + ", ".join(map(str, seeds))
            + (f": {params_text(params)}" if params else "")
        )

    def run(self, job: Any) -> TrialRecord:
        """Run one replicate job; the worker that ends a configuration's last job finishes it."""
        sweep, queue = self.sweep, self.queue
        number, seed = int(job.user_attrs[CONFIGURATION]), int(job.user_attrs[SEED])
        configuration = sweep.study.frozen(number)
        if configuration.state.name != "RUNNING":  # it failed (its worker died) before queueing all
            reason = f"its configuration #{number} is {configuration.state.name}, not running"
            queue.fail(job.number, reason)
            return self._record(queue.frozen(job.number), "FAIL", reason)
        kind = configuration.user_attrs.get(KIND_ATTR, TRIAL)
        name = trial_name(configuration)
        started = time.monotonic()
        parent = str(configuration.user_attrs.get(RUN_ID, ""))
        run = sweep.runs.open_replicate(queue, job.number, parent, name, seed)
        try:
            with queue.heartbeat(job.number, sweep.spec.executor.heartbeat_s):
                params = dict(configuration.params)
                outcome = sweep.execute(
                    lambda: sweep.trial_spec(number, kind, name, params, seed), run
                )
        except KeyboardInterrupt:
            run_id = sweep.runs.wait(run)
            queue.fail(job.number, "interrupted (Ctrl-C or SIGTERM)")
            sweep.tracker.end_run(run_id, "KILLED")
            queue.retry(queue.frozen(job.number))
            raise
        run_id = sweep.runs.wait(run)
        queue.set_attrs(job.number, **{WALL_TIME: time.monotonic() - started})
        if outcome.failure:
            queue.fail(job.number, outcome.failure)
        else:
            queue.set_attrs(job.number, **{OBJECTIVES: outcome.objectives})
            queue.complete(job.number, outcome.values)
        status = "FAILED" if outcome.failure else "FINISHED"
        sweep.runs.end(run_id, sweep.out.replicate_dir(number, seed), status, outcome.failure)
        state = "FAIL" if outcome.failure else "COMPLETE"
        record = self._record(queue.frozen(job.number), state, outcome.failure)
        sweep.out.append_replicate(record)
        sweep.display.trial_finished(record)
        self.finish_configuration(number)
        return record

    def finish_configuration(self, number: int) -> None:
        """Once every job of configuration ``number`` has ended: pool their evaluations into
        its ``eval.jsonl``, log the aggregate to its run and tell the study. Idempotent: the
        study accepts one tell, and a configuration already told is left alone."""
        sweep = self.sweep
        configuration = sweep.study.frozen(number)
        jobs = self.queue.jobs_of(number)
        if configuration.state.name != "RUNNING" or not jobs or not finished(jobs):
            return
        done = completed_objectives(jobs)
        objectives = aggregate(done, sweep.spec.replicates.aggregate)
        seeds = [int(j.user_attrs[SEED]) for j in jobs if j.state.name == "COMPLETE"]
        records = pool(
            [read_jsonl(sweep.out.replicate_dir(number, s) / EVAL_FILE, EvalRecord) for s in seeds]
        )
        eval_file = sweep.out.trial_dir(number) / EVAL_FILE
        eval_file.unlink(missing_ok=True)
        append_jsonl(eval_file, records)
        required = min(sweep.spec.replicates.required, len(jobs))  # the base model has one
        failure = ""
        values: list[float] = []
        if len(done) < required:
            failure = (
                f"{len(done)} of {len(jobs)} replicates completed; replicates.min_complete "
                f"needs {required}"
            )
        else:
            try:
                values = sweep.objective_values(objectives)
            except TrialFailed as e:
                failure = e.reason
        run_id = str(configuration.user_attrs.get(RUN_ID, ""))
        if not failure:
            counts = [
                Metric("replicates/complete", len(done)),
                Metric("replicates/total", len(jobs)),
            ]
            sweep.runs.log_evaluation(run_id, records, objectives, counts)
            sweep.runs.log_plots(run_id, trial_name(configuration), records)
        wall = sum(float(j.user_attrs.get(WALL_TIME) or 0.0) for j in jobs)
        tell = (sweep.study.study(), number, values)
        sweep.end_trial(number, run_id, wall, failure, objectives, tell)

    def recover_dead(self) -> list[TrialRecord]:
        """Fail (and queue once more) every job whose worker died, then finish any configuration
        whose last job ended with a worker that died before it could aggregate."""
        sweep, queue = self.sweep, self.queue
        recovered = []
        for job, reason in queue.dead_trials(sweep.spec.executor.stale_after_s):
            if not queue.fail(job.number, reason):
                continue
            sweep.runs.end_dead(str(job.user_attrs.get(RUN_ID, "")), reason)
            record = self._record(queue.frozen(job.number), "FAIL", reason)
            sweep.out.append_replicate(record)
            recovered.append(record)
            retried = queue.retry(job)
            sweep.display.note(
                f"{record.name} (#{record.number}) marked FAILED: {reason}"
                + ("; queued again" if retried else "")
            )
        for trial in sweep.study.trials():
            if trial.state.name == "RUNNING" and trial.user_attrs.get(REPLICATE_SEEDS):
                self.finish_configuration(trial.number)
        return recovered

    def _record(self, job: Any, state: str, failure: str) -> TrialRecord:
        number = int(job.user_attrs[CONFIGURATION])
        return dataclasses.replace(
            record_of(job),
            number=number,
            params=dict(self.sweep.study.frozen(number).params),
            name=replicate_name(trial_name(job), int(job.user_attrs[SEED])),
            state=state,
            failure_reason=failure,
        )

"""Running a sweep: the worker loop that turns study slots into tracked, recorded trials.

Every process of a sweep, the first one or the Nth ``--worker``, runs the same loop:

1. open the output directory, the study (set up once) and the tracker's parent run;
2. fail (and re-enqueue once) any trial whose worker died;
3. claim the next waiting trial, sample its parameters, resolve its trainer config;
4. run it through the executor, streaming its training curve to the tracker;
5. log its evaluation and artifacts, append to ``trials.jsonl``, then tell the study;

until no trial is left. With seed replicates (``replicates`` in the spec), step 3 queues one job
per seed instead, the loop claims those jobs first, and the worker that ends a configuration's
last job tells the study their aggregate (:mod:`pareto_bench.sweep.replicate_jobs`). Optuna
is the source of truth for trial state; ``trials.jsonl`` and the tracker's runs
(:mod:`pareto_bench.sweep.tracker_runs`) follow it, and a re-run first brings ``trials.jsonl``
up to date.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pareto_bench.core.records import TRIAL, EvalRecord, TrialRecord
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep import tracker_layout
from pareto_bench.sweep.display import Snapshot, SweepDisplay, best_records
from pareto_bench.sweep.executors import SLOT_ENV, Executor, make_executor
from pareto_bench.sweep.outdir import SweepDir
from pareto_bench.sweep.replicate_jobs import ReplicateJobs
from pareto_bench.sweep.replicates import ReplicateQueue, replicate_name
from pareto_bench.sweep.resolve import preflight, resolve_trial_config
from pareto_bench.sweep.samplers import KIND_ATTR, build_sampler
from pareto_bench.sweep.spec import SweepSpec, spec_warnings
from pareto_bench.sweep.study import (
    NAME,
    OBJECTIVES,
    RUN_ID,
    SEED,
    WALL_TIME,
    SweepStudy,
    open_storage,
    record_of,
    trial_name,
)
from pareto_bench.sweep.tracker_runs import SweepRuns, mark_parent_pending
from pareto_bench.sweep.trial import TrialFailed, TrialSpec, failure_reason, summarize
from pareto_bench.tracking import Tracker, default_tracking_uri, get_tracker


@dataclass
class SweepOptions:
    spec_path: Path | None = None
    trials: int | None = None  # the search budget; None uses the spec's
    storage: str | None = None  # None: a journal file in the output directory
    tracking_uri: str | None = None  # None: the local SQLite store under the cwd
    out_dir: Path | None = None  # None: runs/<spec name>
    worker: bool = False  # join an existing sweep; never changes its setup
    progress: bool = True
    max_trials: int | None = None  # stop this process after this many trials


@dataclass
class TrackingTime:
    """Seconds of tracking work in one sweep process."""

    busy: float = 0.0  # every tracker call and plot, in any thread
    blocking: float = 0.0  # the part the worker loop waited for: what tracking costs the sweep
    setup: float = 0.0  # of ``blocking``, before the first trial: MLflow import, store, parent run


@dataclass
class Outcome:
    """What running one trial (or replicate) gave: its records and objectives, or a failure."""

    records: list[EvalRecord] = field(default_factory=list)
    objectives: dict[str, float] = field(default_factory=dict)
    values: list[float] = field(default_factory=list)  # the objectives Optuna is told, in order
    failure: str = ""


@dataclass
class SweepResult:
    out_dir: Path
    storage: str
    tracking_uri: str
    parent_run_id: str
    ran: list[TrialRecord] = field(default_factory=list)  # what this process ran
    recovered: list[TrialRecord] = field(default_factory=list)  # dead trials it marked failed
    counts: dict[str, int] = field(default_factory=dict)  # the study's trial states at the end
    tracking: TrackingTime = field(default_factory=TrackingTime)


def default_out_dir(spec: SweepSpec) -> Path:
    return Path("runs") / spec.name


def run_sweep(spec: SweepSpec, options: SweepOptions) -> SweepResult:
    """Run (or join) a sweep. A coordinator with ``executor.workers`` above 1 starts that many
    minus one more worker processes on its study (each with its own slot of GPUs), runs trials
    itself, and waits for them."""
    sweep = Sweep.open(spec, options)
    helpers = [] if options.worker else sweep.start_helpers()
    try:
        result = sweep.run()
    except BaseException:
        for helper in helpers:
            helper.terminate()
        raise
    finally:
        for helper in helpers:
            helper.wait()
    if helpers:  # what the helpers finished after this process ran out of trials counts too
        result.counts = dict(sweep.study.state_counts())
    return result


class Sweep:
    """One process's worker loop on a sweep: claim a trial, execute it, tell the study. Its
    runs in the tracker are ``runs``'; its replicate jobs, if any, ``replicates``'."""

    def __init__(
        self,
        spec: SweepSpec,
        options: SweepOptions,
        out: SweepDir,
        study: SweepStudy,
        tracker: Tracker,
        executor: Executor,
        queue: ReplicateQueue | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.out = out
        self.study = study
        self.tracker = tracker
        self.executor = executor
        self.budget = options.trials if options.trials is not None else spec.trials
        self.display = SweepDisplay(
            spec.name, spec.objective_keys, self.snapshot, enabled=options.progress
        )
        self.runs = SweepRuns(spec, options.spec_path, study, tracker, out, self.display)
        # None: one seed per configuration, no jobs.
        self.replicates = ReplicateJobs(self, queue) if queue is not None else None

    @classmethod
    def open(cls, spec: SweepSpec, options: SweepOptions) -> Sweep:
        out = SweepDir(Path(options.out_dir or default_out_dir(spec)))
        out.root.mkdir(parents=True, exist_ok=True)
        budget = options.trials if options.trials is not None else spec.trials
        preflight(spec, options.spec_path)  # fail now, not in the middle of the sweep
        plan = build_sampler(spec, str(options.spec_path or "spec"))
        storage, label = open_storage(options.storage, out.root)
        tracker = get_tracker(options.tracking_uri or default_tracking_uri())
        tracker.warm_up()  # MLflow's import and store open overlap with the study's setup
        study = SweepStudy.open(
            spec,
            storage,
            label,
            plan,
            n_trials=budget,
            coordinator=not options.worker,
            on_setup=lambda s: mark_parent_pending(s, tracker.uri),
        )
        executor = make_executor(spec.executor.name, spec.executor.body, spec.executor.model_extra)
        queue = None
        if spec.replicates.size > 1:
            directions = len(spec.objective_keys)
            queue = ReplicateQueue(storage, spec.name, directions, spec.retry_killed)
        sweep = cls(spec, options, out, study, tracker, executor, queue)
        sweep.runs.catch_up_records()
        return sweep

    def workers(self) -> int:
        wanted = self.spec.executor.workers
        if wanted != "auto":
            return int(wanted)
        return self.executor.slots(self.spec.executor.threads)

    def start_helpers(self) -> list[subprocess.Popen[bytes]]:
        """Worker processes for the slots beyond this one's, logging to ``worker-<slot>.log``."""
        command = [sys.executable, "-m", "pareto_bench", "sweep", str(self.out.spec_yaml)]
        command += ["--worker", "--out", str(self.out.root), "--no-progress"]
        command += ["--tracking-uri", self.tracker.uri]
        if self.options.storage:
            command += ["--storage", self.options.storage]
        if self.options.trials is not None:
            command += ["--trials", str(self.options.trials)]
        helpers = []
        for slot in range(1, self.workers()):
            log = (self.out.root / f"worker-{slot}.log").open("ab")
            env = {**os.environ, SLOT_ENV: str(slot)}
            helpers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
            log.close()
        if helpers:
            self.display.note(
                f"{len(helpers)} more worker(s) on this machine: {self.out.root}/worker-*.log"
            )
        return helpers

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> SweepResult:
        result = SweepResult(self.out.root, self.study.storage_label, self.tracker.uri, "")
        result.tracking.setup = self.runs.blocking_seconds()
        try:
            with self.display:
                for warning in spec_warnings(self.spec):
                    self.display.note(f"warning: {warning}")
                while self.options.max_trials is None or len(result.ran) < self.options.max_trials:
                    result.recovered += self.recover_dead()
                    # Replicates first: finish configurations before sampling new ones.
                    job = self.replicates.claim() if self.replicates else None
                    if job is not None:
                        result.ran.append(self.replicates.run(job))
                        continue
                    claimed = self.study.claim(self.budget)
                    if claimed is None:
                        break
                    if self.replicates:
                        self.replicates.enqueue(claimed[0])
                    else:
                        result.ran.append(self.run_trial(*claimed))
        finally:
            self.runs.close()
        result.recovered += self.recover_dead()
        result.counts = dict(self.study.state_counts())
        result.parent_run_id = self.runs.parent_run_id
        self.runs.finish(result.counts)
        result.tracking.blocking = self.runs.blocking_seconds()
        result.tracking.busy = self.runs.busy_seconds()
        return result

    def recover_dead(self) -> list[TrialRecord]:
        """Fail every trial whose worker died: in the study, the tracker and trials.jsonl."""
        recovered = []
        for trial, reason in self.study.dead_trials(self.spec.executor.stale_after_s):
            if not self.study.fail(trial.number, reason):
                continue  # another worker got there first
            self.runs.end_dead(str(trial.user_attrs.get(RUN_ID, "")), reason)
            record = record_of(self.study.frozen(trial.number))
            self.out.append_trial(record)
            recovered.append(record)
            retried = self.study.retry(trial)
            self.display.note(
                f"{record.name} (#{record.number}) marked FAILED: {reason}"
                + ("; re-enqueued with the same parameters" if retried else "")
            )
        if self.replicates is not None:
            recovered += self.replicates.recover_dead()
        return recovered

    def run_trial(self, trial: Any, optuna_study: Any) -> TrialRecord:
        number = trial.number
        kind = trial.user_attrs.get(KIND_ATTR, TRIAL)
        name = trial_name(trial)
        params = self.sample(trial, kind)
        started = time.monotonic()
        self.study.set_attrs(number, **{NAME: name, SEED: self.spec.seed})
        run = self.runs.open_trial(number, name, kind)
        try:
            with self.study.heartbeat(number, self.spec.executor.heartbeat_s):
                outcome = self.execute(lambda: self.trial_spec(number, kind, name, params), run)
        except KeyboardInterrupt:
            reason = "interrupted (Ctrl-C or SIGTERM)"
            wall = time.monotonic() - started
            self.end_trial(number, self.runs.wait(run), wall, reason, {}, None, "KILLED")
            self.study.retry(self.study.frozen(number))  # a re-run picks it up again
            raise
        run_id = self.runs.wait(run)
        if not outcome.failure:
            self.runs.log_plots(run_id, name, outcome.records)
        tell = (optuna_study, trial, None if outcome.failure else outcome.values)
        wall = time.monotonic() - started
        return self.end_trial(number, run_id, wall, outcome.failure, outcome.objectives, tell)

    def sample(self, trial: Any, kind: str) -> dict[str, Any]:
        if kind != TRIAL:
            return {}
        return {key: param.suggest(trial, key) for key, param in self.spec.search_space.items()}

    def execute(
        self, make_spec: Callable[[], TrialSpec], run: concurrent.futures.Future[str]
    ) -> Outcome:
        """Run one trial (or replicate) through the executor, streaming its curve to ``run``,
        and log its evaluation there. A failure, resolving its config included, is returned,
        not raised; Ctrl-C propagates."""
        failure = detail = ""
        try:
            spec = make_spec()
            self.runs.log_params(run, tracker_layout.trial_params(spec))
            total = (spec.config or {}).get("steps")
            self.display.trial_started(spec.number, spec.name, spec.params, total)
            with self.runs.curve(run, self.display.step) as on_step:
                records = self.executor.run(spec, on_step)
            objectives = self._summarize(records)
            values = self.objective_values(objectives)
            self.runs.log_evaluation(self.runs.wait(run), records, objectives)
            return Outcome(records, objectives, values)
        except TrialFailed as e:
            failure, detail = e.reason, e.detail
        except ConfigError as e:  # a sampled value the trainer config rejects
            failure = f"ConfigError: {e}"
        except Exception as e:  # a harness error fails this trial, not the sweep
            failure, detail = failure_reason(e), traceback.format_exc()
        if detail:
            self.runs.log_text(self.runs.wait(run), "failure.txt", detail)
        return Outcome(failure=failure)

    def _summarize(self, records: list[EvalRecord]) -> dict[str, float]:
        return summarize(
            records,
            operating_threshold=self.spec.eval.operating_threshold,
            y_max=self.spec.eval.y_max,
            hv_reference=self.spec.eval.hv_reference,
        )

    def objective_values(self, objectives: dict[str, float]) -> list[float]:
        """The values Optuna is told, in the spec's order; NaN or missing fails the trial."""
        values = [objectives.get(key, math.nan) for key in self.spec.objective_keys]
        for key, value in zip(self.spec.objective_keys, values, strict=True):
            if not math.isfinite(value):
                raise TrialFailed(f"objective {key} is {objectives.get(key, 'missing')}")
        return values

    def end_trial(
        self,
        number: int,
        run_id: str,
        wall_time: float,
        failure: str,
        objectives: dict[str, float],
        tell: tuple[Any, Any, list[float] | None] | None,
        failed_status: str = "FAILED",
    ) -> TrialRecord:
        """Record a trial's end: its row in ``trials.jsonl``, its run, then the study."""
        self.study.set_attrs(number, **{WALL_TIME: wall_time})
        if not failure:
            self.study.set_attrs(number, **{OBJECTIVES: objectives})
        # The row goes to disk before the study hears of it: a worker killed in between leaves
        # a trial the study still calls RUNNING, which recovery then fails (and the row after
        # it wins). The other order could leave a finished trial whose row says RUNNING.
        state = "FAIL" if failure else "COMPLETE"
        record = dataclasses.replace(
            record_of(self.study.frozen(number)), state=state, failure_reason=failure
        )
        self.out.append_trial(record)
        status = failed_status if failure else "FINISHED"
        self.runs.end(run_id, self.out.trial_dir(number), status, failure)
        if failure:
            self.study.fail(number, failure)
        else:
            assert tell is not None and tell[2] is not None
            optuna_study, trial, values = tell
            self.study.complete(optuna_study, trial, values)
        self.runs.copy_trials_jsonl()
        self.display.trial_finished(record)
        return record

    def trial_spec(
        self,
        number: int,
        kind: str,
        name: str,
        params: dict[str, Any],
        seed: int | None = None,
    ) -> TrialSpec:
        """The trial's spec; with ``seed``, that replicate's (its own seed and directory)."""
        spec = self.spec
        config = resolve_trial_config(spec, self.options.spec_path, kind, name, params)
        trial_dir = self.out.trial_dir(number)
        if seed is not None:
            trial_dir = self.out.replicate_dir(number, seed)
            if config is not None:
                config["seed"] = seed
        return TrialSpec(
            number=number,
            kind=kind,
            name=replicate_name(name, seed) if seed is not None else name,
            trial_dir=str(trial_dir.resolve()),
            model=spec.model,
            tasks=list(spec.eval.tasks),
            thresholds=spec.eval.all_thresholds,
            config=config,
            params=params,
            limit=spec.eval.limit,
            batch_size=spec.eval.batch_size,
            max_new_tokens=spec.eval.max_new_tokens,
            eval_seed=spec.eval.seed,
            data_dir=str(spec.data_dir) if spec.data_dir else None,
            device=spec.device,
            dtype=spec.dtype,
            timeout_s=spec.executor.timeout_s,
            threads=spec.executor.threads,
        )

    def snapshot(self) -> Snapshot:
        trials = self.study.trials()
        records = [record_of(t) for t in trials if t.state.name != "WAITING"]
        finished = [r for r in records if r.state in ("COMPLETE", "FAIL") and r.wall_time > 0]
        return Snapshot(
            done=sum(r.state == "COMPLETE" for r in records),
            failed=sum(r.state == "FAIL" for r in records),
            running=sum(r.state == "RUNNING" for r in records),
            waiting=sum(
                t.state.name == "WAITING" and self.study.in_budget(t, self.budget) for t in trials
            ),
            mean_trial_s=sum(r.wall_time for r in finished) / len(finished) if finished else None,
            best=best_records(records, self.spec.objective_keys),
        )


__all__ = ["Sweep", "SweepOptions", "SweepResult", "default_out_dir", "run_sweep"]

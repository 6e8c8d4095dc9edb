"""Running a sweep: the worker loop that turns study slots into tracked, recorded trials.

Every process of a sweep, the first one or the Nth ``--worker``, runs the same loop:

1. open the output directory, the study (set up once) and the tracker's parent run;
2. fail (and re-enqueue once) any trial whose worker died;
3. claim the next waiting trial, sample its parameters, resolve its trainer config;
4. run it through the executor, streaming its training curve to the tracker;
5. log its evaluation and artifacts, append to ``trials.jsonl``, then tell the study;

until no trial is left. With seed replicates (``replicates`` in the spec), step 3 queues one job
per seed instead, the loop claims those jobs first, and the worker that ends a configuration's
last job tells the study their aggregate (:mod:`pareto_bench.sweep.replicates`). Optuna is
the source of truth for trial state; ``trials.jsonl`` and the tracker follow it, and a re-run
first brings ``trials.jsonl`` up to date.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pareto_bench.core.files import CONFIG_FILE, EVAL_FILE, TRAIN_FILE
from pareto_bench.core.records import (
    REPLICATE,
    TRIAL,
    EvalRecord,
    TrainStepRecord,
    TrialRecord,
    append_jsonl,
    read_jsonl,
)
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep import tracker_layout
from pareto_bench.sweep.display import Snapshot, SweepDisplay, best_records, params_text
from pareto_bench.sweep.executors import SLOT_ENV, Executor, make_executor
from pareto_bench.sweep.outdir import SweepDir, sweep_info
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
from pareto_bench.sweep.resolve import preflight, resolve_trial_config
from pareto_bench.sweep.samplers import KIND_ATTR, build_sampler, is_baseline
from pareto_bench.sweep.spec import (
    SweepSpec,
    flatten,
    spec_warnings,
)
from pareto_bench.sweep.study import (
    NAME,
    OBJECTIVES,
    REPLICATE_SEEDS,
    RUN_ID,
    SEED,
    WALL_TIME,
    SweepStudy,
    open_storage,
    record_of,
    trial_name,
)
from pareto_bench.sweep.trial import (
    TrialFailed,
    TrialSpec,
    failure_reason,
    summarize,
)
from pareto_bench.tracking import Metric, Tracker, default_tracking_uri, get_tracker

# How long a joining worker waits for the sweep's creator to make the parent run.
PARENT_RUN_WAIT_S = 60.0
PARENT_PENDING = "pending"

T = TypeVar("T")


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
    """One process's view of a sweep: its study, tracker, output directory and executor."""

    def __init__(
        self,
        spec: SweepSpec,
        options: SweepOptions,
        out: SweepDir,
        study: SweepStudy,
        tracker: Tracker,
        executor: Executor,
        replicates: ReplicateQueue | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.out = out
        self.study = study
        self.tracker = tracker
        self.executor = executor
        self.replicates = replicates  # None: one seed per configuration, no jobs
        self.budget = options.trials if options.trials is not None else spec.trials
        self.display = SweepDisplay(
            spec.name, spec.objective_keys, self.snapshot, enabled=options.progress
        )
        # Tracking work that a trial need not wait for runs here, in order: opening the store
        # and the parent run (seconds, on a new store), each trial's run and params, and its
        # plots. Records never go through it: they are written before the study is told.
        self._tracking = concurrent.futures.ThreadPoolExecutor(1, "pareto-bench-tracking")
        self._write_metadata(study.parent_run(tracker.uri))  # before the thread rewrites it
        self._parent: concurrent.futures.Future[str] = self._tracking.submit(self._open_parent_run)
        self.plot_seconds = 0.0  # rendering artifacts is tracking work too
        self.wait_seconds = 0.0  # the worker loop waiting on that thread

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
        replicates = None
        if spec.replicates.size > 1:
            directions = len(spec.objective_keys)
            replicates = ReplicateQueue(storage, spec.name, directions, spec.retry_killed)
        sweep = cls(spec, options, out, study, tracker, executor, replicates)
        sweep._catch_up_records()
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
        result.tracking.setup = self._blocking_tracking_seconds()
        try:
            with self.display:
                for warning in spec_warnings(self.spec):
                    self.display.note(f"warning: {warning}")
                while self.options.max_trials is None or len(result.ran) < self.options.max_trials:
                    result.recovered += self.recover_dead()
                    # Replicates first: finish configurations before sampling new ones.
                    job = self.replicates.claim() if self.replicates else None
                    if job is not None:
                        result.ran.append(self.run_replicate(job))
                        continue
                    claimed = self.study.claim(self.budget)
                    if claimed is None:
                        break
                    if self.replicates:
                        self.queue_replicates(*claimed)
                    else:
                        result.ran.append(self.run_trial(*claimed))
        finally:
            self._await(self._tracking.submit(lambda: None))  # let queued tracking finish
            self._tracking.shutdown(wait=True)
        result.recovered += self.recover_dead()
        result.counts = dict(self.study.state_counts())
        result.parent_run_id = self.parent_run_id
        self._finish_parent_run(result.counts)
        result.tracking.blocking = self._blocking_tracking_seconds()
        result.tracking.busy = self.tracker.seconds + self.plot_seconds
        return result

    def _blocking_tracking_seconds(self) -> float:
        return self.tracker.seconds_in_thread() + self.wait_seconds

    def _await(self, future: concurrent.futures.Future[T]) -> T:
        """The result of a tracking job, counting any wait as tracking time."""
        start = time.perf_counter()
        try:
            return future.result()
        finally:
            self.wait_seconds += time.perf_counter() - start

    @property
    def parent_run_id(self) -> str:
        return self._await(self._parent)

    def recover_dead(self) -> list[TrialRecord]:
        """Fail every trial whose worker died: in the study, the tracker and trials.jsonl."""
        recovered = []
        for trial, reason in self.study.dead_trials(self.spec.executor.stale_after_s):
            if not self.study.fail(trial.number, reason):
                continue  # another worker got there first
            run_id = str(trial.user_attrs.get(RUN_ID, ""))
            self.tracker.set_tags(run_id, {"failure_reason": reason})
            self.tracker.end_run(run_id, "FAILED")
            record = record_of(self.study.frozen(trial.number))
            self.out.append_trial(record)
            recovered.append(record)
            retried = self.study.retry(trial)
            self.display.note(
                f"{record.name} (#{record.number}) marked FAILED: {reason}"
                + ("; re-enqueued with the same parameters" if retried else "")
            )
        if self.replicates is not None:
            recovered += self._recover_dead_replicates(self.replicates)
        return recovered

    def _recover_dead_replicates(self, queue: ReplicateQueue) -> list[TrialRecord]:
        """Fail (and queue once more) every job whose worker died, then finish any configuration
        whose last job ended with a worker that died before it could aggregate."""
        recovered = []
        for job, reason in queue.dead_trials(self.spec.executor.stale_after_s):
            if not queue.fail(job.number, reason):
                continue
            run_id = str(job.user_attrs.get(RUN_ID, ""))
            self.tracker.set_tags(run_id, {"failure_reason": reason})
            self.tracker.end_run(run_id, "FAILED")
            record = self._replicate_record(queue.frozen(job.number), "FAIL", reason)
            self.out.append_replicate(record)
            recovered.append(record)
            retried = queue.retry(job)
            self.display.note(
                f"{record.name} (#{record.number}) marked FAILED: {reason}"
                + ("; queued again" if retried else "")
            )
        for trial in self.study.trials():
            if trial.state.name == "RUNNING" and trial.user_attrs.get(REPLICATE_SEEDS):
                self.finish_configuration(trial.number)
        return recovered

    def run_trial(self, trial: Any, optuna_study: Any) -> TrialRecord:
        number = trial.number
        kind = trial.user_attrs.get(KIND_ATTR, TRIAL)
        name = trial_name(trial)
        params = self._sample(trial, kind)
        started = time.monotonic()
        self.study.set_attrs(number, **{NAME: name, SEED: self.spec.seed})
        run = self._tracking.submit(self._open_trial_run, number, name, kind)
        try:
            with self.study.heartbeat(number, self.spec.executor.heartbeat_s):
                outcome = self._execute(lambda: self.trial_spec(number, kind, name, params), run)
        except KeyboardInterrupt:
            reason = "interrupted (Ctrl-C or SIGTERM)"
            wall = time.monotonic() - started
            self._end_trial(number, self._await(run), wall, reason, {}, None, "KILLED")
            self.study.retry(self.study.frozen(number))  # a re-run picks it up again
            raise
        run_id = self._await(run)
        if not outcome.failure:
            self._log_plots(run_id, name, outcome.records)
        tell = (optuna_study, trial, None if outcome.failure else outcome.values)
        wall = time.monotonic() - started
        return self._end_trial(number, run_id, wall, outcome.failure, outcome.objectives, tell)

    def _sample(self, trial: Any, kind: str) -> dict[str, Any]:
        if kind != TRIAL:
            return {}
        return {key: param.suggest(trial, key) for key, param in self.spec.search_space.items()}

    def _execute(
        self, make_spec: Callable[[], TrialSpec], run: concurrent.futures.Future[str]
    ) -> Outcome:
        """Run one trial (or replicate) through the executor, streaming its curve to ``run``,
        and log its evaluation there. A failure, resolving its config included, is returned,
        not raised; Ctrl-C propagates."""
        failure = detail = ""
        try:
            spec = make_spec()
            self._tracking.submit(
                lambda: self.tracker.log_params(run.result(), tracker_layout.trial_params(spec))
            )
            total = (spec.config or {}).get("steps")
            self.display.trial_started(spec.number, spec.name, spec.params, total)
            curves = CurveStream(self.tracker, run)
            try:
                # This machine's GPUs: the trial's, but for slurm's, whose login node has none.
                with self.tracker.monitor_system(lambda: self._await(run)):
                    records = self.executor.run(spec, curves.add_step(self.display.step))
            finally:
                curves.flush()
            objectives = self._summarize(records)
            values = self._objective_values(objectives)
            self.tracker.log_metrics(
                self._await(run),
                tracker_layout.eval_metrics(records) + tracker_layout.summary_metrics(objectives),
            )
            return Outcome(records, objectives, values)
        except TrialFailed as e:
            failure, detail = e.reason, e.detail
        except ConfigError as e:  # a sampled value the trainer config rejects
            failure = f"ConfigError: {e}"
        except Exception as e:  # a harness error fails this trial, not the sweep
            failure, detail = failure_reason(e), traceback.format_exc()
        if detail:
            self._log_text(self._await(run), "failure.txt", detail)
        return Outcome(failure=failure)

    def _summarize(self, records: list[EvalRecord]) -> dict[str, float]:
        return summarize(
            records,
            operating_threshold=self.spec.eval.operating_threshold,
            y_max=self.spec.eval.y_max,
            hv_reference=self.spec.eval.hv_reference,
        )

    def _objective_values(self, objectives: dict[str, float]) -> list[float]:
        """The values Optuna is told, in the spec's order; NaN or missing fails the trial."""
        values = [objectives.get(key, math.nan) for key in self.spec.objective_keys]
        for key, value in zip(self.spec.objective_keys, values, strict=True):
            if not math.isfinite(value):
                raise TrialFailed(f"objective {key} is {objectives.get(key, 'missing')}")
        return values

    # -- replicates ---------------------------------------------------------------------

    def queue_replicates(self, trial: Any, optuna_study: Any) -> None:
        """Sample a claimed configuration, open its run and queue one job per seed. Its
        jobs are claimed like trials, by this worker or any other."""
        assert self.replicates is not None
        number = trial.number
        kind = trial.user_attrs.get(KIND_ATTR, TRIAL)
        name = trial_name(trial)
        params = self._sample(trial, kind)
        self.study.set_attrs(number, **{NAME: name, SEED: self.spec.seed})
        # The jobs' runs are its children: it must exist before any of them starts.
        run_id = self._await(self._tracking.submit(self._open_trial_run, number, name, kind))
        try:
            spec = self.trial_spec(number, kind, name, params)
        except ConfigError as e:  # a sampled value the trainer config rejects: no job would run
            self._end_trial(number, run_id, 0.0, f"ConfigError: {e}", {}, None)
            return
        self.tracker.log_params(run_id, tracker_layout.trial_params(spec))
        seeds = seeds_of(self.spec, kind, name)
        self.replicates.enqueue(number, name, seeds)
        self.study.set_attrs(number, **{REPLICATE_SEEDS: seeds})
        self.display.note(
            f"{name} (#{number}): {len(seeds)} replicate(s) queued, seeds "
            + ", ".join(map(str, seeds))
            + (f": {params_text(params)}" if params else "")
        )

    def run_replicate(self, job: Any) -> TrialRecord:
        """Run one replicate job; the worker that ends a configuration's last job finishes it."""
        queue = self.replicates
        assert queue is not None
        number, seed = int(job.user_attrs[CONFIGURATION]), int(job.user_attrs[SEED])
        configuration = self.study.frozen(number)
        if configuration.state.name != "RUNNING":  # it failed (its worker died) before queueing all
            reason = f"its configuration #{number} is {configuration.state.name}, not running"
            queue.fail(job.number, reason)
            return self._replicate_record(queue.frozen(job.number), "FAIL", reason)
        kind = configuration.user_attrs.get(KIND_ATTR, TRIAL)
        name = trial_name(configuration)
        started = time.monotonic()
        parent = str(configuration.user_attrs.get(RUN_ID, ""))
        run = self._tracking.submit(self._open_replicate_run, job.number, parent, name, seed)
        try:
            with queue.heartbeat(job.number, self.spec.executor.heartbeat_s):
                params = dict(configuration.params)
                outcome = self._execute(
                    lambda: self.trial_spec(number, kind, name, params, seed), run
                )
        except KeyboardInterrupt:
            run_id = self._await(run)
            queue.fail(job.number, "interrupted (Ctrl-C or SIGTERM)")
            self.tracker.end_run(run_id, "KILLED")
            queue.retry(queue.frozen(job.number))
            raise
        run_id = self._await(run)
        queue.set_attrs(job.number, **{WALL_TIME: time.monotonic() - started})
        if outcome.failure:
            queue.fail(job.number, outcome.failure)
            self.tracker.set_tags(run_id, {"failure_reason": outcome.failure})
        else:
            queue.set_attrs(job.number, **{OBJECTIVES: outcome.objectives})
            queue.complete(job.number, outcome.values)
        for artifact in (CONFIG_FILE, TRAIN_FILE, EVAL_FILE):
            self.tracker.log_artifact(run_id, self.out.replicate_dir(number, seed) / artifact)
        self.tracker.end_run(run_id, "FAILED" if outcome.failure else "FINISHED")
        state = "FAIL" if outcome.failure else "COMPLETE"
        record = self._replicate_record(queue.frozen(job.number), state, outcome.failure)
        self.out.append_replicate(record)
        self.display.trial_finished(record)
        self.finish_configuration(number)
        return record

    def _replicate_record(self, job: Any, state: str, failure: str) -> TrialRecord:
        number = int(job.user_attrs[CONFIGURATION])
        return dataclasses.replace(
            record_of(job),
            number=number,
            params=dict(self.study.frozen(number).params),
            name=replicate_name(trial_name(job), int(job.user_attrs[SEED])),
            state=state,
            failure_reason=failure,
        )

    def _open_replicate_run(self, job: int, parent: str, name: str, seed: int) -> str:
        assert self.replicates is not None
        run_id = self.tracker.start_run(
            replicate_name(name, seed),
            experiment=self.spec.experiment_name,
            parent_run_id=parent or self._parent.result(),
            tags={"kind": REPLICATE, "seed": str(seed), "sweep": self.spec.name},
        )
        if run_id:
            self.replicates.set_attrs(job, **{RUN_ID: run_id})
        return run_id

    def finish_configuration(self, number: int) -> None:
        """Once every job of configuration ``number`` has ended: pool their evaluations into
        its ``eval.jsonl``, log the aggregate to its run and tell the study. Idempotent: the
        study accepts one tell, and a configuration already told is left alone."""
        assert self.replicates is not None
        configuration = self.study.frozen(number)
        jobs = self.replicates.jobs_of(number)
        if configuration.state.name != "RUNNING" or not jobs or not finished(jobs):
            return
        done = completed_objectives(jobs)
        objectives = aggregate(done, self.spec.replicates.aggregate)
        seeds = [int(j.user_attrs[SEED]) for j in jobs if j.state.name == "COMPLETE"]
        records = pool(
            [read_jsonl(self.out.replicate_dir(number, s) / EVAL_FILE, EvalRecord) for s in seeds]
        )
        eval_file = self.out.trial_dir(number) / EVAL_FILE
        eval_file.unlink(missing_ok=True)
        append_jsonl(eval_file, records)
        required = min(self.spec.replicates.required, len(jobs))  # the base model has one
        failure = ""
        values: list[float] = []
        if len(done) < required:
            failure = (
                f"{len(done)} of {len(jobs)} replicates completed; replicates.min_complete "
                f"needs {required}"
            )
        else:
            try:
                values = self._objective_values(objectives)
            except TrialFailed as e:
                failure = e.reason
        run_id = str(configuration.user_attrs.get(RUN_ID, ""))
        if not failure:
            counts = [
                Metric("replicates/complete", len(done)),
                Metric("replicates/total", len(jobs)),
            ]
            self.tracker.log_metrics(
                run_id,
                tracker_layout.eval_metrics(records)
                + tracker_layout.summary_metrics(objectives)
                + counts,
            )
            self._log_plots(run_id, trial_name(configuration), records)
        wall = sum(float(j.user_attrs.get(WALL_TIME) or 0.0) for j in jobs)
        tell = (self.study.study(), number, values)
        self._end_trial(number, run_id, wall, failure, objectives, tell)

    def _end_trial(
        self,
        number: int,
        run_id: str,
        wall_time: float,
        failure: str,
        objectives: dict[str, float],
        tell: tuple[Any, Any, list[float] | None] | None,
        failed_status: str = "FAILED",
    ) -> TrialRecord:
        trial_dir = self.out.trial_dir(number)
        for artifact in (CONFIG_FILE, TRAIN_FILE, EVAL_FILE):
            self.tracker.log_artifact(run_id, trial_dir / artifact)
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
        if failure:
            self.tracker.set_tags(run_id, {"failure_reason": failure})
            self.tracker.end_run(run_id, failed_status)
            self.study.fail(number, failure)
        else:
            assert tell is not None and tell[2] is not None
            self.tracker.end_run(run_id, "FINISHED")
            optuna_study, trial, values = tell
            self.study.complete(optuna_study, trial, values)
        # The parent run's copy of trials.jsonl, so that a report can be rebuilt from MLflow.
        self._tracking.submit(
            lambda: self.tracker.log_artifact(self._parent.result(), self.out.trials_jsonl)
        )
        self.display.trial_finished(record)
        return record

    def _log_plots(self, run_id: str, name: str, records: list[EvalRecord]) -> None:
        """Each task's frontier of this trial, beside the finished baselines', as PNG artifacts,
        on the tracking thread (it is the slowest tracking work and the least urgent: a worker
        killed first loses a picture, never a record). A failure is a warning, not a failed trial."""
        if run_id:
            self._tracking.submit(self._plot, run_id, name, records, self._baseline_records())

    def _plot(
        self,
        run_id: str,
        name: str,
        records: list[EvalRecord],
        baselines: dict[str, list[EvalRecord]],
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="pareto-bench-plots-") as tmp:
            start = time.perf_counter()
            try:
                paths = tracker_layout.frontier_plots(name, records, baselines, Path(tmp))
            except Exception as e:
                self.display.note(f"warning: no frontier plot for {name} ({failure_reason(e)})")
                paths = []
            self.plot_seconds += time.perf_counter() - start
            for path in paths:
                self.tracker.log_artifact(run_id, path, "plots")

    def _log_text(self, run_id: str, name: str, text: str) -> None:
        if run_id:
            with tempfile.TemporaryDirectory(prefix="pareto-bench-") as tmp:
                path = Path(tmp) / name
                path.write_text(text, encoding="utf-8")
                self.tracker.log_artifact(run_id, path)

    def _baseline_records(self) -> dict[str, list[EvalRecord]]:
        found = {}
        for trial in self.study.trials():
            eval_file = self.out.trial_dir(trial.number) / EVAL_FILE
            if is_baseline(trial) and trial.state.name == "COMPLETE" and eval_file.is_file():
                found[trial_name(trial)] = read_jsonl(eval_file, EvalRecord)
        return found

    # -- trials -------------------------------------------------------------------------

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

    # -- the parent run and records -----------------------------------------------------

    def _write_metadata(self, parent_run_id: str) -> None:
        previous = self.out.read_info()
        info = sweep_info(
            self.spec,
            spec_path=self.options.spec_path,
            storage=self.study.storage_label,
            tracking_uri=self.tracker.uri,
            parent_run_id=parent_run_id,
            created=previous.get("created"),
        )
        self.out.write_metadata(self.spec, info)

    def _open_parent_run(self) -> str:
        """On the tracking thread: find or create the sweep's parent run in this store, then
        record it in sweep.json and log the spec to it."""
        run_id = self.study.parent_run(self.tracker.uri)
        if run_id == PARENT_PENDING and not self.study.marked_pending:
            run_id = self._wait_for_parent_run(PARENT_RUN_WAIT_S)
        if run_id in ("", PARENT_PENDING):  # none yet in this store, or its maker is gone
            run_id = start_parent_run(self.spec, self.study, self.tracker)
        self._write_metadata(run_id)
        self.tracker.log_artifact(run_id, self.out.spec_yaml)
        self.tracker.log_artifact(run_id, self.out.sweep_json)
        return run_id

    def _wait_for_parent_run(self, timeout_s: float) -> str:
        # The process that set the sweep up is creating the parent run right now.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run_id = self.study.parent_run(self.tracker.uri)
            if run_id != PARENT_PENDING:
                return run_id
            time.sleep(0.5)
        return ""

    def _open_trial_run(self, number: int, name: str, kind: str) -> str:
        """On the tracking thread: the trial's child run; its id goes into the study and
        trials.jsonl at once, so that recovery can close the run if this worker dies."""
        run_id = self.tracker.start_run(
            name,
            experiment=self.spec.experiment_name,
            parent_run_id=self._parent.result(),
            tags={
                "kind": kind,
                "trial_number": str(number),
                "sweep": self.spec.name,
                "study": self.study.name,
            },
        )
        if run_id:
            self.study.set_attrs(number, **{RUN_ID: run_id})
        # The RUNNING row, with the run id. It is written before this job returns, and the
        # worker waits for the job before the trial's final row: the rows stay in order.
        self.out.append_trial(record_of(self.study.frozen(number)))
        return run_id

    def _catch_up_records(self) -> None:
        """Append a row for every trial whose last ``trials.jsonl`` row disagrees with the study
        (a worker killed between failing a dead trial in the study and writing its row)."""
        latest = self.out.latest_trials()
        for trial in self.study.trials():
            # A waiting or running trial's rows are its worker's to write: a row written here
            # could land after the worker's final one and undo it.
            if trial.state.name in ("WAITING", "RUNNING"):
                continue
            record = record_of(trial)
            seen = latest.get(trial.number)
            if seen is None or seen.state != record.state:
                self.out.append_trial(record)

    def _finish_parent_run(self, counts: dict[str, int]) -> None:
        if counts.get("WAITING", 0) or counts.get("RUNNING", 0):
            return  # other workers are still at it; the last one out closes the run
        records = [record_of(t) for t in self.study.trials()]
        points = [
            Metric("trials/complete", counts.get("COMPLETE", 0)),
            Metric("trials/failed", counts.get("FAIL", 0)),
        ]
        self.tracker.log_metrics(self.parent_run_id, points)
        self.tracker.log_artifact(self.parent_run_id, self.out.trials_jsonl)
        self.tracker.end_run(self.parent_run_id, "FINISHED")
        best = best_records(records, self.spec.objective_keys)
        if best:
            self.display.note(
                "non-dominated: " + ", ".join(f"{r.name} (#{r.number})" for r in best)
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


class CurveStream:
    """Training-curve points, sent to the tracker in batches rather than one call per step."""

    FLUSH_EVERY_S = 10.0
    FLUSH_EVERY_POINTS = 500

    def __init__(self, tracker: Tracker, run: concurrent.futures.Future[str]) -> None:
        self.tracker = tracker
        self.run = run  # created on the tracking thread; flushes wait for it
        self._points: list[Metric] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._tagged = False  # the run's tags from its first step (``tracker_layout.train_tags``)

    def add_step(
        self, also: Callable[[TrainStepRecord], None]
    ) -> Callable[[TrainStepRecord], None]:
        def on_step(record: TrainStepRecord) -> None:
            also(record)
            with self._lock:
                self._points += tracker_layout.train_metrics(record)
                first, self._tagged = not self._tagged, True
                due = (
                    len(self._points) >= self.FLUSH_EVERY_POINTS
                    or time.monotonic() - self._last_flush > self.FLUSH_EVERY_S
                )
            if first and (tags := tracker_layout.train_tags(record)):
                self.tracker.set_tags(self.run.result(), tags)
            if due:
                self.flush()

        return on_step

    def flush(self) -> None:
        with self._lock:
            points, self._points = self._points, []
            self._last_flush = time.monotonic()
        if points:
            self.tracker.log_metrics(self.run.result(), points)


def mark_parent_pending(study: SweepStudy, tracking_uri: str) -> None:
    """During setup: tell workers that join now to wait for the parent run this process is
    about to create (on its tracking thread), rather than make their own."""
    if not study.parent_run(tracking_uri):
        study.set_parent_run(tracking_uri, PARENT_PENDING)
        study.marked_pending = True


def start_parent_run(spec: SweepSpec, study: SweepStudy, tracker: Tracker) -> str:
    """Create the sweep's parent run in ``tracker``'s store and record it in the study
    (``""`` when the tracker records nothing, which also clears a pending marker)."""
    run_id = tracker.start_run(
        spec.name,
        experiment=spec.experiment_name,
        tags={"kind": "sweep", "sweep": spec.name, "study": study.name},
    )
    study.set_parent_run(tracker.uri, run_id)
    tracker.log_params(run_id, sweep_params(spec))
    if run_id:
        view = tracker_layout.sweep_view_tags(spec.name, run_id, spec.eval.tasks)
        tracker.set_experiment_tags(spec.experiment_name, view)
    return run_id


def sweep_params(spec: SweepSpec) -> dict[str, Any]:
    """The parent run's params: what a reader of the MLflow UI needs to know about the sweep."""
    return {
        "model": spec.model,
        "recipe": spec.recipe,
        "task": spec.task,
        "trials": spec.trials,
        "seed": spec.seed,
        "device": spec.device,
        "dtype": spec.dtype,
        "sampler": spec.sampler.name,
        "objectives": ",".join(spec.objective_keys),
        "eval.tasks": ",".join(spec.eval.tasks),
        "eval.thresholds": ",".join(f"{t:g}" for t in spec.eval.all_thresholds),
        "eval.operating_threshold": spec.eval.operating_threshold,
        "baselines": ",".join(spec.baselines),
        **{f"search.{k}": _space_text(v) for k, v in spec.search_space.items()},
        **{f"train.{k}": v for k, v in flatten(spec.train).items()},
    }


def _space_text(param: Any) -> str:
    return str(param.distribution())


__all__ = [
    "CurveStream",
    "Sweep",
    "SweepOptions",
    "SweepResult",
    "default_out_dir",
    "run_sweep",
]

"""A sweep's runs in the tracker: the parent run, one run per trial, one per replicate.

What the runs hold is ``tracker_layout``'s (pure functions from records to metrics); this module
owns when they are written. Tracking work that a trial need not wait for runs on one thread, in
order: opening the store and the parent run (seconds, on a new store), each trial's run and
params, and its plots. Records never go through it: ``trials.jsonl`` is written before the
study is told, and the tracker follows.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pareto_bench.core.files import CONFIG_FILE, EVAL_FILE, TRAIN_FILE
from pareto_bench.core.records import REPLICATE, EvalRecord, TrainStepRecord, read_jsonl
from pareto_bench.sweep import tracker_layout
from pareto_bench.sweep.display import SweepDisplay, best_records
from pareto_bench.sweep.outdir import SweepDir, sweep_info
from pareto_bench.sweep.replicates import replicate_name
from pareto_bench.sweep.samplers import is_baseline
from pareto_bench.sweep.spec import SweepSpec, flatten
from pareto_bench.sweep.study import RUN_ID, SweepStudy, TrialQueue, record_of, trial_name
from pareto_bench.sweep.trial import failure_reason
from pareto_bench.tracking import Metric, Tracker

# How long a joining worker waits for the sweep's creator to make the parent run.
PARENT_RUN_WAIT_S = 60.0
PARENT_PENDING = "pending"

T = TypeVar("T")
RunFuture = concurrent.futures.Future[str]


class SweepRuns:
    """One sweep process's runs in ``tracker``, and the thread that writes them."""

    def __init__(
        self,
        spec: SweepSpec,
        spec_path: Path | None,
        study: SweepStudy,
        tracker: Tracker,
        out: SweepDir,
        display: SweepDisplay,
    ) -> None:
        self.spec, self.spec_path, self.study = spec, spec_path, study
        self.tracker, self.out, self.display = tracker, out, display
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "pareto-bench-tracking")
        self._write_metadata(study.parent_run(tracker.uri))  # before the thread rewrites it
        self._parent: RunFuture = self._thread.submit(self._open_parent_run)
        self.plot_seconds = 0.0  # rendering artifacts is tracking work too
        self.wait_seconds = 0.0  # the worker loop waiting on the tracking thread

    # -- time and the thread ------------------------------------------------------------

    def wait(self, future: concurrent.futures.Future[T]) -> T:
        """The result of a tracking job, counting any wait as tracking time."""
        start = time.perf_counter()
        try:
            return future.result()
        finally:
            self.wait_seconds += time.perf_counter() - start

    def blocking_seconds(self) -> float:
        """Tracking time the worker loop waited for: what tracking costs the sweep."""
        return self.tracker.seconds_in_thread() + self.wait_seconds

    def busy_seconds(self) -> float:
        return self.tracker.seconds + self.plot_seconds

    def close(self) -> None:
        """Let queued tracking finish, then stop the thread."""
        self.wait(self._thread.submit(lambda: None))
        self._thread.shutdown(wait=True)

    @property
    def parent_run_id(self) -> str:
        return self.wait(self._parent)

    # -- a trial's run ------------------------------------------------------------------

    def open_trial(self, number: int, name: str, kind: str) -> RunFuture:
        return self._thread.submit(self._open_trial_run, number, name, kind)

    def open_replicate(
        self, queue: TrialQueue, job: int, parent: str, name: str, seed: int
    ) -> RunFuture:
        return self._thread.submit(self._open_replicate_run, queue, job, parent, name, seed)

    def log_params(self, run: RunFuture, params: dict[str, Any]) -> None:
        self._thread.submit(lambda: self.tracker.log_params(run.result(), params))

    @contextmanager
    def curve(
        self, run: RunFuture, also: Callable[[TrainStepRecord], None]
    ) -> Iterator[Callable[[TrainStepRecord], None]]:
        """A step callback that streams the training curve to ``run`` (and calls ``also``),
        flushed at the end; this machine's system metrics go to the run meanwhile."""
        curve = CurveStream(self.tracker, run)
        try:
            # This machine's GPUs: the trial's, but for slurm's, whose login node has none.
            with self.tracker.monitor_system(lambda: self.wait(run)):
                yield curve.add_step(also)
        finally:
            curve.flush()

    def log_evaluation(
        self,
        run_id: str,
        records: list[EvalRecord],
        objectives: dict[str, float],
        extra: list[Metric] | None = None,
    ) -> None:
        points = tracker_layout.eval_metrics(records) + tracker_layout.summary_metrics(objectives)
        self.tracker.log_metrics(run_id, points + (extra or []))

    def log_plots(self, run_id: str, name: str, records: list[EvalRecord]) -> None:
        """Each task's frontier of this trial, beside the finished baselines', as PNG artifacts,
        on the tracking thread (it is the slowest tracking work and the least urgent: a worker
        killed first loses a picture, never a record). A failure is a warning, not a failed trial."""
        if run_id:
            self._thread.submit(self._plot, run_id, name, records, self._baseline_records())

    def log_text(self, run_id: str, name: str, text: str) -> None:
        if run_id:
            with tempfile.TemporaryDirectory(prefix="pareto-bench-") as tmp:
                path = Path(tmp) / name
                path.write_text(text, encoding="utf-8")
                self.tracker.log_artifact(run_id, path)

    def end(self, run_id: str, trial_dir: Path, status: str, failure: str = "") -> None:
        """Attach the trial's files to its run and end it (with its failure as a tag)."""
        for artifact in (CONFIG_FILE, TRAIN_FILE, EVAL_FILE):
            self.tracker.log_artifact(run_id, trial_dir / artifact)
        if failure:
            self.tracker.set_tags(run_id, {"failure_reason": failure})
        self.tracker.end_run(run_id, status)

    def end_dead(self, run_id: str, reason: str) -> None:
        """End the run of a trial whose worker died."""
        self.tracker.set_tags(run_id, {"failure_reason": reason})
        self.tracker.end_run(run_id, "FAILED")

    def copy_trials_jsonl(self) -> None:
        """The parent run's copy of trials.jsonl, so that a report can be rebuilt from MLflow."""
        self._thread.submit(
            lambda: self.tracker.log_artifact(self._parent.result(), self.out.trials_jsonl)
        )

    # -- the parent run -----------------------------------------------------------------

    def finish(self, counts: dict[str, int]) -> None:
        """The last worker out ends the parent run, with the trials' counts and records."""
        if counts.get("WAITING", 0) or counts.get("RUNNING", 0):
            return  # other workers are still at it
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

    def catch_up_records(self) -> None:
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

    # -- on the tracking thread ---------------------------------------------------------

    def _write_metadata(self, parent_run_id: str) -> None:
        previous = self.out.read_info()
        info = sweep_info(
            self.spec,
            spec_path=self.spec_path,
            storage=self.study.storage_label,
            tracking_uri=self.tracker.uri,
            parent_run_id=parent_run_id,
            created=previous.get("created"),
        )
        self.out.write_metadata(self.spec, info)

    def _open_parent_run(self) -> str:
        """Find or create the sweep's parent run in this store, then record it in sweep.json
        and log the spec to it."""
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
        """The trial's child run; its id goes into the study and trials.jsonl at once, so that
        recovery can close the run if this worker dies."""
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

    def _open_replicate_run(
        self, queue: TrialQueue, job: int, parent: str, name: str, seed: int
    ) -> str:
        run_id = self.tracker.start_run(
            replicate_name(name, seed),
            experiment=self.spec.experiment_name,
            parent_run_id=parent or self._parent.result(),
            tags={"kind": REPLICATE, "seed": str(seed), "sweep": self.spec.name},
        )
        if run_id:
            queue.set_attrs(job, **{RUN_ID: run_id})
        return run_id

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

    def _baseline_records(self) -> dict[str, list[EvalRecord]]:
        found = {}
        for trial in self.study.trials():
            eval_file = self.out.trial_dir(trial.number) / EVAL_FILE
            if is_baseline(trial) and trial.state.name == "COMPLETE" and eval_file.is_file():
                found[trial_name(trial)] = read_jsonl(eval_file, EvalRecord)
        return found


class CurveStream:
    """Training-curve points, sent to the tracker in batches rather than one call per step."""

    FLUSH_EVERY_S = 10.0
    FLUSH_EVERY_POINTS = 500

    def __init__(self, tracker: Tracker, run: RunFuture) -> None:
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
        **{f"search.{k}": str(v.distribution()) for k, v in spec.search_space.items()},
        **{f"train.{k}": v for k, v in flatten(spec.train).items()},
    }


__all__ = ["CurveStream", "SweepRuns", "mark_parent_pending", "start_parent_run", "sweep_params"]

"""The ``mlflow`` tracker: an ``MlflowClient`` on any tracking URI, with explicit run ids and
batched logging, that goes offline rather than fail a trial."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pareto_bench.tracking import PARENT_TAG, TRACKERS, Metric

# MLflow's per-request limits (mlflow.utils.validation); batches are cut to fit them.
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_LENGTH = 6000

T = TypeVar("T")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sqlite_dir(uri: str) -> Path | None:
    """The directory of a ``sqlite:///`` store, where its artifacts are kept too."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]).resolve().parent if uri.startswith(prefix) else None


class MlflowTracker:
    """An ``MlflowClient`` with explicit run ids and batched logging, that never fails a trial.

    ``seconds`` accumulates the wall time spent inside tracking calls (all threads), and
    :meth:`seconds_in_thread` one thread's share: how the sweep benchmark measures overhead.
    """

    # An unreachable server must not stall a trial for minutes of MLflow's default retries.
    _HTTP_DEFAULTS = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    }

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.seconds = 0.0  # time spent doing tracking calls, any thread, waits excluded
        self._thread_seconds: dict[int, float] = {}
        self.offline = False
        self._client: Any = None
        self._experiments: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()

    # -- the Tracker protocol ---------------------------------------------------------

    def start_run(
        self,
        name: str,
        *,
        experiment: str,
        parent_run_id: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id

        def create(client: Any) -> str:
            experiment_id = self._experiment_id(client, experiment)
            return str(client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id)

        return self._call("start a run", create, default="")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        if run_id and params:
            from mlflow.entities import Param

            entries = [Param(str(k), _param_text(v)) for k, v in params.items()]
            self._log_batches("log params", run_id, "params", entries, _MAX_PARAMS_PER_BATCH)

    def log_metrics(self, run_id: str, metrics: Sequence[Metric]) -> None:
        if run_id and metrics:
            from mlflow.entities import Metric as MlflowMetric

            now = int(time.time() * 1000)
            entries = [MlflowMetric(m.key, float(m.value), now, int(m.step)) for m in metrics]
            self._log_batches("log metrics", run_id, "metrics", entries, _MAX_METRICS_PER_BATCH)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        if run_id and tags:
            from mlflow.entities import RunTag

            entries = [RunTag(str(k), str(v)) for k, v in tags.items()]
            self._log_batches("set tags", run_id, "tags", entries, _MAX_PARAMS_PER_BATCH)

    def set_experiment_tags(self, experiment: str, tags: Mapping[str, str]) -> None:
        def tag(client: Any) -> None:
            experiment_id = self._experiment_id(client, experiment)
            for key, value in tags.items():
                client.set_experiment_tag(experiment_id, key, value)

        if tags:
            self._call("tag the experiment", tag)

    def log_artifact(
        self, run_id: str, path: str | os.PathLike[str], artifact_path: str = ""
    ) -> None:
        path = Path(path)
        if not run_id or not path.exists():
            return

        def upload(client: Any) -> None:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path or None)
            else:
                client.log_artifact(run_id, str(path), artifact_path or None)

        self._call(f"log artifact {path.name}", upload)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        if run_id:
            self._call("end a run", lambda client: client.set_terminated(run_id, status=status))

    def warm_up(self) -> None:
        # Importing MLflow and opening (or creating) the store takes seconds; overlap it
        # with whatever the caller does next. The first real call waits on the lock.
        threading.Thread(
            target=self._call, args=("connect", lambda client: None), daemon=True
        ).start()

    @contextmanager
    def monitor_system(self, run_id: Callable[[], str]) -> Iterator[None]:
        """MLflow's system metrics on the run while inside (``system/gpu_0_utilization_percentage``,
        ``system/gpu_0_memory_usage_megabytes``, ... and the CPU's, every 10 s unless
        ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` says otherwise), where this process sees a GPU.
        The GPU's need ``nvidia-ml-py``; without it MLflow records the CPU's only. A monitor
        that fails to start is a warning, not a failed trial."""
        monitor = None
        if not self.offline and _gpu_present():
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                run = run_id()
                if run:
                    monitor = SystemMetricsMonitor(run, tracking_uri=self.uri)
                    monitor.start()
            except Exception as e:
                print(f"warning: no system metrics ({type(e).__name__}: {e})", file=sys.stderr)
        try:
            yield
        finally:
            if monitor is not None:
                monitor.finish()

    def seconds_in_thread(self, ident: int | None = None) -> float:
        """Time spent in tracking calls made from one thread (default: the calling one),
        including waiting for a call of another thread to finish."""
        return self._thread_seconds.get(threading.get_ident() if ident is None else ident, 0.0)

    # -- internals --------------------------------------------------------------------

    def _log_batches(
        self, action: str, run_id: str, kind: str, entries: list[Any], size: int
    ) -> None:
        def send(client: Any) -> None:
            for chunk in _chunks(entries, size):
                client.log_batch(run_id, **{kind: chunk}, synchronous=True)

        self._call(action, send)

    def _call(self, action: str, fn: Callable[[Any], T], default: T | None = None) -> T | None:
        """Run one tracking action, timed; a failure turns into a one-time warning and
        takes the tracker offline, so a trial never fails because of its tracking."""
        if self.offline:
            return default
        start = time.perf_counter()
        try:
            with self._lock:
                began = time.perf_counter()
                try:
                    return fn(self._connect())
                finally:
                    self.seconds += time.perf_counter() - began  # under the lock: no race
        except Exception as e:  # any store or network failure
            self._go_offline(action, e)
            return default
        finally:
            # The caller's own view, waiting for another thread's call included.
            elapsed = time.perf_counter() - start
            ident = threading.get_ident()
            with self._stats_lock:
                self._thread_seconds[ident] = self._thread_seconds.get(ident, 0.0) + elapsed

    def _connect(self) -> Any:
        if self._client is None:
            for key, value in self._HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            _quiet_store_logs()
            from mlflow import MlflowClient

            local = _sqlite_dir(self.uri)
            if local is None:
                self._client = MlflowClient(tracking_uri=self.uri)
                return self._client
            local.mkdir(parents=True, exist_ok=True)
            # Two workers opening a new SQLite store at once would both run its schema
            # migrations and one would fail: opening it happens under a file lock.
            with _file_lock(local / "mlflow.db.lock"):
                client = MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)
            self._client = client
        return self._client

    def _experiment_id(self, client: Any, name: str) -> str:
        if name not in self._experiments:
            found = client.get_experiment_by_name(name)
            self._experiments[name] = (
                str(found.experiment_id)
                if found is not None
                else self._create_experiment(client, name)
            )
        return self._experiments[name]

    def _create_experiment(self, client: Any, name: str) -> str:
        local = _sqlite_dir(self.uri)
        # Keep a local store's artifacts beside its database, not under whatever the cwd is.
        location = (local / "artifacts" / _safe_dir_name(name)).as_uri() if local else None
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except Exception:
            # Another worker created it between our lookup and our create.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _go_offline(self, action: str, error: Exception) -> None:
        self.offline = True
        text = str(error).strip()
        reason = text.splitlines()[0][:200] if text else type(error).__name__
        print(
            f"warning: MLflow tracking at {self.uri} failed to {action} ({reason}); "
            "tracking is off for the rest of this process, records stay on disk",
            file=sys.stderr,
        )


TRACKERS.register("mlflow", MlflowTracker)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."


def _safe_dir_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "default"


def _quiet_store_logs() -> None:
    # The SQLite store checks (and on first use creates) its schema, logging at INFO each time.
    import logging

    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _gpu_present() -> bool:
    import torch  # here, not at import: a tracker that records no system metrics needs no torch

    return torch.cuda.is_available()

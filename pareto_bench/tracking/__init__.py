"""The tracker seam: where runs, params, metrics and artifacts are recorded.

A ``Tracker`` is addressed by explicit run ids, never by "the active run", so one process can
keep a sweep's parent run and a trial's child run open at once, from any thread. Only the
sweep layer and the CLI create trackers; records on disk stay the source of truth, and a
tracker is a view of them.

A tracker is one module of this package that registers itself in ``TRACKERS``:

- ``mlflow`` (``mlflow_tracker.py``): an ``MlflowClient`` on any tracking URI. The default store is a SQLite file,
  ``<cwd>/mlruns/mlflow.db``, with artifacts beside it. Metrics go out with ``log_batch``.
  If the store cannot be reached, the tracker prints one warning and goes offline: every
  later call is a no-op, so the trial still completes and its records stay on disk.
  Where a GPU is present, a trial's run also gets MLflow's system metrics (``system/...``).
- ``null`` (``null.py``, ``--tracking-uri none``): records nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pareto_bench.core.registry import Registry

__all__ = [
    "PARENT_TAG",
    "TRACKERS",
    "Metric",
    "Tracker",
    "default_tracking_uri",
    "get_tracker",
    "local_store_dir",
]

# MLflow's own tag for nesting: the UI draws a child run under the run this tag names.
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class Metric:
    """One metric point; ``step`` is the x-axis MLflow draws it on."""

    key: str
    value: float
    step: int = 0


@runtime_checkable
class Tracker(Protocol):
    """Explicit-run-id tracking. A run id of ``""`` means "not recorded" and is ignored."""

    uri: str
    seconds: float  # wall time spent in tracking calls so far, all threads

    def seconds_in_thread(self, ident: int | None = None) -> float:
        """The time that one thread (default: the calling one) spent in tracking calls."""
        ...

    def start_run(
        self,
        name: str,
        *,
        experiment: str,
        parent_run_id: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create a run (a child of ``parent_run_id`` when given) and return its id."""
        ...

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, run_id: str, metrics: Sequence[Metric]) -> None:
        """Log many points in as few requests as the store allows."""
        ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...

    def set_experiment_tags(self, experiment: str, tags: Mapping[str, str]) -> None:
        """Tag the experiment (created if missing), e.g. with a saved view of its runs page."""
        ...

    def log_artifact(
        self, run_id: str, path: str | os.PathLike[str], artifact_path: str = ""
    ) -> None:
        """Copy a file or a directory's contents into the run's artifacts."""
        ...

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Close a run as ``FINISHED``, ``FAILED`` or ``KILLED``."""
        ...

    def warm_up(self) -> None:
        """Start connecting in the background, so that the first call does not wait for it."""
        ...

    def monitor_system(self, run_id: Callable[[], str]) -> AbstractContextManager[None]:
        """While inside, record this machine's GPU use and memory on the run, where this
        process sees a GPU; elsewhere nothing. ``run_id`` is called (it may wait for the run to
        be created) only where there is something to record."""
        ...


TRACKERS: Registry[Any] = Registry("tracker", discover="pareto_bench.tracking")


def local_store_dir(cwd: str | os.PathLike[str] | None = None) -> Path:
    return Path(cwd or os.getcwd()).resolve() / "mlruns"


def default_tracking_uri(cwd: str | os.PathLike[str] | None = None) -> str:
    """``sqlite:///<cwd>/mlruns/mlflow.db``, absolute so that workers in other directories agree."""
    return f"sqlite:///{local_store_dir(cwd) / 'mlflow.db'}"


def get_tracker(uri: str | None = None) -> Tracker:
    """The tracker for ``uri``: a registered tracker name (``none``, ``null``) or an MLflow URI."""
    uri = uri or default_tracking_uri()
    name = uri if uri in TRACKERS else "mlflow"
    return TRACKERS.get(name)(uri)

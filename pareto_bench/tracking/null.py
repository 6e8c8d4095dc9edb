"""The ``null`` tracker (``--tracking-uri none``): records nothing."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from pareto_bench.tracking import TRACKERS, Metric


@TRACKERS.register("null")
class NullTracker:
    """Records nothing; every run id it hands out is ``""``."""

    def __init__(self, uri: str = "none") -> None:
        self.uri = uri
        self.seconds = 0.0

    def seconds_in_thread(self, ident: int | None = None) -> float:
        return 0.0

    def start_run(
        self,
        name: str,
        *,
        experiment: str,
        parent_run_id: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> str:
        return ""

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, run_id: str, metrics: Sequence[Metric]) -> None:
        pass

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        pass

    def set_experiment_tags(self, experiment: str, tags: Mapping[str, str]) -> None:
        pass

    def log_artifact(
        self, run_id: str, path: str | os.PathLike[str], artifact_path: str = ""
    ) -> None:
        pass

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        pass

    def warm_up(self) -> None:
        pass

    def monitor_system(self, run_id: Callable[[], str]) -> AbstractContextManager[None]:
        return nullcontext()


TRACKERS.register("none", NullTracker)

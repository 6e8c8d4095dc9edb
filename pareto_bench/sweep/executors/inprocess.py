"""The ``inprocess`` executor: the trial body runs in the worker itself. Cheapest; the timeout
is checked between RL steps only."""

from __future__ import annotations

import time
import traceback

from pareto_bench.core.records import EvalRecord, TrainStepRecord
from pareto_bench.core.registry import lazy
from pareto_bench.sweep.executors import EXECUTORS, NoOptions
from pareto_bench.sweep.trial import (
    DEFAULT_BODY,
    StepCallback,
    TrialFailed,
    TrialSpec,
    TrialTimeout,
    execute,
    failure_reason,
)


@EXECUTORS.register("inprocess")
class InProcessExecutor:
    Options = NoOptions

    def __init__(self, body: str = DEFAULT_BODY, options: NoOptions | None = None) -> None:
        self.body = body

    def slots(self, threads: int | None) -> int:
        return 1  # its trials share the worker's process

    def run(self, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
        body = lazy(self.body)()
        deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else None

        def step(record: TrainStepRecord) -> None:
            on_step(record)
            if deadline is not None and time.monotonic() > deadline:
                raise TrialTimeout(f"timed out after {spec.timeout_s:g} s (executor.timeout_s)")

        try:
            return execute(body, spec, step)
        except TrialFailed:
            raise
        except Exception as e:
            raise TrialFailed(failure_reason(e), traceback.format_exc()) from e

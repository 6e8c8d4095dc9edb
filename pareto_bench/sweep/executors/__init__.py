"""The executor seam: where and how one trial body runs.

- ``subprocess`` (default): a fresh Python process per trial. A crash, an OOM kill or a hang
  of the trial cannot take the sweep down, the timeout is a hard kill of the process group,
  and the child dies with its worker (so a SIGKILLed sweep leaves no orphan training).
  With ``processes_per_trial`` (CPU, gloo) or ``gpus_per_trial`` above 1 the process is
  ``torchrun``, and the trial trains and evaluates on every rank.
- ``inprocess``: the body runs in the worker itself. Cheapest; the timeout is checked
  between RL steps only.
- ``slurm``: one SLURM job per trial, through submitit.

An executor is one module of this package (``inprocess``, ``child_process``, ``slurm``)
that registers its class in ``EXECUTORS``. Each declares its own options as a pydantic model, ``Options``; the spec's
``executor`` section is checked against it. All raise ``TrialFailed`` with a one-line reason;
anything else is a harness bug.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from pareto_bench.core.records import EvalRecord
from pareto_bench.core.registry import Registry
from pareto_bench.core.schema import StrictModel
from pareto_bench.sweep.trial import DEFAULT_BODY, StepCallback, TrialSpec

__all__ = ["EXECUTORS", "SLOT_ENV", "Executor", "NoOptions", "make_executor"]

SLOT_ENV = "PARETO_BENCH_SLOT"  # which of a machine's concurrent trial slots a worker owns


@runtime_checkable
class Executor(Protocol):
    """Where one trial runs. A registered executor class is built as ``cls(body, options)``:
    the trial body ``"module:attr"`` and an instance of its ``Options`` model (the spec's
    ``executor`` fields beyond the shared ones)."""

    Options: ClassVar[type[BaseModel]]

    def __init__(self, body: str, options: BaseModel) -> None: ...

    def slots(self, threads: int | None) -> int:
        """How many of its trials fit on this machine at once (``workers: auto``)."""
        ...

    def run(self, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
        """Run one trial and return its eval records; raise ``TrialFailed`` if it fails.
        ``on_step`` receives each RL step's record as it happens."""
        ...


EXECUTORS: Registry[Any] = Registry("executor", discover="pareto_bench.sweep.executors")


def make_executor(
    name: str, body: str = DEFAULT_BODY, options: dict[str, Any] | None = None
) -> Executor:
    """The executor registered as ``name``, running the trial body ``"module:attr"`` with its
    own ``options`` (validated by its ``Options`` model)."""
    executor = EXECUTORS.get(name)
    return executor(body, executor.Options.model_validate(options or {}))


class NoOptions(StrictModel):
    pass

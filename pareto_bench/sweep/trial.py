"""One trial: a plain JSON ``TrialSpec`` in, ``EvalRecord`` rows out.

The trial *body* is any function ``body(spec, on_step) -> list[EvalRecord]``; it is named by a
``"module:attr"`` string so that a subprocess can import it. The real body trains with the
trainer recipe and evaluates the checkpoint; tests and benchmarks inject cheaper ones. The
body writes into ``spec.trial_dir`` (the trainer writes ``config.yaml``, ``train.jsonl`` and
``checkpoint/``); :func:`execute` adds ``eval.jsonl``. Nothing here knows about Optuna or
trackers: that is the worker's job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pareto_bench.core.defaults import EVAL_BATCH_SIZE
from pareto_bench.core.files import EVAL_FILE
from pareto_bench.core.records import EvalRecord, TrainStepRecord, append_jsonl

__all__ = [
    "DEFAULT_BODY",
    "MEAN_TASK",
    "TrialFailed",
    "TrialSpec",
    "TrialTimeout",
    "execute",
    "summarize",
    "train_and_evaluate",
]
# The real trial: train with the recipe, then evaluate (``train_and_evaluate`` below).
DEFAULT_BODY = "pareto_bench.sweep.trial:train_and_evaluate"
# Objective keys are ``{task}/{metric}``; ``mean`` averages a metric over the eval tasks.
MEAN_TASK = "mean"


StepCallback = Callable[[TrainStepRecord], None]
TrialBody = Callable[["TrialSpec", StepCallback], list[EvalRecord]]


@dataclass
class TrialSpec:
    """Everything a trial needs, as JSON: it crosses process (and machine) boundaries."""

    number: int
    kind: str  # TRIAL or BASELINE (core/records.py)
    name: str
    trial_dir: str
    model: str
    tasks: list[str]
    thresholds: list[float]
    config: dict[str, Any] | None = None  # resolved TrainConfig; None evaluates `model` untrained
    params: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    batch_size: int = EVAL_BATCH_SIZE
    max_new_tokens: int | None = None
    eval_seed: int = 0
    data_dir: str | None = None
    device: str = "auto"  # placement names, for the evaluation's model (training reads config)
    dtype: str = "auto"
    timeout_s: float | None = None
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> TrialSpec:
        names = {f.name for f in dataclasses.fields(TrialSpec)}
        return TrialSpec(**{k: v for k, v in data.items() if k in names})


class TrialFailed(Exception):
    """A trial failed; ``reason`` is one line for the study, the tracker and the display, and
    ``detail`` (a traceback, a log tail) is kept as the tracker run's ``failure.txt``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class TrialTimeout(TrialFailed):
    pass


def failure_reason(error: BaseException) -> str:
    """One line that says what went wrong, e.g. ``TrainingDiverged: step 3: the loss is nan``."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")[:500]


def execute(body: TrialBody, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
    """Run ``body`` and write its records to ``eval.jsonl`` (rank 0 of a torchrun trial);
    errors propagate unchanged."""
    from pareto_bench.core.placement import World

    main = World.from_env().is_main
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (trial_dir / EVAL_FILE).unlink(missing_ok=True)  # a re-run trial number starts clean
    records = body(spec, on_step)
    if main:
        append_jsonl(trial_dir / EVAL_FILE, records)
    return records


# --------------------------------------------------------------------------- the real body


def train_and_evaluate(spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
    """Train with ``spec.config`` (unless this is the base-model baseline), then evaluate the
    checkpoint on every task at every threshold. Under torchrun every rank trains and the
    problems are shared among the ranks."""
    import torch

    from pareto_bench.core.placement import World, resolve_device
    from pareto_bench.dllm.models import load_model
    from pareto_bench.evaluate import evaluate_sharded
    from pareto_bench.rl.config import TrainConfig
    from pareto_bench.rl.trainer import train
    from pareto_bench.tasks import get_task

    if spec.threads:
        torch.set_num_threads(spec.threads)
    model_ref: str | Path = spec.model
    if spec.config is not None:
        config = TrainConfig.model_validate(spec.config)
        result = train(config, out_dir=spec.trial_dir, on_step=on_step, progress=False)
        model_ref = result.checkpoint_dir
    world = World.from_env()
    world.start(resolve_device(spec.device))
    model = load_model(model_ref, device=spec.device, dtype=spec.dtype)
    model.model.eval()
    records: list[EvalRecord] = []
    with torch.no_grad():
        for task_name in spec.tasks:
            records += evaluate_sharded(
                model,
                get_task(task_name),
                spec.thresholds,
                world,
                limit=spec.limit,
                data_dir=spec.data_dir,
                batch_size=spec.batch_size,
                max_new_tokens=spec.max_new_tokens,
                seed=spec.eval_seed,
                progress=False,
            )
    return records


# --------------------------------------------------------------------------- objectives


def summarize(
    records: Sequence[EvalRecord],
    *,
    operating_threshold: float,
    y_max: Callable[[str], float],
    hv_reference: Sequence[float],
) -> dict[str, float]:
    """``{task}/accuracy`` and ``{task}/tpf`` at the operating threshold, ``{task}/aup`` and
    ``{task}/hypervolume`` of the task's curve, and ``mean/...``: each metric averaged over
    the tasks (a macro average, as the paper averages its four benchmarks)."""
    from pareto_bench.analysis import frontier

    by_task: dict[str, list[EvalRecord]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    out: dict[str, float] = {}
    for task, rows in by_task.items():
        at_op = [r for r in rows if math.isclose(r.threshold, operating_threshold, abs_tol=1e-9)]
        if not at_op:
            raise TrialFailed(
                f"task {task} has no evaluation at the operating threshold {operating_threshold}"
            )
        points = frontier.record_points(rows)
        out[f"{task}/accuracy"] = at_op[0].accuracy
        out[f"{task}/tpf"] = at_op[0].tpf
        out[f"{task}/aup"] = frontier.aup(points, y_max(task))
        out[f"{task}/hypervolume"] = frontier.hypervolume(points, hv_reference)
    for metric in ("accuracy", "tpf", "aup", "hypervolume"):
        values = [out[f"{task}/{metric}"] for task in by_task]
        if values:
            out[f"{MEAN_TASK}/{metric}"] = sum(values) / len(values)
    return out

"""Plain, versioned records that cross stage boundaries, serialised as JSON lines.

JSONL files of these records are the source of truth: the tracker, the frontier analysis
and the report are all derived from them. Accuracy is in percent (0-100) everywhere, as in
the paper tables; TPF is an aggregate ``sum(tokens) / sum(forwards)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

SCHEMA_VERSION = 1


@dataclass
class SampleResult:
    """One decoded and scored sample."""

    problem_id: str
    correct: bool
    score: float  # 1/0 for maths; the pass rate for code
    num_tokens: int
    num_forwards: int
    hit_budget: bool = False
    answer_correct: bool | None = None  # synthetic task: final answer right, chain ignored
    detail: str = ""  # a status or the extracted answer, for reading failures
    response: str = ""


@dataclass
class EvalRecord:
    """One (task, threshold) evaluation of one model: a point on a frontier."""

    task: str
    threshold: float
    accuracy: float  # percent
    tpf: float
    num_samples: int
    total_tokens: int
    total_forwards: int
    model: str = ""
    task_version: str = ""
    block_size: int = 0
    strategy: str = "dynamic"
    extra: dict[str, float] = field(default_factory=dict)  # e.g. answer_accuracy
    samples: list[SampleResult] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @staticmethod
    def from_samples(
        task: str, threshold: float, samples: list[SampleResult], **kw: Any
    ) -> EvalRecord:
        tokens = sum(s.num_tokens for s in samples)
        forwards = sum(s.num_forwards for s in samples)
        n = len(samples)
        accuracy = 100.0 * sum(s.score for s in samples) / n if n else 0.0
        extra = dict(kw.pop("extra", {}))
        answer_flags = [s.answer_correct for s in samples if s.answer_correct is not None]
        if answer_flags:
            extra["answer_accuracy"] = 100.0 * sum(answer_flags) / len(answer_flags)
        return EvalRecord(
            task=task,
            threshold=threshold,
            accuracy=accuracy,
            tpf=tokens / forwards if forwards else 0.0,
            num_samples=n,
            total_tokens=tokens,
            total_forwards=forwards,
            samples=samples,
            extra=extra,
            **kw,
        )


@dataclass
class TrainStepRecord:
    """Metrics of one RL step."""

    step: int
    reward: float
    reward_acc: float
    reward_tpf: float
    accuracy: float  # percent of kept rollouts the verifier marked correct
    tpf: float
    filtered_fraction: float
    refill_rounds: int
    policy_loss: float
    kl: float
    nll: float
    loss: float
    clip_fraction: float
    grad_norm: float
    # Seconds per phase of the step (``rl/step.py: Stopwatch``); the phases do not overlap.
    step_time: float
    rollout_time: float
    likelihood_time: float  # the policy's forwards (the KL reference's are reference_time)
    backward_time: float  # the loss and its backward (the optimizer step is optimizer_time)
    lr: float
    likelihood_forwards: float = 0.0  # mean forwards per kept trajectory in the likelihood
    # Of rollout_time: rewards still being scored after the last chunk was decoded.
    reward_wait_time: float = 0.0
    reference_time: float = 0.0
    optimizer_time: float = 0.0
    flops: float = 0.0  # model FLOPs of the step in this process (``core/flops.py``)
    mfu: float | None = None  # flops / step_time / the device's bf16 peak; None: unknown
    schema_version: int = SCHEMA_VERSION


# TrialRecord.kind: a searched configuration, a baseline, or one seed replicate of either.
TRIAL = "trial"
BASELINE = "baseline"
REPLICATE = "replicate"
# The baseline that is the untrained model; any other baseline is a trainer recipe by its name.
BASE_MODEL_BASELINE = "base"


@dataclass
class TrialRecord:
    """One sweep trial or baseline, as the sweep saw it."""

    number: int
    kind: str  # TRIAL, BASELINE or REPLICATE
    name: str
    state: str  # "RUNNING" | "COMPLETE" | "FAIL"
    params: dict[str, Any] = field(default_factory=dict)
    objectives: dict[str, float] = field(default_factory=dict)
    failure_reason: str = ""
    mlflow_run_id: str = ""
    seed: int = 0
    wall_time: float = 0.0
    schema_version: int = SCHEMA_VERSION


R = TypeVar("R")


def to_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def from_dict(cls: type[R], data: dict[str, Any]) -> R:
    """Build ``cls`` from a dict, recursing into nested record lists; unknown keys are dropped
    so that a newer writer's extra fields do not break an older reader."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is EvalRecord and "samples" in kwargs:
        kwargs["samples"] = [from_dict(SampleResult, s) for s in kwargs["samples"]]
    return cls(**kwargs)


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Append records and flush to disk, so that a crash loses at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for record in records:
            f.write(
                json.dumps(to_dict(record) if dataclasses.is_dataclass(record) else record) + "\n"
            )
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike[str], cls: type[R]) -> list[R]:
    return list(iter_jsonl(path, cls))


def iter_jsonl(path: str | os.PathLike[str], cls: type[R]) -> Iterator[R]:
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield from_dict(cls, json.loads(line))
            except (json.JSONDecodeError, TypeError) as e:
                # A half-written last line after a crash is skipped, not fatal.
                if f.readline() == "":
                    return
                raise ValueError(f"{path}:{lineno}: not a valid {cls.__name__} record ({e})") from e

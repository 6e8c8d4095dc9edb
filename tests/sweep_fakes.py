"""Cheap trial bodies for the sweep harness tests: no model, no training, deterministic.

They behave like the real body (``pareto_bench.sweep.trial:train_and_evaluate``): they
stream RL-step records, write ``train.jsonl`` (and ``config.yaml`` when trained), and return one
EvalRecord per (task, threshold). Environment variables steer them, so that subprocess trials
see the same settings as the test that started them:

- ``PB_FAKE_STEP_S``: seconds per fake RL step (default 0);
- ``PB_FAKE_FAIL``: comma-separated trial numbers that raise;
- ``PB_FAKE_FAIL_SEEDS``: comma-separated training seeds that raise (replicates);
- ``PB_FAKE_NAN``: comma-separated trial numbers whose loss diverges;
- ``PB_FAKE_STARTED``: a directory where each trial appends its pid to ``<number>.started``
  when it begins (one line per start, so a trial run twice shows), and writes the worker slot
  it ran in to ``<number>.slot``; a seed replicate uses ``<number>-seed<seed>`` for ``<number>``.

Each training seed above 0 costs 3 points of accuracy, so that replicates differ.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from pareto_bench.core.records import EvalRecord, SampleResult, TrainStepRecord, append_jsonl

STEPS = 4


class FakeDiverged(RuntimeError):
    pass


def _numbers(var: str) -> set[int]:
    return {int(x) for x in os.environ.get(var, "").split(",") if x.strip()}


def _seed(spec) -> int:
    return int((spec.config or {}).get("seed", 0))


def _curve(spec, task: str, threshold: float) -> tuple[float, float]:
    """A made-up frontier: a higher tpf_weight buys TPF at some cost in accuracy."""
    weight = float(spec.params.get("reward.tpf_weight", 0.0 if spec.kind == "baseline" else 1.0))
    nll = float(spec.params.get("loss.nll_weight", 0.1))
    tpf = 1.0 + (1.0 - threshold) * 4.0 + weight
    accuracy = 90.0 - (1.0 - threshold) * 40.0 - 5.0 * weight + 20.0 * nll - 3.0 * _seed(spec)
    return max(0.0, min(100.0, accuracy)), tpf


def started_key(spec) -> str:
    replicate = Path(spec.trial_dir).name.startswith("seed-")
    return f"{spec.number}-seed{_seed(spec)}" if replicate else str(spec.number)


def quick_body(spec, on_step):
    started = os.environ.get("PB_FAKE_STARTED")
    if started:
        Path(started).mkdir(parents=True, exist_ok=True)
        with (Path(started) / f"{started_key(spec)}.started").open("a") as f:
            f.write(f"{os.getpid()}\n")
        slot = os.environ.get("PARETO_BENCH_SLOT", "0")
        (Path(started) / f"{started_key(spec)}.slot").write_text(slot)
    trial_dir = Path(spec.trial_dir)
    if spec.config is not None:
        (trial_dir / "config.yaml").write_text(yaml.safe_dump(spec.config))
        step_s = float(os.environ.get("PB_FAKE_STEP_S", "0"))
        for step in range(STEPS):
            if spec.number in _numbers("PB_FAKE_NAN") and step == 2:
                raise FakeDiverged(f"step {step}: the loss is nan")
            time.sleep(step_s)
            record = TrainStepRecord(
                step=step,
                reward=0.1 * step,
                reward_acc=0.0,
                reward_tpf=0.0,
                accuracy=50.0,
                tpf=2.0 + 0.1 * step,
                filtered_fraction=0.0,
                refill_rounds=0,
                policy_loss=0.0,
                kl=0.0,
                nll=0.0,
                loss=0.5 - 0.1 * step,
                clip_fraction=0.0,
                grad_norm=1.0,
                step_time=step_s,
                rollout_time=0.0,
                likelihood_time=0.0,
                backward_time=0.0,
                lr=1e-4,
            )
            append_jsonl(trial_dir / "train.jsonl", [record])
            on_step(record)
    if spec.number in _numbers("PB_FAKE_FAIL"):
        raise ValueError(f"fake failure of trial {spec.number}")
    if spec.config is not None and _seed(spec) in _numbers("PB_FAKE_FAIL_SEEDS"):
        raise ValueError(f"fake failure of seed {_seed(spec)}")
    records = []
    for task in spec.tasks:
        for threshold in spec.thresholds:
            accuracy, tpf = _curve(spec, task, threshold)
            n = 20
            correct = round(accuracy / 100 * n)
            forwards = 50
            tokens = round(tpf * forwards)
            samples = [
                SampleResult(f"p{i}", i < correct, float(i < correct), tokens // n, forwards // n)
                for i in range(n)
            ]
            record = EvalRecord.from_samples(task, threshold, samples, model=spec.model)
            record.accuracy, record.tpf = accuracy, tpf  # exact values, not rounded by the samples
            records.append(record)
    return records

"""``pareto-bench bench rl``: does LightningRL move the tiny model's frontier, and GRPO not?

For each seed it trains ``grpo`` and ``lightningrl`` with the same budget and settings from
the shipped tiny model, evaluates the base model and every checkpoint greedily on the held-out
synthetic problems at each threshold, and reports the medians over seeds of accuracy, TPF and
AUP (y_max = the best accuracy of any method, as d3LLM defines it), with the issue's targets
checked at the operating threshold.

Every run is one trial of the sweep harness (``TrialSpec`` through an ``Executor``), so the
bench trains and evaluates exactly as a sweep does, one thread per run, ``workers`` at a time.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pareto_bench.analysis.frontier import aup, default_y_max
from pareto_bench.core.defaults import MODEL, OPERATING_THRESHOLD, THRESHOLDS
from pareto_bench.core.progress import progress_bar
from pareto_bench.core.records import BASELINE, TRIAL, EvalRecord, TrainStepRecord
from pareto_bench.rl.config import TrainConfig, load_recipe
from pareto_bench.sweep.executors import Executor, make_executor
from pareto_bench.sweep.trial import TrialSpec

METHODS = ("grpo", "lightningrl")
TASK = "synthetic"
# The budget and settings at which tiny shows the effect: every method's recipe goes on top of
# it, and the user's --set on top of that.
TINY_SCALE = "lightningrl-tiny"


def bench_rl(
    *,
    seeds: Sequence[int] = (0, 1, 2),
    thresholds: Sequence[float] = THRESHOLDS,
    operating_threshold: float = OPERATING_THRESHOLD,
    overrides: Sequence[str] = (),
    limit: int | None = None,
    out_dir: str | Path = "runs/bench-rl",
    methods: Sequence[str] = METHODS,
    workers: int = 1,
    executor: str = "subprocess",
    progress: bool = True,
) -> dict[str, Any]:
    out = Path(out_dir)
    runs = [_spec(0, "base", out / "base", None, thresholds, limit)]
    for seed in seeds:
        for method in methods:
            config = load_recipe(
                method,
                [*overrides, f"seed={seed}", "eval_every=0", "save_every=0"],
                base=TINY_SCALE,
            )
            spec = _spec(len(runs), method, out / f"{method}-seed{seed}", config, thresholds, limit)
            runs.append(spec)
    results = _run_all(runs, make_executor(executor), workers, progress)

    curves: dict[str, list[list[EvalRecord]]] = {"base": [], **{m: [] for m in methods}}
    train_seconds: dict[str, list[float]] = {m: [] for m in methods}
    for spec, (records, steps) in zip(runs, results, strict=True):
        curves[spec.name].append(records)
        if spec.config is not None:
            train_seconds[spec.name].append(sum(s.step_time for s in steps))
    curves["base"] *= len(seeds)  # greedy decoding: the base model has one curve

    y_max = default_y_max(
        [(r.tpf, r.accuracy) for runs_ in curves.values() for records in runs_ for r in records]
    )
    summary: dict[str, Any] = {
        "y_max": y_max,
        "seeds": list(seeds),
        "train_base": TINY_SCALE,
        "settings": list(overrides),
        "methods": {},
    }
    for method, method_runs in curves.items():
        aups = [aup([(r.tpf, r.accuracy) for r in records], y_max) for records in method_runs]
        summary["methods"][method] = {
            "aup": statistics.median(aups),
            "aup_range": [min(aups), max(aups)],
            "thresholds": _medians_per_threshold(method_runs, thresholds),
            # Each seed's own numbers: a run is exact on one machine, statistical across them.
            "per_seed": [
                {
                    "seed": seed,
                    "aup": value,
                    "thresholds": {
                        str(r.threshold): {"accuracy": r.accuracy, "tpf": r.tpf} for r in records
                    },
                }
                for seed, value, records in zip(seeds, aups, method_runs, strict=True)
            ],
            **(
                {"train_seconds": statistics.median(train_seconds[method])}
                if train_seconds.get(method)
                else {}
            ),
        }
    if set(METHODS) <= set(methods):
        summary["targets"] = _targets(summary["methods"], str(operating_threshold))
    return summary


def _spec(
    number: int,
    name: str,
    run_dir: Path,
    config: TrainConfig | None,
    thresholds: Sequence[float],
    limit: int | None,
) -> TrialSpec:
    return TrialSpec(
        number=number,
        kind=BASELINE if config is None else TRIAL,
        name=name,
        trial_dir=str(run_dir),
        model=MODEL if config is None else config.model,
        tasks=[TASK],
        thresholds=list(thresholds),
        config=None if config is None else config.model_dump(mode="json"),
        limit=limit,
        threads=1,  # two runs on two cores beat one run on two threads (barrier waits)
    )


def _run_all(
    runs: Sequence[TrialSpec], executor: Executor, workers: int, progress: bool
) -> list[tuple[list[EvalRecord], list[TrainStepRecord]]]:
    """Run every spec, ``workers`` at a time; the bar counts RL steps and evaluations."""
    total = sum((spec.config or {}).get("steps", 0) + 1 for spec in runs)
    lock = threading.Lock()
    with progress_bar("bench rl", total, enabled=progress) as bar:

        def run(spec: TrialSpec) -> tuple[list[EvalRecord], list[TrainStepRecord]]:
            steps: list[TrainStepRecord] = []

            def on_step(record: TrainStepRecord) -> None:
                steps.append(record)
                with lock:
                    bar.advance(status=f"{spec.name}: step {record.step + 1}")

            records = executor.run(spec, on_step)
            with lock:
                bar.advance(status=f"{spec.name}: evaluated")
            return records, steps

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(run, runs))


def _medians_per_threshold(
    runs: Sequence[Sequence[EvalRecord]], thresholds: Sequence[float]
) -> dict[str, dict[str, float]]:
    per_threshold = {}
    for i, tau in enumerate(thresholds):
        per_threshold[str(tau)] = {
            "accuracy": statistics.median(records[i].accuracy for records in runs),
            "tpf": statistics.median(records[i].tpf for records in runs),
            "answer_accuracy": statistics.median(
                records[i].extra.get("answer_accuracy", 0.0) for records in runs
            ),
        }
    return per_threshold


def _targets(methods: dict[str, Any], op: str) -> dict[str, Any]:
    """The issue's frontier targets, read off the medians."""
    base, light, grpo = (methods[k]["thresholds"][op] for k in ("base", "lightningrl", "grpo"))
    targets = {
        "aup_gain": methods["lightningrl"]["aup"] / methods["base"]["aup"] - 1,
        "tpf_gain_at_op": light["tpf"] / base["tpf"] - 1,
        "accuracy_change_at_op": light["accuracy"] - base["accuracy"],
        "grpo_tpf_below_lightningrl_at_op": grpo["tpf"] < light["tpf"],
    }
    targets["met"] = (
        targets["aup_gain"] >= 0.25
        and targets["tpf_gain_at_op"] >= 0.30
        and targets["accuracy_change_at_op"] >= -2.0
        and targets["grpo_tpf_below_lightningrl_at_op"]
    )
    return targets

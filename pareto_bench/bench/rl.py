"""``pareto-bench bench rl``: does LightningRL move the tiny model's frontier, and GRPO not?

For each seed it trains ``grpo`` and ``lightningrl`` with the same budget from the shipped
tiny model, evaluates the base model and both checkpoints greedily on the held-out synthetic
problems at each threshold, and reports the medians over seeds of accuracy, TPF and AUP
(y_max = the best accuracy of any of the three methods, as d3LLM defines it), with the
issue's targets checked at the operating threshold.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from pareto_bench.evaluate import evaluate
from pareto_bench.frontier import aup
from pareto_bench.models import load_model
from pareto_bench.records import EvalRecord, append_jsonl
from pareto_bench.rl.config import load_recipe
from pareto_bench.rl.trainer import train
from pareto_bench.tasks import get_task

METHODS = ("grpo", "lightningrl")


def bench_rl(
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    thresholds: tuple[float, ...] = (0.5, 0.7, 0.9),
    operating_threshold: float = 0.9,
    overrides: tuple[str, ...] = (),
    limit: int | None = None,
    out_dir: str | Path = "runs/bench-rl",
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    out = Path(out_dir)
    task = get_task("synthetic")
    curves: dict[str, list[list[EvalRecord]]] = {"base": [], **{m: [] for m in methods}}
    train_seconds: dict[str, list[float]] = {m: [] for m in methods}
    base = evaluate(load_model("tiny"), task, thresholds, limit=limit, progress=False)
    curves["base"] = [base] * len(seeds)  # greedy decoding: the base model has one curve
    for seed in seeds:
        for method in methods:
            config = load_recipe(
                f"trainers/{method}.yaml",
                [f"seed={seed}", "eval_every=0", "save_every=0", *overrides],
            )
            run_dir = out / f"{method}-seed{seed}"
            result = train(config, out_dir=run_dir, progress=True)
            train_seconds[method].append(sum(r.step_time for r in result.steps))
            records = evaluate(
                load_model(result.checkpoint_dir), task, thresholds, limit=limit, progress=False
            )
            append_jsonl(run_dir / "eval.jsonl", records)
            curves[method].append(records)

    y_max = max(r.accuracy for runs in curves.values() for records in runs for r in records)
    summary: dict[str, Any] = {
        "y_max": y_max,
        "seeds": list(seeds),
        "overrides": list(overrides),
        "methods": {},
    }
    for method, runs in curves.items():
        per_threshold = {}
        for i, tau in enumerate(thresholds):
            per_threshold[str(tau)] = {
                "accuracy": statistics.median(records[i].accuracy for records in runs),
                "tpf": statistics.median(records[i].tpf for records in runs),
                "answer_accuracy": statistics.median(
                    records[i].extra.get("answer_accuracy", 0.0) for records in runs
                ),
            }
        summary["methods"][method] = {
            "aup": statistics.median(
                aup([(r.tpf, r.accuracy) for r in records], y_max) for records in runs
            ),
            "thresholds": per_threshold,
            **(
                {"train_seconds": statistics.median(train_seconds[method])}
                if method in train_seconds
                else {}
            ),
        }
    if set(METHODS) <= set(methods):
        summary["targets"] = _targets(summary["methods"], str(operating_threshold))
    return summary


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

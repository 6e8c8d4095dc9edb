"""``pareto-bench bench train``: seconds per RL step on tiny and where the time goes."""

from __future__ import annotations

import statistics
import tempfile
from typing import Any

from pareto_bench.rl.config import load_recipe
from pareto_bench.rl.trainer import train


def bench_train(
    recipe: str = "trainers/lightningrl.yaml", steps: int = 3, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    config = load_recipe(recipe, ["eval_every=0", "save_every=0", f"steps={steps}", *overrides])
    with tempfile.TemporaryDirectory() as out:
        result = train(config, out_dir=out, progress=False)
    rows = result.steps[1:] or result.steps  # the first step pays one-off warm-up costs

    def median(field: str) -> float:
        return statistics.median(getattr(r, field) for r in rows)

    step = median("step_time")
    parts = {k: median(f"{k}_time") for k in ("rollout", "likelihood", "backward")}
    return {
        "recipe": recipe,
        "prompts_per_step": config.rollout.prompts_per_step,
        "group_size": config.rollout.group_size,
        "likelihood": config.likelihood.mode,
        "steps_measured": len(rows),
        "seconds_per_step": step,
        "seconds": parts,
        "share": {k: v / step for k, v in parts.items()},
        "refill_rounds": median("refill_rounds"),
        "tpf": median("tpf"),
    }

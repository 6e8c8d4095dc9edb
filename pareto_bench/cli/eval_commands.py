"""``pareto-bench eval``: decode a task at several thresholds, score, write EvalRecord rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pareto_bench.cli.options import DeviceOption, DtypeOption
from pareto_bench.core.defaults import EVAL_BATCH_SIZE, MODEL, THRESHOLDS


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("eval")(eval_command)


def parse_thresholds(text: str) -> list[float]:
    from pareto_bench.cli.options import UserError

    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(
            f"--thresholds {text!r}: expected numbers separated by commas, e.g. 0.5,0.7,0.9"
        ) from None
    if not values:
        raise UserError("--thresholds: give at least one threshold, e.g. 0.5,0.7,0.9")
    return values


def eval_command(
    task: Annotated[str, typer.Option(help="A registered task, e.g. synthetic, gsm8k, humaneval.")],
    model: Annotated[str, typer.Option(help="'tiny' or a checkpoint directory.")] = MODEL,
    thresholds: Annotated[str, typer.Option(help="Comma-separated thresholds.")] = ",".join(
        f"{t:g}" for t in THRESHOLDS
    ),
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N problems.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (or set PARETO_BENCH_DATA).")
    ] = None,
    block_size: Annotated[int | None, typer.Option(help="Override the model's block size.")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences decoded together.")] = EVAL_BATCH_SIZE,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Token budget (default: the task's).")
    ] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    out: Annotated[Path | None, typer.Option(help="EvalRecord JSONL to append to.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the records' summaries as JSON.")
    ] = False,
) -> None:
    """Evaluate a model on a task at several thresholds: one (accuracy, TPF) point each.
    Under torchrun the problems are shared among the ranks and rank 0 writes the records."""
    from pareto_bench.cli.options import resolve_placement
    from pareto_bench.core.placement import World
    from pareto_bench.core.records import append_jsonl
    from pareto_bench.dllm.models import load_model
    from pareto_bench.evaluate import evaluate_sharded
    from pareto_bench.tasks import get_task
    from pareto_bench.tasks.base import resolve_data_dir

    placed_on, placed_in = resolve_placement(device, dtype)
    chosen = get_task(task)
    problems = chosen.load(resolve_data_dir(data_dir))  # before the model: fail fast
    world = World.from_env()
    world.start(placed_on)
    records = evaluate_sharded(
        load_model(model, block_size=block_size, device=placed_on, dtype=placed_in),
        chosen,
        parse_thresholds(thresholds),
        world,
        limit=limit,
        problems=problems,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    world.finish()
    if not world.is_main:
        return
    path = out or Path("runs") / "eval" / f"{task}.jsonl"
    append_jsonl(path, records)
    summary = [
        {
            "task": r.task,
            "threshold": r.threshold,
            "accuracy": r.accuracy,
            "tpf": r.tpf,
            "n": r.num_samples,
            **r.extra,
        }
        for r in records
    ]
    if as_json:
        print(json.dumps({"records": summary, "path": str(path)}))
        return
    for row in summary:
        extra = "".join(
            f"  {k} {v:.1f}"
            for k, v in row.items()
            if k not in ("task", "threshold", "accuracy", "tpf", "n")
        )
        print(
            f"{row['task']}  tau {row['threshold']:<5g} accuracy {row['accuracy']:5.1f}%  TPF {row['tpf']:.2f}  n {row['n']}{extra}"
        )
    print(f"records: {path}")

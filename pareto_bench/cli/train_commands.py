"""``pareto-bench train``: run a trainer recipe (LightningRL, GRPO, ablations)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("train")(train_command)
    bench.command("train")(bench_train)
    bench.command("scale")(bench_scale)
    bench.command("rl")(bench_rl)


def train_command(
    recipe: Annotated[
        Path, typer.Argument(help="A trainer recipe, e.g. trainers/lightningrl.yaml.")
    ],
    model: Annotated[str | None, typer.Option(help="'tiny' or a checkpoint directory.")] = None,
    task: Annotated[
        str | None, typer.Option(help="Training task (its -train split is used when it has one).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="RL steps.")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Directory of the task's data files (default: $PARETO_BENCH_DATA)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default runs/<name>).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this output directory.")
    ] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override a config field, key=value.")
    ] = [],  # noqa: B006
) -> None:
    """Train with a recipe; writes checkpoints, the resolved config and train.jsonl."""
    from pareto_bench.cli.options import UserError
    from pareto_bench.core.placement import World
    from pareto_bench.rl.config import load_recipe
    from pareto_bench.rl.trainer import TrainingDiverged, train

    overrides = [*set_]
    for key, value in (("model", model), ("task", task), ("steps", steps), ("data_dir", data_dir)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if resume is not None and out is not None and resume != out:
        raise UserError("--resume DIR already names the output directory; drop --out")
    config = load_recipe(recipe, overrides)
    out_dir = resume or out
    try:
        result = train(config, out_dir=out_dir, resume=resume is not None)
    except TrainingDiverged as e:
        raise UserError(str(e)) from None
    world = World.from_env()
    world.finish()
    if not world.is_main:
        return
    last = result.steps[-1] if result.steps else None
    if last is not None:
        print(
            f"step {last.step}: reward {last.reward:+.3f}  accuracy {last.accuracy:.1f}%  TPF {last.tpf:.2f}"
        )
    print(f"checkpoint: {result.checkpoint_dir}")


def bench_train(
    recipe: Annotated[str, typer.Option(help="Trainer recipe.")] = "trainers/lightningrl.yaml",
    steps: Annotated[int, typer.Option(help="Steps to run (the first is not counted).")] = 3,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override a config field, key=value.")
    ] = [],  # noqa: B006
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the default output).")
    ] = True,
) -> None:
    """Seconds per RL step on tiny (B=16 x G=8 by default) and its rollout/likelihood/backward split."""
    import json

    from pareto_bench.bench.train import bench_train as run

    print(json.dumps(run(recipe, steps, tuple(set_)), indent=None if as_json else 2))


def bench_scale(
    lengths: Annotated[
        str, typer.Option(help="Trajectory lengths in tokens, comma-separated.")
    ] = "256,1024,4096",
    blocks: Annotated[str, typer.Option(help="Block sizes, comma-separated.")] = "4,32",
    likelihoods: Annotated[
        str, typer.Option(help="Likelihood modes, comma-separated.")
    ] = "trajectory,block_surrogate",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the default output).")
    ] = True,
) -> None:
    """One RL step of 4 trajectories on a random SDAR-layout checkpoint with the real 151,936-row
    vocabulary, per length, block size and likelihood: peak RSS, time, forwards per trajectory."""
    import json

    from pareto_bench.bench.scale import bench_scale as run

    result = run(
        lengths=tuple(int(n) for n in lengths.split(",")),
        block_sizes=tuple(int(b) for b in blocks.split(",")),
        likelihoods=tuple(m.strip() for m in likelihoods.split(",")),
    )
    print(json.dumps(result, indent=None if as_json else 2))


def bench_rl(
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    methods: Annotated[
        str, typer.Option(help="Recipes to train, comma-separated.")
    ] = "grpo,lightningrl",
    limit: Annotated[
        int | None, typer.Option(help="Held-out problems per evaluation (default all 500).")
    ] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override a field of both recipes, key=value.")
    ] = [],  # noqa: B006
    out: Annotated[Path, typer.Option(help="Where the runs go.")] = Path("runs/bench-rl"),
    workers: Annotated[
        int, typer.Option(min=1, help="Runs at a time, one thread each (2 on a 2-core machine).")
    ] = 1,
) -> None:
    """Base vs GRPO vs LightningRL on tiny: medians over seeds of accuracy, TPF and AUP. Prints JSON.

    Recipes train on top of trainers/lightningrl-tiny.yaml ("train_base"), --set ("settings") last."""
    import json

    from pareto_bench.bench.rl import bench_rl as run

    print(
        json.dumps(
            run(
                seeds=tuple(int(s) for s in seeds.split(",")),
                methods=tuple(m.strip() for m in methods.split(",")),
                overrides=tuple(set_),
                workers=workers,
                limit=limit,
                out_dir=out,
            )
        )
    )

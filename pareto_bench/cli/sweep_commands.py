"""``pareto-bench sweep``, ``pareto-bench ui`` and ``pareto-bench bench sweep``."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_SPEC = "tiny"
DEFAULT_UI_PORT = 5000


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
    app.command("ui")(ui_command)
    bench.command("sweep")(bench_sweep_command)


def sweep_command(
    spec: Annotated[
        str,
        typer.Argument(help="A sweep spec (sweeps/tiny.yaml) or the name of one in sweeps/."),
    ] = DEFAULT_SPEC,
    trials: Annotated[
        int | None, typer.Option(help="Search trials (baselines come on top); default: the spec's.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: an RDB URL (postgresql://..., sqlite:///...) or a journal file path; "
            "default: <out>/study.journal."
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI, or 'none'; default: sqlite:///<cwd>/mlruns/mlflow.db."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory; default: runs/<spec name>.")
    ] = None,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override a spec field, key=value (repeatable).")
    ] = [],  # noqa: B006
    worker: Annotated[
        bool, typer.Option("--worker", help="Join the sweep in --storage as one more worker.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the resolved trials; run nothing.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show the live progress display.")] = True,
) -> None:
    """Run (or resume, or join) a sweep: Optuna trials of trainer recipes, tracked in MLflow."""
    from pareto_bench.sweep import (
        SweepOptions,
        load_spec,
        plan_trials,
        render_plan,
        resolve_spec_path,
        run_sweep,
        spec_warnings,
    )

    spec_path = resolve_spec_path(spec)
    sweep_spec = load_spec(spec_path, set_)
    if dry_run:
        from rich.console import Console

        unchecked: list[str] = []
        planned = plan_trials(sweep_spec, spec_path, trials, unchecked)
        adaptive = sweep_spec.sampler.name != "grid" and bool(sweep_spec.search_space)
        console = Console()
        console.print(render_plan(sweep_spec, planned, adaptive=adaptive))
        for warning in spec_warnings(sweep_spec):
            console.print(f"warning: {warning}", style="yellow")
        for line in unchecked:  # a real sweep stops at these; the plan above did not need them
            console.print(f"not checked here: {line}", style="yellow", soft_wrap=True)
        return
    # A scheduler's SIGTERM ends the sweep like Ctrl-C: the running trial is marked failed
    # (and re-enqueued) instead of being left for a later run to find dead.
    signal.signal(signal.SIGTERM, _interrupt)
    options = SweepOptions(
        spec_path=spec_path,
        trials=trials,
        storage=storage,
        tracking_uri=tracking_uri,
        out_dir=out,
        worker=worker,
        progress=progress,
    )
    result = run_sweep(sweep_spec, options)
    counts = result.counts
    print(
        f"sweep {sweep_spec.name}: {counts.get('COMPLETE', 0)} complete, {counts.get('FAIL', 0)} failed, "
        f"{counts.get('RUNNING', 0)} running elsewhere, {counts.get('WAITING', 0)} waiting "
        f"(this process ran {len(result.ran)})"
    )
    print(f"records: {result.out_dir.resolve()}")
    if result.parent_run_id:
        print(f"tracking: {result.tracking_uri}  (browse it: pareto-bench ui {result.out_dir})")
    if not counts.get("RUNNING") and not counts.get("WAITING") and counts.get("COMPLETE"):
        from pareto_bench.analysis.report.ablations import ablation_tables, ablation_verdict
        from pareto_bench.analysis.report.summary import summarise
        from pareto_bench.analysis.report.sweep_data import load_sweep_dir

        sweep = load_sweep_dir(result.out_dir)
        summary = summarise(sweep)
        if sweep.searched:
            print(summary.verdict)
            print(f"report: pareto-bench report {result.out_dir}")
        else:  # baselines alone, as in sweeps/ablations.yaml: how their order compares
            print(ablation_verdict(ablation_tables(sweep, summary)))
            print(f"report: pareto-bench report {result.out_dir} --template ablations")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def ui_command(
    sweep_dir: Annotated[
        Path | None,
        typer.Argument(help="A sweep's output directory; its sweep.json names the tracking store."),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="The store to serve; default: the sweep's, else the local one."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = DEFAULT_UI_PORT,
) -> None:
    """Start the MLflow UI (``mlflow server``) on 127.0.0.1 for a sweep's store and print its URL."""
    from pareto_bench.sweep.ui import resolve_ui_target, serve

    serve(resolve_ui_target(sweep_dir, tracking_uri), port=port)


def bench_sweep_command(
    spec: Annotated[str, typer.Option(help="The sweep spec to measure.")] = DEFAULT_SPEC,
    set_: Annotated[
        list[str], typer.Option("--set", help="Override a spec field, key=value (repeatable).")
    ] = [],  # noqa: B006
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False,
    trials: Annotated[int, typer.Option(help="Search trials per measurement.")] = 4,
    steps: Annotated[
        int | None, typer.Option(help="RL steps per trial; default: tiny.yaml's.")
    ] = None,
) -> None:
    """Tracking overhead (% of trial wall time) on tiny.yaml, and trials/hour with 1 vs 2 workers."""
    from pareto_bench.bench.sweep import bench_sweep

    result = bench_sweep(
        spec=spec, overrides=set_, trials=trials, steps=steps, progress=not json_out
    )
    if json_out:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))

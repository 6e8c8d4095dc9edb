"""Analysis commands: ``frontier``, ``report``, ``compare``, ``bench frontier``, ``bench report``."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pareto_bench.analysis.report.template import DEFAULT_TEMPLATE
from pareto_bench.core.defaults import HV_REFERENCE

REF_HELP = "Hypervolume reference point TPF,ACCURACY (TPF 1 = autoregressive decoding)."


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("frontier")(frontier)
    app.command("report")(report)
    app.command("compare")(compare)
    bench.command("frontier")(bench_frontier)
    bench.command("report")(bench_report)


def _user_error(message: str) -> Exception:
    from pareto_bench.cli.options import UserError

    return UserError(message)


def _parse_ref(text: str) -> tuple[float, float]:
    try:
        tpf, accuracy = (float(v) for v in text.split(","))
    except ValueError:
        raise _user_error(f"--ref {text!r}: expected TPF,ACCURACY, for example --ref 1,0") from None
    return tpf, accuracy


def _load(argument: str, tracking_uri: str | None) -> Any:
    from pareto_bench.analysis.report.sources import SourceError, load_source

    try:
        return load_source(argument, tracking_uri)
    except SourceError as e:
        raise _user_error(str(e)) from None


def _stdout() -> Console:
    return Console(soft_wrap=True)


# ----------------------------------------------------------------------------- frontier


def _frontier_result(sources: list[Any], ref: tuple[float, float], y_max: float | None) -> dict:

    from pareto_bench.analysis.frontier import (
        aup_method,
        default_y_max,
        hypervolume,
        pareto_front,
        record_points,
        records_aup,
    )

    curves = [c for s in sources for c in s.curves]
    tasks = sorted({r.task for c in curves for r in c.records})
    result: dict[str, Any] = {"ref": list(ref), "tasks": {}}
    for task in tasks:
        rows = [(c.label, r) for c in curves for r in c.records if r.task == task]
        points = record_points([r for _, r in rows])
        task_y_max = y_max or default_y_max(points)
        front = [
            {
                "source": rows[i][0],
                "threshold": rows[i][1].threshold,
                "tpf": rows[i][1].tpf,
                "accuracy": rows[i][1].accuracy,
            }  # fmt: skip
            for i in pareto_front(points)
        ]
        aups = []
        for curve in curves:
            curve_records = [r for r in curve.records if r.task == task]
            if curve_records:
                aups.append(
                    {
                        "source": curve.label,
                        "aup": records_aup(curve_records, task_y_max),
                        "method": aup_method(curve_records),
                        "points": len(curve_records),
                    }
                )
        aups.sort(key=lambda row: -row["aup"])
        result["tasks"][task] = {
            "y_max": task_y_max,
            "hypervolume": hypervolume(points, ref),
            "frontier": front,
            "aup": aups,
        }
    return result


def _print_frontier(result: dict) -> None:
    console = _stdout()
    for task, data in result["tasks"].items():
        table = Table(title=f"{task}: non-dominated points", title_justify="left")
        for column in ("source", "τ", "TPF", "accuracy %"):
            table.add_column(column, justify="left" if column == "source" else "right")
        for row in data["frontier"]:
            table.add_row(
                row["source"],
                f"{row['threshold']:g}",
                f"{row['tpf']:.2f}",
                f"{row['accuracy']:.1f}",
            )
        console.print(table)
        ref = result["ref"]
        console.print(
            f"hypervolume {data['hypervolume']:.2f} (reference TPF {ref[0]:g}, accuracy {ref[1]:g}%)"
        )
        aup_table = Table(title=f"{task}: AUP (y_max {data['y_max']:.1f}%)", title_justify="left")
        aup_table.add_column("source")
        aup_table.add_column("AUP", justify="right")
        aup_table.add_column("points", justify="right")
        for row in data["aup"]:
            aup_table.add_row(row["source"], f"{row['aup']:.1f}", str(row["points"]))
        console.print(aup_table)


def frontier(
    records: Annotated[
        list[str], typer.Argument(help="EvalRecord JSONL files, trial or sweep directories.")
    ],
    ref: Annotated[str, typer.Option(help=REF_HELP)] = f"{HV_REFERENCE[0]:g},{HV_REFERENCE[1]:g}",
    y_max: Annotated[
        float | None,
        typer.Option(help="AUP's y_max in percent (default: the best accuracy in the input)."),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI, for run ids.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Non-dominated points, hypervolume and AUP per task of recorded evaluations."""
    sources = [_load(argument, tracking_uri) for argument in records]
    result = _frontier_result(sources, _parse_ref(ref), y_max)
    if as_json:
        print(json.dumps(result))
    else:
        _print_frontier(result)


# ------------------------------------------------------------------------------- report


def report(
    sweep_dir: Annotated[
        Path | None, typer.Argument(help="A sweep's output directory.", show_default=False)
    ] = None,
    mlflow_run: Annotated[
        str | None, typer.Option(help="Read the sweep from this parent MLflow run instead.")
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI for --mlflow-run (default: $MLFLOW_TRACKING_URI "
            "or sqlite:///mlruns/mlflow.db)."
        ),  # fmt: skip
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="PDF path (default: reports/out/<sweep name>.pdf).")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates for the CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of fANOVA.")] = 0,
    ref: Annotated[str, typer.Option(help=REF_HELP)] = f"{HV_REFERENCE[0]:g},{HV_REFERENCE[1]:g}",
    log_mlflow: Annotated[
        bool, typer.Option(help="Log the PDF to the sweep's parent MLflow run, if it names one.")
    ] = True,
    template: Annotated[
        str,
        typer.Option(help="The report's template: a YAML path, or a name in reports/ (paper)."),
    ] = DEFAULT_TEMPLATE,
) -> None:
    """Render a multi-page PDF report of a sweep from its recorded data alone, page by page as
    its template (reports/default.yaml unless --template says otherwise) defines."""
    from pareto_bench.analysis.report.build import build_report, stages
    from pareto_bench.analysis.report.mlflow_source import load_mlflow_run
    from pareto_bench.analysis.report.sweep_data import load_sweep_dir
    from pareto_bench.analysis.report.template import load_template
    from pareto_bench.core.progress import progress_bar

    if (sweep_dir is None) == (mlflow_run is None):
        raise _user_error("report: give either SWEEP_DIR or --mlflow-run RUN_ID (exactly one)")
    if n_boot < 1:
        raise _user_error(f"--n-boot {n_boot}: needs at least 1 replicate")
    reference = _parse_ref(ref)
    definition = load_template(template)
    with tempfile.TemporaryDirectory(prefix="pareto-bench-mlflow-") as download:
        if sweep_dir is not None:
            sweep = load_sweep_dir(sweep_dir)
        else:
            sweep = load_mlflow_run(str(mlflow_run), tracking_uri, download)
        path = out or Path("reports/out") / f"{sweep.name}.pdf"
        with progress_bar("report", len(stages(definition))) as bar:
            result = build_report(
                sweep,
                path,
                definition,
                ref=reference,
                n_boot=n_boot,
                seed=seed,
                log_to_mlflow=log_mlflow,
                step=lambda stage: bar.advance(status=stage),
            )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {result.path}")
    if result.logged_to_run:
        print(f"logged to MLflow run {result.logged_to_run}")


# ------------------------------------------------------------------------------ compare


def _print_comparison(label_a: str, label_b: str, results: dict) -> None:
    console = _stdout()
    console.print(f"A = {label_a}\nB = {label_b}")
    for task, c in results.items():
        problems = (
            f"paired bootstrap over {c.problems_a} problems"
            if c.paired
            else f"unpaired bootstrap over {c.problems_a} and {c.problems_b} problems"
        )
        n = c.aup_diff.n_resamples
        table = Table(title=f"{task} ({problems}, {n} replicates)", title_justify="left")
        for column in ("metric", "A", "B", "A - B [95% CI]"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        table.add_row(
            "hypervolume",
            f"{c.hypervolume_a:.2f}",
            f"{c.hypervolume_b:.2f}",
            str(c.hypervolume_diff),
        )
        table.add_row(
            f"AUP (y_max {c.y_max:.1f})", f"{c.aup_a:.1f}", f"{c.aup_b:.1f}", str(c.aup_diff)
        )
        console.print(table)
        console.print(
            f"A's frontier points that dominate a point of B's: {100 * c.dominating_share:.0f}%; "
            f"B's frontier points dominated by A's: {100 * c.covered_share:.0f}%"
        )


def compare(
    a: Annotated[
        str, typer.Argument(help="A: sweep dir, trial dir, EvalRecord JSONL or MLflow run id.")
    ],
    b: Annotated[str, typer.Argument(help="B: the same kinds as A.")],
    ref: Annotated[str, typer.Option(help=REF_HELP)] = f"{HV_REFERENCE[0]:g},{HV_REFERENCE[1]:g}",
    y_max: Annotated[
        float | None,
        typer.Option(
            help="AUP's y_max in percent (default: per task, the best accuracy in A or B)."
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    plot: Annotated[Path | None, typer.Option(help="Write an overlay plot (PNG) here.")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI, for run ids.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """How far A's frontier is ahead of B's: hypervolume and AUP differences with bootstrap
    CIs over problems, and the share of A's frontier that dominates B's."""
    from pareto_bench.analysis import frontier as F

    if n_boot < 1:
        raise _user_error(f"--n-boot {n_boot}: needs at least 1 replicate")
    source_a, source_b = _load(a, tracking_uri), _load(b, tracking_uri)
    try:
        results = F.compare(
            source_a.records(),
            source_b.records(),
            ref=_parse_ref(ref),
            y_max=y_max,
            n=n_boot,
            seed=seed,
        )
    except ValueError as e:
        raise _user_error(f"compare {a} {b}: {e}") from None
    replicated = {}
    if max(len(source_a.seeds), len(source_b.seeds)) > 1:
        replicated = F.compare_replicated(
            source_a.seeds or [source_a.records()],
            source_b.seeds or [source_b.records()],
            y_max=y_max,
            n=n_boot,
            seed=seed,
        )
    if plot is not None:
        from pareto_bench.analysis.report.plots import compare_figure, figure_png

        by_task = {
            task: (
                F.record_points([r for r in source_a.records() if r.task == task]),
                F.record_points([r for r in source_b.records() if r.task == task]),
            )
            for task in results
        }
        captions = {t: f"ΔAUP {c.aup_diff}   ΔHV {c.hypervolume_diff}" for t, c in results.items()}
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_bytes(
            figure_png(compare_figure(by_task, (source_a.label, source_b.label), captions))
        )
    if as_json:
        payload = {
            "a": source_a.label,
            "b": source_b.label,
            "tasks": {task: c.to_dict() for task, c in results.items()},
            "over_seeds": {task: c.to_dict() for task, c in replicated.items()},
        }
        print(json.dumps(payload))
    else:
        _print_comparison(source_a.label, source_b.label, results)
        for task, r in replicated.items():
            print(
                f"{task}, trained with several seeds: median AUP over seeds A {r.aup_a:.1f}, "
                f"B {r.aup_b:.1f}; A - B {r.aup_diff} (95% CI), from a bootstrap that resamples "
                f"A's {r.seeds_a} and B's {r.seeds_b} seeds, then {r.problems} problems "
                f"({r.aup_diff.n_resamples} replicates)"
            )
        if plot is not None:
            print(f"plot: {plot}")


# -------------------------------------------------------------------------------- bench


def bench_frontier(
    points: Annotated[int, typer.Option(help="Number of random points.")] = 100_000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the default output).")
    ] = True,
) -> None:
    """Time the frontier functions on random points. Prints JSON."""
    from pareto_bench.bench.analysis import bench_frontier as run

    print(json.dumps(run(points), indent=None if as_json else 2))


def bench_report(
    trials: Annotated[int, typer.Option(help="Trials in the synthetic sweep.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (the default output).")
    ] = True,
) -> None:
    """Time a full report on a synthetic recorded sweep. Prints JSON."""
    from pareto_bench.bench.analysis import bench_report as run

    print(json.dumps(run(trials), indent=None if as_json else 2))

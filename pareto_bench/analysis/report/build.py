"""Build a sweep's report from its recorded data: findings, figures, tables, then the PDF.

The report's template (``reports/*.yaml``, :mod:`pareto_bench.analysis.report.template`) says which
pages it has and what they show. Nothing is re-run: every number comes from the records the
sweep wrote. The finished PDF is logged to the sweep's parent MLflow run when sweep.json names
one; if the tracking store cannot be reached the PDF is kept and a warning says so.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pareto_bench.analysis.frontier import record_points, records_aup, task_curve
from pareto_bench.analysis.report import plots
from pareto_bench.analysis.report.ablations import (
    AblationTable,
    ablation_tables,
    ablation_verdict,
    table_rows,
)
from pareto_bench.analysis.report.importance import compute_importances
from pareto_bench.analysis.report.mlflow_source import quiet_mlflow
from pareto_bench.analysis.report.pdf import (
    FigurePage,
    ProvenancePage,
    ReportContent,
    Section,
    SummaryPage,
    TablePage,
    write_pdf,
)
from pareto_bench.analysis.report.provenance import code_version, environment
from pareto_bench.analysis.report.published import load_published, overlay_points
from pareto_bench.analysis.report.summary import SweepSummary, summarise
from pareto_bench.analysis.report.sweep_data import SweepData, TrialData
from pareto_bench.analysis.report.template import ReportTemplate
from pareto_bench.core.defaults import HV_REFERENCE
from pareto_bench.core.records import EvalRecord

# What a report does after its pages, for a progress bar (its stages: ``stages``).
FINAL_STAGES = ("PDF", "MLflow")


def stages(template: ReportTemplate) -> tuple[str, ...]:
    """The stages of rendering a report with ``template``: findings, its pages, then these."""
    return ("findings", *template.pages, *FINAL_STAGES)


@dataclass
class ReportResult:
    path: Path
    logged_to_run: str | None = None  # the MLflow run the PDF was logged to
    warnings: list[str] = field(default_factory=list)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _params_text(params: dict) -> str:
    def show(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={show(v)}" for k, v in sorted(params.items())) or "(none)"


def _curve(trial: TrialData, task: str) -> plots.PlotCurve:
    records = trial.task_records(task)
    return plots.PlotCurve(trial.label, trial.points(task), [r.threshold for r in records])


def _record_at(trial: TrialData, task: str, operating: float | None) -> EvalRecord | None:
    """The trial's point at the operating threshold (the nearest one; the last without one)."""
    records = trial.task_records(task)
    if not records:
        return None
    target = operating if operating is not None else records[-1].threshold
    return min(records, key=lambda r: abs(r.threshold - target))


def _at_operating_threshold(trial: TrialData, task: str, operating: float | None) -> str:
    record = _record_at(trial, task, operating)
    if record is None:
        return "n/a"
    return f"{record.accuracy:.1f}% / {record.tpf:.2f} (τ={record.threshold:g})"


def _summary_rows(summary: SweepSummary, sweep: SweepData) -> list[list[str]]:
    other = summary.baseline
    header = [
        "task", "best trial", "acc / TPF at τ_op", "AUP best", f"AUP {other}", "ΔAUP [95% CI]",
        "HV best", f"HV {other}", "ΔHV [95% CI]", f"best frontier points dominating {other}",
    ]  # fmt: skip
    rows = [header]
    for task in summary.tasks:
        c = task.comparison
        best = task.best
        rows.append(
            [
                task.task,
                best.label if best else "none completed",
                _at_operating_threshold(best, task.task, sweep.operating_threshold)
                if best
                else "n/a",
                _fmt(task.best_aup),
                _fmt((task.replicated or c).aup_b) if c else "n/a",
                str((task.replicated or c).aup_diff) if c else "n/a",
                _fmt(c.hypervolume_a) if c else "n/a",
                _fmt(c.hypervolume_b) if c else "n/a",
                str(c.hypervolume_diff) if c else "n/a",
                f"{100 * c.dominating_share:.0f}%" if c else "n/a",
            ]
        )
    return rows


def _summary_notes(summary: SweepSummary, sweep: SweepData) -> list[str]:
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(sweep.state_counts().items()))
    baselines = ", ".join(t.label for t in sweep.trials if t.is_baseline) or "none"
    notes = [
        f"Trials and baselines: {len(sweep.trials)} ({counts}); baselines: {baselines}.",
        "AUP is d3LLM's Accuracy Under Parallelism of each trial's curve over its thresholds, "
        "with y_max per task = the best accuracy any trial or baseline reached: "
        + ", ".join(f"{t.task} {t.y_max:.1f}%" for t in summary.tasks)
        + ".",
        f"Hypervolume (HV) is the area dominated by a curve's points above the reference point "
        f"TPF {summary.ref[0]:g}, accuracy {summary.ref[1]:g}% (TPF 1 = autoregressive decoding).",
        f"Confidence intervals: percentile bootstrap over evaluated problems ({summary.n_boot} "
        "replicates), paired when both curves were scored on the same problems. "
        f"Differences are best trial minus {summary.baseline}.",
    ]
    replicated = [t.replicated for t in summary.tasks if t.replicated is not None]
    if replicated:
        r = replicated[0]
        notes.append(
            f"Trained with several seeds: AUP is the {r.aggregate} over seeds of each seed's AUP, "
            f"and ΔAUP's interval resamples seeds first ({r.seeds_a} for the best trial, "
            f"{r.seeds_b} for {summary.baseline}), then problems ({r.problems}), so it carries "
            "both sources of variance. HV and the frontier points use all seeds' samples pooled."
        )
    return notes


def _objectives_text(record_objectives: dict[str, float], tasks: list[str]) -> str:
    lines = []
    for task in tasks:
        parts = [
            f"{name} {_fmt(record_objectives.get(f'{task}/{key}'), 2 if key == 'tpf' else 1)}"
            for key, name in (("accuracy", "acc"), ("tpf", "TPF"), ("aup", "AUP"))
            if f"{task}/{key}" in record_objectives
        ]
        if parts:
            lines.append(f"{task}: " + " · ".join(parts))
    others = sorted(k for k in record_objectives if k.split("/")[0] not in tasks)
    lines += [f"{k}: {_fmt(record_objectives[k], 3)}" for k in others]
    return "\n".join(lines) or "-"


def _trials_rows(sweep: SweepData) -> list[list[str]]:
    header = [
        "#",
        "name",
        "kind",
        "state",
        "seed",
        "params",
        "recorded objectives (acc, TPF at τ_op)",
        "wall (s)",
    ]
    rows = [header]
    for trial in sweep.trials:
        record = trial.record
        state = record.state + (f": {record.failure_reason}" if record.failure_reason else "")
        rows.append(
            [
                str(record.number),
                record.name,
                record.kind,
                state,
                str(record.seed),
                _params_text(record.params),
                _objectives_text(record.objectives, sweep.tasks),
                _fmt(record.wall_time, 0),
            ]
        )
    return rows


def _shown_baselines(sweep: SweepData, template: ReportTemplate) -> list[TrialData]:
    return [t for t in sweep.trials if t.is_baseline and template.shows_baseline(t.record.name)]


def _frontier_pages(sweep: SweepData, template: ReportTemplate) -> list[Section]:
    pages: list[Section] = []
    shown = _shown_baselines(sweep, template)
    for task in sweep.tasks:
        trials = [_curve(t, task) for t in sweep.searched if t.task_records(task)]
        baselines = [_curve(t, task) for t in shown if t.task_records(task)]
        published = overlay_points(task, tuple(template.published))
        if not trials and not baselines:
            pages.append(
                FigurePage(f"Frontier: {task}", None, "No evaluation was recorded for this task.")
            )
            continue
        figure = plots.frontier_figure(task, trials, baselines, published)
        caption = (
            "Each dot is one trial decoded at one threshold τ (colour). The red step line joins "
            "the non-dominated trial points (labelled with trial and τ); dashed lines are the "
            "baselines at each τ."
        )
        if published:
            caption += (
                f" Stars are published results for scale ({published[0].citation}); they are "
                "8B-scale models, not runs of this sweep."
            )
        pages.append(FigurePage(f"Frontier: {task}", plots.figure_png(figure), caption))
    return pages


def _published_page(sweep: SweepData, summary: SweepSummary, template: ReportTemplate) -> TablePage:
    """This sweep's baselines and best trials in the layout of the paper's tables, above the
    published rows of the template's groups (those of the sweep's tasks, or all of them when
    the paper has none of its tasks)."""
    header = ["source", "method", "task", "accuracy (%)", "TPF", "AUP", "note"]
    rows = [header]
    operating = sweep.operating_threshold
    baselines = _shown_baselines(sweep, template)
    for task in summary.tasks:
        best = [] if task.best is None else [task.best]
        for trial in [*baselines, *best]:
            at_op = _record_at(trial, task.task, operating)
            if at_op is None:
                continue
            kind = "baseline" if trial.is_baseline else "best trial"
            rows.append(
                [
                    f"this sweep ({sweep.name})",
                    f"{trial.label} ({kind})",
                    task.task,
                    _fmt(at_op.accuracy),
                    _fmt(at_op.tpf, 2),
                    _fmt(records_aup(trial.task_records(task.task), task.y_max)),
                    f"τ = {at_op.threshold:g}; AUP y_max {task.y_max:.1f}",
                ]
            )
    groups = set(template.published)
    points = [p for p in load_published() if p.group in groups]
    ours = [p for p in points if p.task in sweep.tasks]
    for point in ours or points:
        rows.append(
            [
                point.paper,
                f"{point.label} [{point.group}]",
                point.task,
                _fmt(point.accuracy),
                _fmt(point.tpf, 2),
                _fmt(point.aup),
                "; ".join(x for x in (f"arXiv {point.arxiv}", point.table, point.note) if x),
            ]
        )
    caption = (
        "Accuracy and TPF at the operating threshold; AUP over each curve's thresholds. "
        "Published rows are the papers' own numbers (their models, benchmarks and y_max); "
        + (
            "they share this sweep's tasks."
            if ours
            else f"none is on this sweep's tasks ({', '.join(sweep.tasks)}), so all are listed "
            "for reference, not as a like-for-like comparison."
        )
    )
    return TablePage(
        "Against the published results", rows, [1.8, 2.2, 1.0, 0.9, 0.6, 0.7, 3.4], caption
    )


def _attainment_page(sweep: SweepData, limit: int = 8) -> FigurePage:
    title = "Attainment across seeds"
    panels: dict[str, list[np.ndarray]] = {}
    replicated = [t for t in sweep.trials if t.record.state == "COMPLETE" and len(t.replicates) > 1]
    for task in sweep.tasks:
        for trial in replicated:
            curves = [record_points(task_curve(rs, task)) for rs in trial.seed_records()]
            if all(len(c) for c in curves):
                panels[f"{task}, {trial.label}"] = curves
    if not panels:
        return FigurePage(
            title, None,
            "Attainment bands need a configuration trained with at least two seeds "
            "(replicates: in the sweep spec); this sweep trained each configuration once.",
        )  # fmt: skip
    shown = dict(list(panels.items())[:limit])
    figure = plots.attainment_figure(shown)
    caption = (
        "Per configuration, each seed's curve is one run. The shaded band spans from the region "
        "attained by every seed (worst) to the region attained by any seed (best); the solid "
        "line is attained by at least half of the seeds (median)."
    )
    if len(panels) > len(shown):
        caption += f" The first {len(shown)} of {len(panels)} are shown."
    return FigurePage(title, plots.figure_png(figure), caption)


def _ablation_pages(tables: Sequence[AblationTable]) -> list[Section]:
    pages: list[Section] = []
    for table in tables:
        caption = (
            f"{table.verdict()} Each recipe is a baseline of this sweep, trained with the seeds shown. "
            "Accuracy and TPF at the operating threshold and AUP over the curve (y_max "
            f"{table.y_max:.1f}) are the median over seeds, with the range in brackets. "
            "ΔAUP to the next: this recipe's AUP minus the next one's in our order, with a 95% "
            "interval that resamples seeds, then problems. "
            "Groups filtered: the mean share of prompt groups the filter dropped per RL step "
            "(all-wrong groups, and with the TPF filter on, groups without TPF contrast). "
            "Paper: LightningRL's GSM8K ablations and loss-reduction study on an 8B model "
            "(arXiv 2603.13319), the row each recipe reproduces; ranks order the recipes that "
            "have one by AUP."
        )
        widths = [1.5, 0.5, 1.3, 1.2, 1.4, 1.5, 1.1, 2.4, 0.6, 0.7]
        pages.append(TablePage(f"Ablations: {table.task}", table_rows(table), widths, caption))
    return pages


def _training_page(sweep: SweepData, summary: SweepSummary) -> FigurePage:
    title = "Training curves"
    runs = [(t.label, t.train) for t in sweep.trials if t.train]
    if not runs:
        return FigurePage(title, None, "No training steps were recorded (train.jsonl).")
    best_on: dict[str, list[str]] = {}
    for task in summary.tasks:
        if task.best is not None and task.best.train:
            best_on.setdefault(task.best.label, []).append(task.task)
    highlight = {label: f"{label} (best on {', '.join(tasks)})" for label, tasks in best_on.items()}
    baselines = [t.label for t in sweep.trials if t.is_baseline and t.train]
    figure = plots.training_figure(runs, highlight, baselines)
    caption = (
        "Reward, rollout accuracy and rollout TPF per RL step, from each trial's train.jsonl. "
        "The best trial per task is in colour; other trials are grey."
    )
    return FigurePage(title, plots.figure_png(figure), caption)


def _importance_page(sweep: SweepData, seed: int) -> FigurePage:
    title = "Hyperparameter importances"
    importances = compute_importances(sweep, seed=seed)
    if not importances.by_objective:
        reason = importances.note or "no ranking could be computed"
        return FigurePage(title, None, f"No importances: {reason}. Study: {importances.source}.")
    figure = plots.importance_figure(importances.by_objective)
    caption = (
        "fANOVA importance of each searched parameter for each objective (Optuna), from the "
        f"{importances.source}."
    )
    if importances.note:
        caption += f" Skipped: {importances.note}."
    return FigurePage(title, plots.figure_png(figure), caption)


def _best_params(summary: SweepSummary) -> list[tuple[str, str]]:
    seen: dict[str, tuple[str, str]] = {}
    for task in summary.tasks:
        if task.best is not None:
            seen.setdefault(
                task.best.label, (task.best.label, _params_text(task.best.record.params))
            )
    return list(seen.values())


def _environment(sweep: SweepData) -> tuple[dict[str, str], str]:
    recorded = sweep.meta.get("environment")
    if isinstance(recorded, dict) and recorded:
        return {str(k): str(v) for k, v in recorded.items()}, "Environment recorded by the sweep."
    return environment(), (
        "The sweep recorded no environment; these are the versions of the machine that rendered "
        "this report."
    )


def _trials_page(sweep: SweepData) -> TablePage:
    return TablePage(
        "All trials and baselines", _trials_rows(sweep), [0.5, 1.1, 0.8, 1.6, 0.5, 3.4, 3.6, 0.7]
    )


def _provenance_page(sweep: SweepData) -> ProvenancePage:
    env, env_note = _environment(sweep)
    recorded_version = sweep.meta.get("code_version")
    version = f"{recorded_version} (recorded by the sweep)" if recorded_version else "not recorded"
    return ProvenancePage(
        spec_text=sweep.spec_text,
        meta_rows=[(str(k), json.dumps(v)) for k, v in sweep.meta.items()],
        code_version=version,
        environment=env,
        environment_note=env_note,
    )


def build_content(
    sweep: SweepData,
    template: ReportTemplate,
    *,
    ref: tuple[float, float] = HV_REFERENCE,
    n_boot: int = 1000,
    seed: int = 0,
    step: Callable[[str], None] = lambda stage: None,
) -> ReportContent:
    """Everything the PDF shows, page by page as ``template`` lists them; ``step(stage)`` is
    called as each stage finishes."""
    summary = summarise(sweep, ref=ref, n_boot=n_boot, seed=seed, baseline=template.compare_to)
    step("findings")
    # Built once, when first asked for: the headline and the page share them.
    ablations = functools.cache(lambda: ablation_tables(sweep, summary, seed))
    builders: dict[str, Callable[[], list[Section]]] = {
        "summary": lambda: [
            SummaryPage(
                _summary_rows(summary, sweep),
                _summary_notes(summary, sweep),
                _best_params(summary),
            )
        ],
        "frontiers": lambda: _frontier_pages(sweep, template),
        "published": lambda: [_published_page(sweep, summary, template)],
        "ablations": lambda: _ablation_pages(ablations()),
        "attainment": lambda: [_attainment_page(sweep)],
        "trials": lambda: [_trials_page(sweep)],
        "training": lambda: [_training_page(sweep, summary)],
        "importances": lambda: [_importance_page(sweep, seed)],
        "provenance": lambda: [_provenance_page(sweep)],
    }
    sections: list[Section] = []
    for page in template.pages:
        sections += builders[page]()
        step(page)
    created = sweep.meta.get("created", "unknown time")
    return ReportContent(
        title=template.title.format(sweep=sweep.name),
        subtitle=f"Sweep created {created} · read from {sweep.source} · rendered with {code_version()}",
        # The first page sets the headline: an ablation report's is the order of its recipes.
        verdict=ablation_verdict(ablations())
        if template.pages[0] == "ablations"
        else summary.verdict,
        sections=sections,
        warnings=list(sweep.warnings),
    )


def log_pdf_to_run(pdf: Path, tracking_uri: str, run_id: str) -> str | None:
    """Log ``pdf`` under ``report/`` of the run; returns a warning instead of raising."""
    if tracking_uri.startswith("sqlite:///"):
        # MLflow would create a fresh, empty database rather than fail: check first.
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            return (
                f"tracking store {tracking_uri} not found from {Path.cwd()}; run the report from "
                f"the sweep's working directory to log it. The PDF is kept at {pdf}"
            )
    try:
        with quiet_mlflow():
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=tracking_uri).log_artifact(
                run_id, str(pdf), artifact_path="report"
            )
    except Exception as e:  # any tracking failure must leave the PDF in place
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"could not log the PDF to MLflow run {run_id} at {tracking_uri} ({first_line}); the PDF is kept at {pdf}"
    return None


def build_report(
    sweep: SweepData,
    out: str | Path,
    template: ReportTemplate,
    *,
    ref: tuple[float, float] = HV_REFERENCE,
    n_boot: int = 1000,
    seed: int = 0,
    log_to_mlflow: bool = True,
    step: Callable[[str], None] = lambda stage: None,
) -> ReportResult:
    """Render the report PDF at ``out`` and log it to the sweep's parent MLflow run."""
    content = build_content(sweep, template, ref=ref, n_boot=n_boot, seed=seed, step=step)
    path = write_pdf(content, out)
    step("PDF")
    result = ReportResult(path, warnings=list(sweep.warnings))
    uri, run_id = sweep.meta.get("tracking_uri"), sweep.meta.get("parent_run_id")
    if log_to_mlflow and uri and run_id:
        warning = log_pdf_to_run(path, str(uri), str(run_id))
        if warning:
            result.warnings.append(warning)
        else:
            result.logged_to_run = str(run_id)
    step("MLflow")
    return result

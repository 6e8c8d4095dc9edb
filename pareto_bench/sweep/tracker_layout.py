"""How a trial appears in the tracker (docs/ARCHITECTURE.md, "MLflow layout"). Pure functions
from records to metric points, params and tags.

- Training curves: ``train/<field>`` at step = RL step: among them the step's phase times
  (``train/rollout_time``, ``reference_time``, ``likelihood_time``, ``backward_time``,
  ``optimizer_time``), its model FLOPs and ``train/mfu`` (a tag ``mfu: unknown`` instead where
  the device has no known peak).
- Evaluation curve, per task: ``{task}/accuracy`` and ``{task}/tpf`` (and ``{task}/threshold``)
  at the same step, one step per threshold in ascending order, so that MLflow's chart view can
  plot accuracy against ``{task}/tpf`` and draw each run's frontier.
- Summary: ``{task}/aup``, ``{task}/hypervolume``, ``{task}/accuracy_at_op`` and
  ``{task}/tpf_at_op`` (MLflow rejects ``@`` in metric names, hence ``_at_op``).
- The sweep's page: a saved view of the experiment's runs page (MLflow's "Views", stored as an
  experiment tag) that lists the sweep's trials and baselines and charts each one's frontier.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pareto_bench.core.flops import UNKNOWN
from pareto_bench.core.records import EvalRecord, TrainStepRecord
from pareto_bench.sweep.spec import flatten
from pareto_bench.sweep.trial import TrialSpec
from pareto_bench.tracking import Metric

AT_OP = "_at_op"
# Objective metrics measured at the operating threshold; the others describe the whole curve.
_AT_OP_METRICS = {"accuracy", "tpf"}
_NOT_CURVES = {"step", "schema_version"}


def train_metrics(record: TrainStepRecord) -> list[Metric]:
    return [
        Metric(f"train/{f.name}", float(getattr(record, f.name)), record.step)
        for f in dataclasses.fields(record)
        if f.name not in _NOT_CURVES and _finite(getattr(record, f.name))
    ]


def train_tags(record: TrainStepRecord) -> dict[str, str]:
    """Where a step's MFU is unknown (no bf16 peak for the device, as on a CPU), the run says
    so in a tag, ``mfu: unknown``: MLflow metrics are numbers, so ``train/mfu`` is absent."""
    return {"mfu": UNKNOWN} if record.mfu is None else {}


def eval_metrics(records: Iterable[EvalRecord]) -> list[Metric]:
    by_task: dict[str, list[EvalRecord]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    points: list[Metric] = []
    for task, rows in by_task.items():
        for step, row in enumerate(sorted(rows, key=lambda r: r.threshold)):
            values = {
                "accuracy": row.accuracy,
                "tpf": row.tpf,
                "threshold": row.threshold,
                **row.extra,
            }
            points += [
                Metric(f"{task}/{k}", float(v), step) for k, v in values.items() if _finite(v)
            ]
    return points


def summary_metrics(objectives: Mapping[str, float]) -> list[Metric]:
    """Objective values under their tracker names: ``{task}/accuracy`` becomes
    ``{task}/accuracy_at_op``, so that it does not mix with the curve of the same task."""
    points = []
    for key, value in objectives.items():
        task, _, metric = key.rpartition("/")
        name = f"{task}/{metric}{AT_OP}" if metric in _AT_OP_METRICS else key
        if _finite(value):
            points.append(Metric(name, float(value), 0))
    return points


# MLflow's saved views of an experiment's runs page are experiment tags with this prefix and a
# JSON envelope; the page opens one with ``?viewStateShareKey=<id>``.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
# The experiment is model training, not a GenAI app (MLflow 3's experiment kind).
EXPERIMENT_KIND_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def sweep_view_tags(sweep: str, parent_run_id: str, tasks: Sequence[str]) -> dict[str, str]:
    """Experiment tags for the sweep's page: the parent run's children (trials and baselines) as
    flat rows, every one shown, and charts of each run's accuracy against TPF (one line per run,
    a point per threshold) and of its AUP, per task. The view's id is the parent run's id."""
    filter_children = f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    charts: list[dict[str, Any]] = []
    for task in tasks:
        charts.append(
            {
                **_chart(f"{task}-frontier", "LINE", f"{task}: accuracy (%) against TPF"),
                "metricKey": f"{task}/accuracy",
                "selectedMetricKeys": [f"{task}/accuracy"],
                "xAxisKey": "metric",
                "selectedXAxisMetricKey": f"{task}/tpf",
                "useGlobalXaxisKey": False,
                "lineSmoothness": 0,
                "useGlobalLineSmoothing": False,
                "displayPoints": True,
                "scaleType": "linear",
                "xAxisScaleType": "linear",
                "range": {},
                "yAxisKey": "metric",
                "yAxisExpressions": [],
                "ignoreOutliers": False,
            }
        )
        charts.append({**_chart(f"{task}-aup", "BAR", f"{task}: AUP"), "metricKey": f"{task}/aup"})
    state = {
        # A search filter and a sort other than by date show the children as flat rows.
        "searchFilter": filter_children,
        "orderByKey": "tags.`mlflow.runName`",
        "orderByAsc": True,
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": [
            {
                "uuid": "frontiers",
                "name": "Frontiers",
                "display": True,
                "isReordered": False,
                "columns": 2,
                "cardHeight": 420,
            }
        ],
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
    }
    now = int(time.time() * 1000)
    envelope = {"name": f"{sweep}: frontiers", "createdAt": now, "updatedAt": now}
    view = json.dumps({**envelope, "state": json.dumps(state)})
    return {**EXPERIMENT_KIND_TAGS, f"{VIEW_TAG_PREFIX}{parent_run_id}": view}


def sweep_view_route(experiment_id: str, parent_run_id: str) -> str:
    """The UI route of the sweep's page: the saved view, in chart mode, in the model-training
    workflow (the workflow is otherwise a browser setting that defaults to GenAI)."""
    query = urllib.parse.urlencode(
        {
            "viewStateShareKey": parent_run_id,
            "compareRunsMode": "CHART",
            "workflowType": "machine_learning",
        }
    )
    return f"#/experiments/{experiment_id}/runs?{query}"


def _chart(uuid: str, kind: str, title: str) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "type": kind,
        "metricSectionId": "frontiers",
        "displayName": title,
        "deleted": False,
        "isGenerated": False,
        "runsCountToCompare": 100,
    }


def trial_params(spec: TrialSpec) -> dict[str, Any]:
    """The resolved trainer config under its dotted field names (so searched fields such as
    ``reward.tpf_weight`` are columns), plus the evaluation settings under ``eval.``."""
    params: dict[str, Any] = {"kind": spec.kind, "name": spec.name, "model": spec.model}
    params.update(device=spec.device, dtype=spec.dtype)  # a trained trial's config repeats them
    if spec.config is not None:
        params.update(flatten(spec.config))
    params.update(
        {
            "eval.tasks": ",".join(spec.tasks),
            "eval.thresholds": ",".join(f"{t:g}" for t in spec.thresholds),
            "eval.limit": spec.limit,
            "eval.max_new_tokens": spec.max_new_tokens,
        }
    )
    params.update(spec.params)  # the sampled values, exactly as Optuna holds them
    return {k: v for k, v in params.items() if v is not None}


def frontier_plots(
    name: str,
    records: Sequence[EvalRecord],
    baselines: Mapping[str, Sequence[EvalRecord]],
    dest: Path,
) -> list[Path]:
    """One PNG per task, ``{task}_frontier.png``: this trial's accuracy-vs-TPF curve (a point
    per threshold) over the baselines' curves."""
    import numpy as np

    from pareto_bench.analysis.report.plots import PlotCurve, figure_png, frontier_figure

    def curve(label: str, rows: Sequence[EvalRecord]) -> PlotCurve:
        rows = sorted(rows, key=lambda r: r.threshold)
        return PlotCurve(
            label, np.array([[r.tpf, r.accuracy] for r in rows]), [r.threshold for r in rows]
        )

    paths = []
    for task in dict.fromkeys(r.task for r in records):
        mine = [r for r in records if r.task == task]
        others = [
            curve(label, [r for r in rows if r.task == task])
            for label, rows in baselines.items()
            if label != name and any(r.task == task for r in rows)
        ]
        figure = frontier_figure(task, [curve(name, mine)], others, title=f"{name} on {task}")
        path = dest / f"{_safe(task)}_frontier.png"
        path.write_bytes(figure_png(figure, dpi=100))
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

"""Resolve a command-line argument to evaluation records: a sweep directory, a trial
directory, an EvalRecord JSONL file or an MLflow run id."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pareto_bench.analysis.report.sweep_data import SweepData, completed_replicates, load_sweep_dir
from pareto_bench.core.files import EVAL_FILE, TRIALS_DIR
from pareto_bench.core.records import EvalRecord, read_jsonl

MLFLOW_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class SourceError(ValueError):
    """An argument names nothing that holds evaluation records; the message says what would."""


@dataclass
class Curve:
    """The records of one model (a trial, a baseline, a checkpoint's eval file)."""

    label: str
    records: list[EvalRecord]
    baseline: bool = False


@dataclass
class Source:
    label: str
    curves: list[Curve]
    seeds: list[list[EvalRecord]] = field(default_factory=list)  # a replicated trial's, per seed

    def records(self, include_baselines: bool | None = None) -> list[EvalRecord]:
        """All records; by default a sweep's baselines are left out when it has trials,
        because a sweep's frontier is that of its trials."""
        if include_baselines is None:
            include_baselines = all(c.baseline for c in self.curves)
        return [r for c in self.curves if include_baselines or not c.baseline for r in c.records]


def _from_sweep(sweep: SweepData, label: str) -> Source:
    curves = [Curve(f"{label}/{t.label}", t.evals, t.is_baseline) for t in sweep.trials if t.evals]
    if not curves:
        raise SourceError(
            f"{label}: the sweep recorded no evaluations yet (no trials/*/eval.jsonl)"
        )
    return Source(label, curves)


def _from_file(path: Path) -> Source:
    try:
        records = read_jsonl(path, EvalRecord)
    except (ValueError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not an EvalRecord JSONL file ({e})") from None
    if not records:
        raise SourceError(
            f"{path}: holds no EvalRecord rows; pass an eval.jsonl (from `pareto-bench eval` or a "
            "sweep's trials/N/), a trial directory or a sweep directory"
        )
    label = _file_label(path)
    models = list(dict.fromkeys(r.model for r in records))
    if len(models) <= 1:
        replicates = (
            completed_replicates(path.parent, [], path.parent) if path.name == EVAL_FILE else {}
        )
        return Source(label, [Curve(label, records)], [replicates[s] for s in sorted(replicates)])
    # One file may hold several models' records: each model is its own curve.
    curves = [Curve(f"{label}:{m}", [r for r in records if r.model == m]) for m in models]
    return Source(label, curves)


def _file_label(path: Path) -> str:
    """``runs/x/trials/3/eval.jsonl`` -> ``x/trial 3``; other files go by their stem."""
    folder = path.resolve().parent
    if path.name == EVAL_FILE and folder.parent.name == TRIALS_DIR:
        return f"{folder.parent.parent.name}/trial {folder.name}"
    if path.name == EVAL_FILE:
        return folder.name
    return path.stem


def load_source(argument: str, tracking_uri: str | None = None) -> Source:
    """The evaluation records that ``argument`` names."""
    path = Path(argument)
    if path.is_file():
        return _from_file(path)
    if path.is_dir():
        if (path / EVAL_FILE).is_file() and not (path / TRIALS_DIR).is_dir():
            return _from_file(path / EVAL_FILE)
        return _from_sweep(load_sweep_dir(path), path.name)
    if MLFLOW_RUN_ID.match(argument):
        from pareto_bench.analysis.report.mlflow_source import load_mlflow_run

        with tempfile.TemporaryDirectory(prefix="pareto-bench-mlflow-") as download:
            sweep = load_mlflow_run(argument, tracking_uri, download)
            return _from_sweep(sweep, f"run {argument[:8]}")
    raise FileNotFoundError(
        f"{argument}: no such file or directory; expected a sweep directory, a trial directory, "
        "an EvalRecord JSONL file or an MLflow run id"
    )

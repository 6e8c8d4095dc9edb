"""Read a sweep's output directory (layout in docs/ARCHITECTURE.md) into plain data.

Reading is tolerant: a report is most wanted when a sweep went wrong, so a missing or
damaged file becomes a warning in :attr:`SweepData.warnings`, never a lost report. Only a
directory that holds no sweep at all is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from numpy.typing import NDArray

from pareto_bench.analysis.frontier import record_points, records_aup, task_curve
from pareto_bench.core.files import (
    CONFIG_FILE,
    EVAL_FILE,
    REPLICATES_JSONL,
    SPEC_YAML,
    SWEEP_JSON,
    TRAIN_FILE,
    TRIALS_DIR,
    TRIALS_JSONL,
    replicate_dir_name,
)
from pareto_bench.core.records import (
    BASE_MODEL_BASELINE,
    BASELINE,
    TRIAL,
    EvalRecord,
    TrainStepRecord,
    TrialRecord,
    read_jsonl,
)

R = TypeVar("R")


@dataclass
class TrialData:
    """One trial or baseline: its last recorded state and everything written beside it."""

    record: TrialRecord
    evals: list[EvalRecord] = field(default_factory=list)  # with replicates: theirs, pooled
    train: list[TrainStepRecord] = field(default_factory=list)  # with replicates: the first's
    config_text: str = ""
    replicates: dict[int, list[EvalRecord]] = field(default_factory=dict)  # seed -> evals
    replicate_train: dict[int, list[TrainStepRecord]] = field(default_factory=dict)  # seed -> steps

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def label(self) -> str:
        if self.record.kind == BASELINE:
            return self.record.name or f"baseline {self.number}"
        return f"trial {self.number}"

    @property
    def is_baseline(self) -> bool:
        return self.record.kind == BASELINE

    def task_records(self, task: str) -> list[EvalRecord]:
        """This trial's records on ``task``, in ascending threshold order."""
        return sorted((r for r in self.evals if r.task == task), key=lambda r: r.threshold)

    def points(self, task: str) -> NDArray[np.float64]:
        return record_points(self.task_records(task))

    def seed_records(self) -> list[list[EvalRecord]]:
        """One list of records per completed seed replicate; the trial's own if it has none."""
        return [self.replicates[s] for s in sorted(self.replicates)] or [self.evals]

    def seed_aups(self, task: str, y_max: float) -> list[float]:
        """The AUP of each seed's curve on ``task`` (seeds that did not evaluate it left out)."""
        curves = (task_curve(records, task) for records in self.seed_records())
        return [records_aup(curve, y_max) for curve in curves if curve]

    @property
    def tasks(self) -> list[str]:
        return sorted({r.task for r in self.evals})


@dataclass
class SweepData:
    root: Path
    meta: dict[str, Any]  # sweep.json
    spec_text: str
    trials: list[TrialData]
    warnings: list[str] = field(default_factory=list)
    source: str = ""  # where it was read from, for the report's header

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.root.name)

    @property
    def tasks(self) -> list[str]:
        """Tasks named in sweep.json, then any others that were evaluated."""
        named = [str(t) for t in self.meta.get("tasks") or []]
        evaluated = sorted({t for trial in self.trials for t in trial.tasks} - set(named))
        return named + evaluated

    @property
    def replicate_aggregate(self) -> str:
        """How the spec combines a configuration's seeds: ``median`` unless it says ``mean``."""
        try:
            spec = yaml.safe_load(self.spec_text) or {}
        except yaml.YAMLError:
            return "median"
        replicates = spec.get("replicates") if isinstance(spec, dict) else None
        return (
            "mean"
            if isinstance(replicates, dict) and replicates.get("aggregate") == "mean"
            else "median"
        )

    @property
    def operating_threshold(self) -> float | None:
        value = self.meta.get("operating_threshold")
        return float(value) if value is not None else None

    def baseline(self, name: str = BASE_MODEL_BASELINE) -> TrialData | None:
        for trial in self.trials:
            if trial.is_baseline and trial.record.name == name:
                return trial
        return None

    @property
    def searched(self) -> list[TrialData]:
        """The sweep's own trials (not baselines)."""
        return [t for t in self.trials if not t.is_baseline]

    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.record.state] = counts.get(trial.record.state, 0) + 1
        return counts


def _read_records(path: Path, cls: type[R], warnings: list[str], root: Path) -> list[R]:
    if not path.is_file():
        return []
    try:
        return read_jsonl(path, cls)
    except (ValueError, OSError) as e:
        warnings.append(f"{path.relative_to(root)}: unreadable, skipped ({e})")
        return []


def _read_meta(root: Path, warnings: list[str]) -> dict[str, Any]:
    path = root / SWEEP_JSON
    if not path.is_file():
        warnings.append(f"{SWEEP_JSON} missing: name, thresholds and tracking run unknown")
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError) as e:
        warnings.append(f"sweep.json unreadable ({e})")
        return {}
    return meta if isinstance(meta, dict) else {}


def _trial_numbers(trials_dir: Path) -> list[int]:
    if not trials_dir.is_dir():
        return []
    return sorted(int(p.name) for p in trials_dir.iterdir() if p.is_dir() and p.name.isdigit())


def load_sweep_dir(path: str | Path) -> SweepData:
    """Load everything a sweep recorded under ``path``; see the module docstring."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no such sweep directory; pass the output directory of `pareto-bench sweep`"
        )
    trials_dir = root / TRIALS_DIR
    if not any((root / name).exists() for name in (SWEEP_JSON, TRIALS_JSONL, TRIALS_DIR)):
        raise FileNotFoundError(
            f"{root}: not a sweep directory (no sweep.json, trials.jsonl or trials/); pass the "
            "output directory of `pareto-bench sweep`"
        )
    warnings: list[str] = []
    meta = _read_meta(root, warnings)
    spec_path = root / SPEC_YAML
    spec_text = spec_path.read_text(encoding="utf-8") if spec_path.is_file() else ""

    # trials.jsonl is appended on every state change: the last row for a number wins.
    latest: dict[int, TrialRecord] = {}
    for record in _read_records(root / TRIALS_JSONL, TrialRecord, warnings, root):
        latest[record.number] = record
    for number in _trial_numbers(trials_dir):
        if number not in latest:
            warnings.append(
                f"{TRIALS_DIR}/{number}/ has no row in {TRIALS_JSONL}; shown as UNKNOWN"
            )
            latest[number] = TrialRecord(number, TRIAL, f"trial {number}", "UNKNOWN")

    trials = []
    for number in sorted(latest):
        folder = trials_dir / str(number)
        replicates = completed_replicates(folder, warnings, root)
        first = folder / replicate_dir_name(min(replicates)) if replicates else folder
        config = first / CONFIG_FILE
        trials.append(
            TrialData(
                record=latest[number],
                evals=_read_records(folder / EVAL_FILE, EvalRecord, warnings, root),
                train=_read_records(first / TRAIN_FILE, TrainStepRecord, warnings, root),
                config_text=config.read_text(encoding="utf-8") if config.is_file() else "",
                replicates=replicates,
                replicate_train={
                    s: _read_records(
                        folder / replicate_dir_name(s) / TRAIN_FILE,
                        TrainStepRecord,
                        warnings,
                        root,
                    )
                    for s in replicates
                },
            )
        )
    return SweepData(root, meta, spec_text, trials, warnings, source=str(root))


def completed_replicates(
    folder: Path, warnings: list[str], root: Path
) -> dict[int, list[EvalRecord]]:
    """The evaluations of a configuration's completed seed replicates (``replicates.jsonl``,
    the last row per replicate wins), by seed."""
    rows = _read_records(folder / REPLICATES_JSONL, TrialRecord, warnings, root)
    latest = {r.name: r for r in rows}
    seeds = sorted(r.seed for r in latest.values() if r.state == "COMPLETE")
    return {
        s: _read_records(folder / replicate_dir_name(s) / EVAL_FILE, EvalRecord, warnings, root)
        for s in seeds
    }

"""A sweep's output directory (docs/ARCHITECTURE.md, "A sweep's output directory")::

<out_dir>/            default: runs/<spec name>
  sweep.json          what a reader needs to find everything else
  spec.yaml           the resolved SweepSpec
  study.journal       Optuna storage, unless --storage says otherwise
  trials.jsonl        TrialRecord rows on every state change; the last row per trial wins
  trials/<number>/    config.yaml, train.jsonl, eval.jsonl, checkpoint/
    replicates.jsonl  with seed replicates: a TrialRecord row per replicate state change
    seed-<seed>/      one replicate's config.yaml, train.jsonl, eval.jsonl, checkpoint/; the
                      configuration's own eval.jsonl then pools its completed replicates
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pareto_bench.core.files import (
    REPLICATES_JSONL,
    SPEC_YAML,
    SWEEP_JSON,
    TRIALS_DIR,
    TRIALS_JSONL,
    replicate_dir_name,
)
from pareto_bench.core.records import TrialRecord, append_jsonl, read_jsonl
from pareto_bench.core.schema import dump_yaml
from pareto_bench.sweep.spec import SweepSpec


@dataclass(frozen=True)
class SweepDir:
    root: Path

    @property
    def sweep_json(self) -> Path:
        return self.root / SWEEP_JSON

    @property
    def spec_yaml(self) -> Path:
        return self.root / SPEC_YAML

    @property
    def trials_jsonl(self) -> Path:
        return self.root / TRIALS_JSONL

    def trial_dir(self, number: int) -> Path:
        return self.root / TRIALS_DIR / str(number)

    def replicate_dir(self, number: int, seed: int) -> Path:
        return self.trial_dir(number) / replicate_dir_name(seed)

    def append_replicate(self, record: TrialRecord) -> None:
        append_jsonl(self.trial_dir(record.number) / REPLICATES_JSONL, [record])

    def write_metadata(self, spec: SweepSpec, info: dict[str, Any]) -> None:
        """Write ``spec.yaml`` and ``sweep.json`` (atomically: readers never see half a file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.spec_yaml, dump_yaml(spec))
        _write_atomic(self.sweep_json, json.dumps(info, indent=2) + "\n")

    def read_info(self) -> dict[str, Any]:
        return json.loads(self.sweep_json.read_text()) if self.sweep_json.is_file() else {}

    def append_trial(self, record: TrialRecord) -> None:
        append_jsonl(self.trials_jsonl, [record])

    def latest_trials(self) -> dict[int, TrialRecord]:
        """The last row of every trial number."""
        if not self.trials_jsonl.is_file():
            return {}
        return {r.number: r for r in read_jsonl(self.trials_jsonl, TrialRecord)}


def sweep_info(
    spec: SweepSpec,
    *,
    spec_path: Path | None,
    storage: str,
    tracking_uri: str,
    parent_run_id: str,
    created: str | None = None,
) -> dict[str, Any]:
    return {
        "name": spec.name,
        "spec_path": str(spec_path.resolve()) if spec_path else "",
        "study_name": spec.name,
        "storage": storage,
        "tracking_uri": tracking_uri,
        "parent_run_id": parent_run_id,
        "operating_threshold": spec.eval.operating_threshold,
        "tasks": list(spec.eval.tasks),
        "thresholds": spec.eval.all_thresholds,
        "objectives": spec.objective_keys,
        "experiment": spec.experiment_name,
        "code_version": code_version(),
        "created": created or datetime.now(UTC).isoformat(timespec="seconds"),
    }


def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` in a git checkout, else the package version."""
    import pareto_bench

    version = pareto_bench.__version__
    root = Path(pareto_bench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}" if commit else version


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

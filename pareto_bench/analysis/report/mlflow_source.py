"""Read a sweep back from its parent MLflow run.

The run's artifacts (and those of its child runs, one per trial) are downloaded and laid out
as a sweep directory, so the report has one reader. Reading is tolerant of how the artifacts
were arranged: files are found by name anywhere in a run's artifact tree. Where a child run
logged no eval.jsonl or train.jsonl, its points and curves are rebuilt from the logged metrics
(``{task}/accuracy`` and ``{task}/tpf`` at step = threshold index; ``train/<field>``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pareto_bench.analysis.report.sweep_data import SweepData, load_sweep_dir
from pareto_bench.core.defaults import BASELINES
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
    BASELINE,
    REPLICATE,
    TRIAL,
    EvalRecord,
    TrainStepRecord,
    TrialRecord,
    append_jsonl,
)
from pareto_bench.tracking import default_tracking_uri

NUMBER_TAGS = ("trial_number", "optuna.trial_number", "optuna.trial.number", "number", "trial")
# Summary metrics at the operating threshold are ``{task}/accuracy_at_op`` (MLflow rejects
# ``@`` in metric names); ``@op``, the contract's first spelling, is still read.
AT_OP_SUFFIXES = ("@op", "_at_op")
RUN_STATES = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "FAIL"}


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """No download progress bars on the user's terminal, and an unreachable tracking server
    costs seconds rather than MLflow's minutes of retries."""
    settings = {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise FileNotFoundError(
            f"tracking store {uri} not found from {Path.cwd()}; pass --tracking-uri URI "
            "(or run from the directory the sweep ran in)"
        )
    return uri


def _find(root: Path, name: str) -> Path | None:
    if not root.is_dir():
        return None
    matches = sorted(root.rglob(name), key=lambda p: (len(p.parts), str(p)))
    return matches[0] if matches else None


def _download(run_id: str, uri: str, dest: Path) -> Path:
    from mlflow.artifacts import download_artifacts

    dest.mkdir(parents=True, exist_ok=True)
    try:
        return Path(download_artifacts(run_id=run_id, dst_path=str(dest), tracking_uri=uri))
    except Exception:  # a run without artifacts, or an unreachable artifact store
        return dest


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _trial_number(run: Any) -> int | None:
    tags, params = run.data.tags, run.data.params
    for key in NUMBER_TAGS:
        value = tags.get(key, params.get(key))
        if value is not None and str(value).strip().isdigit():
            return int(value)
    match = re.search(r"(\d+)$", run.info.run_name or "")
    return int(match.group(1)) if match else None


def _baselines(spec_path: Path) -> tuple[str, ...]:
    """The sweep's baselines, as its spec.yaml lists them (the default where it has none)."""
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) if spec_path.is_file() else None
    listed = spec.get("baselines") if isinstance(spec, dict) else None
    return tuple(listed) if isinstance(listed, list) else BASELINES


def _trial_record(run: Any, number: int, baselines: tuple[str, ...]) -> TrialRecord:
    """A child run as a trial row. A run without a ``kind`` tag is a baseline when its name is
    one of the sweep's ``baselines``."""
    tags, metrics = run.data.tags, run.data.metrics
    name = run.info.run_name or f"trial {number}"
    kind = tags.get("kind") or (BASELINE if name in baselines else TRIAL)
    objectives = {}
    for key, value in metrics.items():
        task, _, metric = key.partition("/")
        for suffix in AT_OP_SUFFIXES:
            if metric in (f"accuracy{suffix}", f"tpf{suffix}"):
                objectives[f"{task}/{metric.removesuffix(suffix)}"] = value
        if metric in ("aup", "hypervolume"):
            objectives[key] = value
    skip = {"seed", *NUMBER_TAGS}
    params = {k: _parse_value(v) for k, v in run.data.params.items() if k not in skip}
    seed = run.data.params.get("seed", tags.get("seed", "0"))
    return TrialRecord(
        number=number,
        kind=kind,
        name=name,
        state=tags.get("state") or RUN_STATES.get(run.info.status, "RUNNING"),
        params=params,
        objectives=objectives,
        failure_reason=tags.get("failure_reason", ""),
        mlflow_run_id=run.info.run_id,
        seed=int(seed) if str(seed).isdigit() else 0,
    )


def _evals_from_metrics(client: Any, run: Any, thresholds: list[float]) -> list[EvalRecord]:
    tasks = sorted(
        key.partition("/")[0]
        for key in run.data.metrics
        if key.endswith("/accuracy") and not key.startswith("train/")
    )
    records = []
    for task in tasks:
        accuracy, tpf, logged = (
            {m.step: m.value for m in client.get_metric_history(run.info.run_id, f"{task}/{name}")}
            for name in ("accuracy", "tpf", "threshold")
        )
        for step in sorted(set(accuracy) & set(tpf)):
            # The threshold itself where it was logged; else step = its index in sweep.json.
            fallback = thresholds[step] if 0 <= step < len(thresholds) else float(step)
            threshold = logged.get(step, fallback)
            records.append(
                EvalRecord(
                    task, threshold, accuracy[step], tpf[step], 0, 0, 0, model=run.info.run_id
                )
            )
    return records


def _train_from_metrics(client: Any, run: Any) -> list[TrainStepRecord]:
    fields = [
        f.name
        for f in dataclasses.fields(TrainStepRecord)
        if f.name not in ("step", "schema_version")
    ]
    history: dict[int, dict[str, float]] = {}
    for name in fields:
        if f"train/{name}" not in run.data.metrics:
            continue
        for metric in client.get_metric_history(run.info.run_id, f"train/{name}"):
            history.setdefault(metric.step, {})[name] = metric.value
    return [
        TrainStepRecord(step=step, **{name: values.get(name, math.nan) for name in fields})  # type: ignore[arg-type]
        for step, values in sorted(history.items())
    ]


def _sweep_root(parent: Path) -> Path | None:
    for name in (SWEEP_JSON, TRIALS_JSONL):
        found = _find(parent, name)
        if found is not None:
            return found.parent
    return None


def materialise_run(run_id: str, tracking_uri: str | None, dest: str | Path) -> Path:
    """Download a sweep's parent run (and its child runs) under ``dest`` as a sweep directory."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        parent_run = client.get_run(run_id)
    except MlflowException as e:
        raise FileNotFoundError(
            f"MLflow run {run_id!r} not found at {uri} ({str(e).splitlines()[0]}); check the run "
            "id or pass --tracking-uri"
        ) from None
    work = Path(dest)
    parent = _download(run_id, uri, work / "parent")
    sweep = work / "sweep"
    shutil.rmtree(sweep, ignore_errors=True)
    root = _sweep_root(parent)
    if root is not None:
        shutil.copytree(root, sweep)
    sweep.mkdir(parents=True, exist_ok=True)

    meta_path = sweep / SWEEP_JSON
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    meta.setdefault("name", parent_run.info.run_name or run_id)
    meta.update(tracking_uri=uri, parent_run_id=run_id)  # the report goes back to this run
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if not (sweep / SPEC_YAML).is_file():
        spec = _find(parent, SPEC_YAML)
        if spec is not None:
            shutil.copy(spec, sweep / SPEC_YAML)

    children = client.search_runs(
        [parent_run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        max_results=5000,
    )
    _write_children(client, uri, children, sweep, work, meta, _baselines(sweep / SPEC_YAML))
    return sweep


def _write_children(
    client: Any,
    uri: str,
    children: list[Any],
    sweep: Path,
    work: Path,
    meta: dict,
    baselines: tuple[str, ...],
) -> None:
    have_trials_jsonl = (sweep / TRIALS_JSONL).is_file()
    thresholds = sorted(float(t) for t in meta.get("thresholds") or [])
    numbers = [_trial_number(run) for run in children]
    next_free = max((n for n in numbers if n is not None), default=-1) + 1
    records = []
    for run, number in zip(children, numbers, strict=True):
        if number is None:
            number, next_free = next_free, next_free + 1
        folder = sweep / TRIALS_DIR / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = _download(run.info.run_id, uri, work / "children" / run.info.run_id)
        for name in (EVAL_FILE, TRAIN_FILE, CONFIG_FILE):
            found = _find(artifacts, name)
            if found is not None and not (folder / name).is_file():
                shutil.copy(found, folder / name)
        if not (folder / EVAL_FILE).is_file():
            append_jsonl(folder / EVAL_FILE, _evals_from_metrics(client, run, thresholds))
        if not (folder / TRAIN_FILE).is_file():
            steps = _train_from_metrics(client, run)
            if steps:
                append_jsonl(folder / TRAIN_FILE, steps)
        records.append(_trial_record(run, number, baselines))
        _write_replicates(client, uri, run, number, folder, work, baselines)
    if not have_trials_jsonl:  # the recorded trials.jsonl, where logged, is the better source
        append_jsonl(sweep / TRIALS_JSONL, sorted(records, key=lambda r: r.number))


def _write_replicates(
    client: Any,
    uri: str,
    configuration: Any,
    number: int,
    folder: Path,
    work: Path,
    baselines: tuple[str, ...],
) -> None:
    """A configuration's seed replicates (its own child runs): their files and rows."""
    replicates = client.search_runs(
        [configuration.info.experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{configuration.info.run_id}' and tags.kind = '{REPLICATE}'"
        ),
        max_results=1000,
    )
    for run in replicates:
        seed = int(run.data.tags.get("seed", "0"))
        seed_dir = folder / replicate_dir_name(seed)
        seed_dir.mkdir(parents=True, exist_ok=True)
        artifacts = _download(run.info.run_id, uri, work / "children" / run.info.run_id)
        for name in (EVAL_FILE, TRAIN_FILE, CONFIG_FILE):
            found = _find(artifacts, name)
            if found is not None:
                shutil.copy(found, seed_dir / name)
        row = dataclasses.replace(_trial_record(run, number, baselines), kind=REPLICATE, seed=seed)
        append_jsonl(folder / REPLICATES_JSONL, [row])


def load_mlflow_run(run_id: str, tracking_uri: str | None, dest: str | Path) -> SweepData:
    """A sweep read back from its parent MLflow run (see the module docstring). Files are
    downloaded under ``dest``, which the caller owns: the report still reads the study there."""
    uri = resolve_tracking_uri(tracking_uri)
    with quiet_mlflow():
        sweep = load_sweep_dir(materialise_run(run_id, uri, dest))
    sweep.source = f"MLflow run {run_id} at {uri}"
    return sweep

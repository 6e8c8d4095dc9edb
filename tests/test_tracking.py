"""The tracker seam: MLflow with explicit run ids and batches, the null tracker, and a store
that cannot be reached."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pareto_bench.tracking import (
    PARENT_TAG,
    TRACKERS,
    Metric,
    Tracker,
    default_tracking_uri,
    get_tracker,
)
from pareto_bench.tracking.mlflow_tracker import MlflowTracker
from pareto_bench.tracking.null import NullTracker


def test_registry_and_lookup(tmp_path: Path) -> None:
    assert {"mlflow", "null", "none"} <= set(TRACKERS.names())
    assert isinstance(get_tracker("none"), NullTracker)
    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = get_tracker(uri)
    assert isinstance(tracker, MlflowTracker) and tracker.uri == uri
    for t in (tracker, get_tracker("none")):
        assert isinstance(t, Tracker)


def test_default_uri_is_sqlite_under_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


def test_null_tracker_records_nothing() -> None:
    tracker = NullTracker()
    run = tracker.start_run("x", experiment="e")
    assert run == ""
    tracker.log_metrics(run, [Metric("a", 1.0)])
    tracker.set_experiment_tags("e", {"k": "v"})
    tracker.end_run(run, "FAILED")


def test_mlflow_parent_child_batches_and_artifacts(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    tracker = MlflowTracker(uri)
    parent = tracker.start_run("sweep", experiment="exp")
    child = tracker.start_run(
        "trial-0", experiment="exp", parent_run_id=parent, tags={"kind": "trial"}
    )
    tracker.log_params(child, {f"p{i}": i for i in range(150)})  # more than one batch of params
    tracker.log_metrics(child, [Metric("train/loss", 1.0 / (i + 1), i) for i in range(1500)])
    tracker.log_metrics(
        child,
        [
            Metric("t/accuracy", 80.0, 0),
            Metric("t/tpf", 2.0, 0),
            Metric("t/accuracy", 60.0, 1),
            Metric("t/tpf", 4.0, 1),
        ],
    )
    (tmp_path / "eval.jsonl").write_text("{}\n")
    tracker.log_artifact(child, tmp_path / "eval.jsonl")
    tracker.set_tags(child, {"failure_reason": "none"})
    tracker.set_experiment_tags("exp", {"mlflow.experimentKind": "custom_model_development"})
    tracker.end_run(child, "FAILED")
    assert not tracker.offline and tracker.seconds > 0

    client = MlflowClient(uri)
    run = client.get_run(child)
    assert run.data.tags[PARENT_TAG] == parent and run.data.tags["kind"] == "trial"
    assert run.info.status == "FAILED" and run.info.run_name == "trial-0"
    assert len(run.data.params) == 150
    assert len(client.get_metric_history(child, "train/loss")) == 1500
    curve = {m.step: m.value for m in client.get_metric_history(child, "t/tpf")}
    assert curve == {0: 2.0, 1: 4.0}
    assert [a.path for a in client.list_artifacts(child)] == ["eval.jsonl"]
    experiment = client.get_experiment_by_name("exp")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # Artifacts of a local store live beside its database.
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(tmp_path / "store")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_warns_once_and_goes_offline(capsys: pytest.CaptureFixture[str]) -> None:
    tracker = get_tracker(f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    run = tracker.start_run("x", experiment="e")
    tracker.log_params(run or "some-id", {"a": 1})
    tracker.log_metrics("some-id", [Metric("a", 1.0)])
    tracker.end_run("some-id")
    assert run == "" and tracker.offline
    assert time.monotonic() - start < 60  # no minutes of retries
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "records stay on disk" in err


def test_a_trial_s_run_carries_the_step_s_phase_times_flops_and_mfu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real trial of the tiny sweep, one short step: its run has the RL step's phase times
    and model FLOPs as metrics. On a CPU the MFU is unknown: no ``train/mfu``, a tag
    ``mfu: unknown``, and no system metrics, which are for a GPU."""
    from pareto_bench.core.records import TrialRecord, read_jsonl
    from pareto_bench.rl.step import PHASES
    from pareto_bench.sweep import SweepOptions, load_spec, run_sweep

    monkeypatch.chdir(tmp_path)  # the default MLflow store goes to ./mlruns
    sweeps = Path(__file__).resolve().parents[1] / "sweeps" / "tiny.yaml"
    short = [
        "executor.name=inprocess",
        "trials=1",
        "baselines=[]",
        "train.steps=1",
        "train.rollout.prompts_per_step=2",
        "train.rollout.group_size=2",
        "train.filter.enabled=false",  # every phase runs
        "eval.limit=2",
        "eval.thresholds=[0.5]",
    ]
    spec = load_spec(sweeps, short)
    run_sweep(spec, SweepOptions(spec_path=sweeps, out_dir=tmp_path / "out", progress=False))
    (row,) = {
        r.number: r for r in read_jsonl(tmp_path / "out" / "trials.jsonl", TrialRecord)
    }.values()
    assert row.state == "COMPLETE"

    run = MlflowClient(default_tracking_uri(tmp_path)).get_run(row.mlflow_run_id)
    metrics = run.data.metrics
    for phase in PHASES:
        assert metrics[f"train/{phase}_time"] > 0, phase
    assert metrics["train/step_time"] >= sum(metrics[f"train/{p}_time"] for p in PHASES)
    assert metrics["train/flops"] > 0
    assert "train/mfu" not in metrics and run.data.tags["mfu"] == "unknown"
    assert not [key for key in metrics if key.startswith("system/")]

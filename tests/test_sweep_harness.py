"""The sweep harness end to end, with a fake trial body (tests/sweep_fakes.py) standing in for
training: the output layout, the MLflow layout, failures, samplers, resume and budgets.
Crash-and-resume and multi-worker runs are in test_sweep_workers.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from pareto_bench.core.records import EvalRecord, TrialRecord, read_jsonl
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep import SweepOptions, load_spec, run_sweep
from pareto_bench.sweep.samplers import SAMPLERS
from pareto_bench.tracking import PARENT_TAG

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "sweeps" / "tiny.yaml"
FAKE = ["executor.body=sweep_fakes:quick_body", "executor.name=inprocess"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default MLflow store goes to ./mlruns
    for var in ("PB_FAKE_FAIL", "PB_FAKE_NAN", "PB_FAKE_STEP_S", "PB_FAKE_STARTED"):
        monkeypatch.delenv(var, raising=False)


def sweep(*overrides: str, out: str = "out", **options):
    spec = load_spec(TINY, [*FAKE, *overrides])
    return spec, run_sweep(
        spec, SweepOptions(spec_path=TINY, out_dir=Path(out), progress=False, **options)
    )


def last_rows(out: Path) -> dict[int, TrialRecord]:
    return {r.number: r for r in read_jsonl(out / "trials.jsonl", TrialRecord)}


def load_study(out: Path, name: str = "tiny") -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def test_output_and_mlflow_layout(tmp_path: Path) -> None:
    spec, result = sweep("trials=2")
    out = tmp_path / "out"
    # A sweep's output directory, exactly as docs/ARCHITECTURE.md lays it out.
    assert sorted(p.name for p in out.iterdir()) == [
        "spec.yaml",
        "study.journal",
        "sweep.json",
        "trials",
        "trials.jsonl",
    ]
    assert sorted(int(p.name) for p in (out / "trials").iterdir()) == [0, 1, 2, 3]
    assert sorted(p.name for p in (out / "trials" / "0").iterdir()) == [
        "eval.jsonl"
    ]  # base: no config
    for number in (1, 2, 3):
        assert sorted(p.name for p in (out / "trials" / str(number)).iterdir()) == [
            "config.yaml",
            "eval.jsonl",
            "train.jsonl",
        ]
    info = json.loads((out / "sweep.json").read_text())
    for key in (
        "name",
        "spec_path",
        "study_name",
        "storage",
        "tracking_uri",
        "parent_run_id",
        "operating_threshold",
        "tasks",
        "thresholds",
        "code_version",
        "created",
    ):
        assert key in info
    assert info["parent_run_id"] == result.parent_run_id and info["thresholds"] == [0.5, 0.7, 0.9]
    assert load_spec(out / "spec.yaml") == spec  # the resolved spec round-trips

    rows = last_rows(out)
    assert [rows[n].name for n in range(4)] == ["base", "grpo", "trial-2", "trial-3"]
    assert [rows[n].kind for n in range(4)] == ["baseline", "baseline", "trial", "trial"]
    assert all(r.state == "COMPLETE" for r in rows.values())
    for r in rows.values():
        assert {
            "synthetic/accuracy",
            "synthetic/tpf",
            "synthetic/aup",
            "synthetic/hypervolume",
        } <= set(r.objectives)
        evals = read_jsonl(out / "trials" / str(r.number) / "eval.jsonl", EvalRecord)
        at_op = next(e for e in evals if e.threshold == 0.9)
        assert (
            r.objectives["synthetic/accuracy"] == at_op.accuracy
            and r.objectives["synthetic/tpf"] == at_op.tpf
        )
    assert set(rows[2].params) == set(spec.search_space)

    study = load_study(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert study.trials[2].values == [
        rows[2].objectives["synthetic/accuracy"],
        rows[2].objectives["synthetic/tpf"],
    ]

    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert {"spec.yaml", "sweep.json", "trials.jsonl"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["base", "grpo", "trial-2", "trial-3"]
    for child in children:
        run_id = child.info.run_id
        assert (
            child.info.status == "FINISHED"
            and rows[int(child.data.tags["trial_number"])].mlflow_run_id == run_id
        )
        accuracy = client.get_metric_history(run_id, "synthetic/accuracy")
        tpf = client.get_metric_history(run_id, "synthetic/tpf")
        assert (
            sorted(m.step for m in accuracy) == sorted(m.step for m in tpf) == [0, 1, 2]
        )  # one step per threshold
        assert (
            child.data.metrics["synthetic/accuracy_at_op"]
            == rows[int(child.data.tags["trial_number"])].objectives["synthetic/accuracy"]
        )
        assert {"synthetic/aup", "synthetic/hypervolume", "synthetic/tpf_at_op"} <= set(
            child.data.metrics
        )
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert "eval.jsonl" in artifacts
        assert [a.path for a in client.list_artifacts(run_id, "plots")] == [
            "plots/synthetic_frontier.png"
        ]
        if child.info.run_name != "base":
            assert {"config.yaml", "train.jsonl"} <= artifacts
            assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [0, 1, 2, 3]
            assert child.data.params["reward.tpf_weight"] is not None
    # A re-run (nothing left to do) joins the same parent run rather than making another.
    _, again = sweep("trials=2")
    assert again.ran == [] and again.parent_run_id == result.parent_run_id
    assert len(client.search_runs([parent.info.experiment_id], "tags.kind = 'sweep'")) == 1
    trial = next(c for c in children if c.info.run_name == "trial-2")
    assert float(trial.data.params["reward.tpf_weight"]) == pytest.approx(
        rows[2].params["reward.tpf_weight"]
    )


@pytest.mark.parametrize("executor", ["inprocess", "subprocess"])
def test_failed_trials_are_recorded_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    monkeypatch.setenv("PB_FAKE_FAIL", "1")  # an exception after training
    monkeypatch.setenv("PB_FAKE_NAN", "2")  # a diverged loss mid-training
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    _, result = sweep("trials=3", "baselines=[base]", f"executor.name={executor}")
    rows = last_rows(tmp_path / "out")
    assert [rows[n].state for n in range(4)] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert rows[1].failure_reason == "ValueError: fake failure of trial 1"
    assert rows[2].failure_reason == "FakeDiverged: step 2: the loss is nan"
    study = load_study(tmp_path / "out")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert study.trials[1].user_attrs["failure_reason"] == rows[1].failure_reason
    client = MlflowClient(result.tracking_uri)
    for number in (1, 2):
        failed = client.get_run(rows[number].mlflow_run_id)
        assert failed.info.status == "FAILED"
        assert failed.data.tags["failure_reason"] == rows[number].failure_reason
        # The traceback is kept beside the run, for whoever has to debug it.
        text = Path(
            client.download_artifacts(rows[number].mlflow_run_id, "failure.txt", str(tmp_path))
        ).read_text()
        assert "Traceback" in text and rows[number].failure_reason.split(": ")[-1] in text
    # The diverged trial's curve up to the failure is kept.
    assert [m.step for m in client.get_metric_history(rows[2].mlflow_run_id, "train/loss")] == [
        0,
        1,
    ]


def test_subprocess_trial_timeout_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PB_FAKE_STEP_S", "20")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    _, result = sweep(
        "trials=1",
        "baselines=[]",
        "executor.name=subprocess",
        "executor.timeout_s=3",
        tracking_uri="none",
    )
    (row,) = last_rows(tmp_path / "out").values()
    assert row.state == "FAIL" and row.failure_reason == "timed out after 3 s (executor.timeout_s)"
    assert row.wall_time < 20


def test_objective_failure_when_the_operating_threshold_is_missing(tmp_path: Path) -> None:
    spec = load_spec(TINY, [*FAKE, "trials=1", "baselines=[]"])
    # A body that skips the operating threshold cannot produce the objectives.
    from pareto_bench.sweep.trial import TrialFailed, summarize

    with pytest.raises(TrialFailed, match="operating threshold 0.9"):
        summarize(
            [EvalRecord("synthetic", 0.5, 50.0, 2.0, 1, 2, 1)],
            operating_threshold=0.9,
            y_max=spec.eval.y_max,
            hv_reference=(1, 0),
        )


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_runs_beside_baselines(tmp_path: Path, sampler: str) -> None:
    space = "search_space.reward.tpf_weight={type: float, low: 0.5, high: 2.0, step: 0.5}"
    options = (
        "sampler.options={n_startup_trials: 2}"
        if sampler in ("tpe", "gp")
        else "sampler.options={}"
    )
    fixed = "search_space.loss.nll_weight=[0.1]"
    _, result = sweep(
        "trials=5", f"sampler.name={sampler}", space, fixed, options, tracking_uri="none"
    )
    rows = last_rows(tmp_path / "out")
    # The space has 4 points: each is trained once, then the budget of 5 is capped.
    assert len(rows) == 6
    assert all(r.state == "COMPLETE" for r in rows.values())
    searched = [r.params["reward.tpf_weight"] for r in rows.values() if r.kind == "trial"]
    assert sorted(searched) == [0.5, 1.0, 1.5, 2.0]


def test_rerun_keeps_finished_trials_and_tops_up(tmp_path: Path) -> None:
    _, first = sweep("trials=2", "baselines=[base]", tracking_uri="none")
    assert len(first.ran) == 3
    _, again = sweep("trials=2", "baselines=[base]", tracking_uri="none")
    assert again.ran == []  # nothing left to do
    _, more = sweep("trials=3", "baselines=[base]", tracking_uri="none")
    assert [r.number for r in more.ran] == [3]
    assert sorted(last_rows(tmp_path / "out")) == [0, 1, 2, 3]


def test_resuming_with_a_different_spec_is_refused(tmp_path: Path) -> None:
    sweep("trials=1", "baselines=[]", tracking_uri="none")
    with pytest.raises(ConfigError, match=r"fields differ: search_space.*--out"):
        sweep(
            "trials=1",
            "baselines=[]",
            "search_space.reward.tpf_weight.high=1.0",
            tracking_uri="none",
        )


def test_unreachable_tracking_server_does_not_stop_the_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, result = sweep("trials=1", "baselines=[base]", tracking_uri=f"http://127.0.0.1:{port}")
    rows = last_rows(tmp_path / "out")
    assert [r.state for r in rows.values()] == ["COMPLETE", "COMPLETE"]
    assert all(r.mlflow_run_id == "" for r in rows.values())
    assert (tmp_path / "out" / "trials" / "1" / "eval.jsonl").is_file()
    assert capsys.readouterr().err.count("warning: MLflow tracking") == 1


def test_spec_yaml_is_the_resolved_spec(tmp_path: Path) -> None:
    spec, _ = sweep("trials=1", "baselines=[]", "eval.limit=7", tracking_uri="none")
    saved = yaml.safe_load((tmp_path / "out" / "spec.yaml").read_text())
    assert saved["eval"]["limit"] == 7 and saved["executor"]["body"] == "sweep_fakes:quick_body"


def test_aup_objective_makes_a_single_objective_study(tmp_path: Path) -> None:
    _, result = sweep("trials=2", "baselines=[base]", "objectives=aup", tracking_uri="none")
    study = load_study(tmp_path / "out")
    assert len(study.directions) == 1
    rows = last_rows(tmp_path / "out")
    assert [t.values for t in study.trials] == [
        [rows[t.number].objectives["synthetic/aup"]] for t in study.trials
    ]

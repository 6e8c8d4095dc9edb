"""Seed replicates in sweeps (pareto_bench.sweep.replicates): every configuration trains and
evaluates once per seed, Optuna is told the aggregate, and a failed or killed replicate costs
that replicate alone. The fake body (tests/sweep_fakes.py) loses 3 accuracy points per seed."""

from __future__ import annotations

import signal
import statistics
import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from test_sweep_workers import (
    env,
    journal_study,
    last_rows,
    start,
    starts,
    sweep_command,
    wait_for,
)

from pareto_bench.analysis.report.sweep_data import load_sweep_dir
from pareto_bench.core.records import EvalRecord, TrialRecord, read_jsonl
from pareto_bench.sweep import SweepOptions, load_spec, run_sweep
from pareto_bench.sweep.replicates import study_name

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "sweeps" / "tiny.yaml"
FAKE = ["executor.body=sweep_fakes:quick_body", "executor.name=inprocess"]
OBJECTIVES = ["synthetic/accuracy", "synthetic/tpf"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("PB_FAKE_FAIL", "PB_FAKE_FAIL_SEEDS", "PB_FAKE_STEP_S", "PB_FAKE_STARTED"):
        monkeypatch.delenv(var, raising=False)


def sweep(*overrides: str, out: str = "out"):
    spec = load_spec(TINY, [*FAKE, *overrides])
    return run_sweep(spec, SweepOptions(spec_path=TINY, out_dir=Path(out), progress=False))


def replicate_rows(out: Path, number: int) -> dict[str, TrialRecord]:
    """The last row of each replicate of configuration ``number``."""
    rows = read_jsonl(out / "trials" / str(number) / "replicates.jsonl", TrialRecord)
    return {r.name: r for r in rows}


def jobs(out: Path) -> list[optuna.trial.FrozenTrial]:
    backend = optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    storage = optuna.storages.JournalStorage(backend)
    return optuna.load_study(study_name=study_name("tiny"), storage=storage).trials


def test_each_configuration_runs_once_per_seed_and_optuna_sees_the_median(tmp_path: Path) -> None:
    result = sweep("trials=2", "baselines=[base, grpo]", "replicates=3")
    out = tmp_path / "out"
    assert result.counts == {"COMPLETE": 4}
    study = journal_study(out)
    assert len(study.trials) == 4  # one Optuna trial per configuration, not per replicate
    for trial in study.trials:
        name = trial.user_attrs["name"]
        rows = replicate_rows(out, trial.number)
        seeds = [0] if name == "base" else [0, 1, 2]  # the untrained model runs once
        assert sorted(rows) == [f"{name}/seed-{s}" for s in seeds]
        assert all(r.state == "COMPLETE" and r.kind == "replicate" for r in rows.values())
        for key, value in zip(OBJECTIVES, trial.values, strict=True):
            assert value == statistics.median(r.objectives[key] for r in rows.values())
        # The seeds really differ, and each replicate trained with its own.
        accuracies = {r.seed: r.objectives["synthetic/accuracy"] for r in rows.values()}
        assert len(set(accuracies.values())) == len(seeds) and sorted(accuracies) == seeds
        # The configuration's eval.jsonl pools its replicates' samples.
        pooled = read_jsonl(out / "trials" / str(trial.number) / "eval.jsonl", EvalRecord)
        assert {r.num_samples for r in pooled} == {20 * len(seeds)}
        for seed in seeds:
            assert (out / "trials" / str(trial.number) / f"seed-{seed}" / "eval.jsonl").is_file()
    assert last_rows(out)[2].objectives["synthetic/accuracy"] == study.trials[2].values[0]

    # MLflow: replicate runs are children of their configuration's run.
    client = MlflowClient(result.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    by_id = {r.info.run_id: r for r in runs}
    replicates = [r for r in runs if r.data.tags.get("kind") == "replicate"]
    assert len(replicates) == 1 + 3 * 3
    for run in replicates:
        configuration = by_id[run.data.tags["mlflow.parentRunId"]]
        assert run.info.run_name.startswith(configuration.info.run_name + "/seed-")
        assert configuration.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert configuration.data.metrics["replicates/complete"] >= 1

    # A report read back from MLflow alone has every configuration's seeds.
    from pareto_bench.analysis.report.mlflow_source import load_mlflow_run

    restored = load_mlflow_run(result.parent_run_id, result.tracking_uri, tmp_path / "download")
    seeds = {t.record.name: sorted(t.replicates) for t in restored.trials}
    assert seeds == {"base": [0], "grpo": [0, 1, 2], "trial-2": [0, 1, 2], "trial-3": [0, 1, 2]}
    local = {t.record.name: t for t in load_sweep_dir(out).trials}
    for trial in restored.trials:
        assert trial.replicates == local[trial.record.name].replicates


def test_the_mean_when_the_spec_asks_for_it(tmp_path: Path) -> None:
    sweep("trials=1", "baselines=[]", "replicates={count: 2, aggregate: mean}")
    (trial,) = journal_study(tmp_path / "out").trials
    rows = replicate_rows(tmp_path / "out", 0).values()
    assert trial.values[0] == statistics.fmean(r.objectives["synthetic/accuracy"] for r in rows)


def test_a_configuration_fails_only_with_fewer_than_min_complete_replicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PB_FAKE_FAIL_SEEDS", "1")
    # 2 of 3 complete: a majority, the default minimum.
    sweep("trials=1", "baselines=[]", "replicates=3", out="majority")
    (trial,) = journal_study(tmp_path / "majority").trials
    rows = replicate_rows(tmp_path / "majority", 0)
    assert rows["trial-0/seed-1"].state == "FAIL"
    assert rows["trial-0/seed-1"].failure_reason == "ValueError: fake failure of seed 1"
    assert trial.state.name == "COMPLETE"
    assert trial.values[0] == statistics.median(
        rows[f"trial-0/seed-{s}"].objectives["synthetic/accuracy"] for s in (0, 2)
    )
    # All 3 required: the configuration fails, saying why.
    sweep("trials=1", "baselines=[]", "replicates={count: 3, min_complete: 3}", out="all")
    (trial,) = journal_study(tmp_path / "all").trials
    assert trial.state.name == "FAIL"
    assert last_rows(tmp_path / "all")[0].failure_reason == (
        "2 of 3 replicates completed; replicates.min_complete needs 3"
    )


@pytest.mark.slow
def test_a_killed_replicated_sweep_resumes_replicate_by_replicate(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = sweep_command(
        out, "--trials", "1", "--set", "baselines=[grpo]", "--set", "replicates=2"
    )
    first = start(command, tmp_path, env(tmp_path, step_s=1.0), "first")
    # grpo is configuration 0 and trial-1 configuration 1; kill mid-way through its seed 1.
    seed_1_steps = out / "trials" / "1" / "seed-1" / "train.jsonl"
    wait_for(lambda: seed_1_steps.is_file(), 240, "trial-1's second replicate to train")
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = starts(tmp_path)
    assert before == {"0-seed0": 1, "0-seed1": 1, "1-seed0": 1, "1-seed1": 1}

    rerun = subprocess.run(
        command, cwd=tmp_path, env=env(tmp_path, 0.0), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    # Only the killed replicate ran again.
    assert starts(tmp_path) == {"0-seed0": 1, "0-seed1": 1, "1-seed0": 1, "1-seed1": 2}
    assert {t.state.name for t in journal_study(out).trials} == {"COMPLETE"}
    states = [(t.user_attrs["name"], t.user_attrs["seed"], t.state.name) for t in jobs(out)]
    assert sorted(states) == [
        ("grpo", 0, "COMPLETE"),
        ("grpo", 1, "COMPLETE"),
        ("trial-1", 0, "COMPLETE"),
        ("trial-1", 1, "COMPLETE"),
        ("trial-1", 1, "FAIL"),
    ]
    killed = replicate_rows(out, 1)["trial-1/seed-1"]
    assert killed.state == "COMPLETE"
    assert "marked FAILED" in rerun.stderr


def test_a_sweep_of_baselines_alone_ends_with_their_order_against_the_papers(
    tmp_path: Path,
) -> None:
    command = sweep_command(
        tmp_path / "out", "--trials", "0", "--set", "baselines=[base, lightningrl, no_nll]",
        "--set", "replicates=2",
    )  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env(tmp_path, 0.0), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "synthetic: the order by AUP" in done.stdout
    assert done.stdout.rstrip().endswith(
        f"report: pareto-bench report {tmp_path / 'out'} --template ablations"
    )


def test_pooling_weighs_each_replicate_by_its_samples() -> None:
    from pareto_bench.core.records import SampleResult
    from pareto_bench.sweep.replicates import pool

    def record(correct: int, n: int, forwards: int) -> EvalRecord:
        samples = [
            SampleResult(f"p{i}", i < correct, float(i < correct), 10, forwards) for i in range(n)
        ]
        return EvalRecord.from_samples(
            "t", 0.9, samples, extra={"answer_accuracy": 100.0 * correct / n}
        )

    (pooled,) = pool([[record(5, 10, 5)], [record(30, 30, 2)]])
    assert pooled.num_samples == 40 and len(pooled.samples) == 40
    assert pooled.accuracy == pytest.approx(87.5) and pooled.extra[
        "answer_accuracy"
    ] == pytest.approx(87.5)
    assert pooled.tpf == pytest.approx(400 / (50 + 60))  # total tokens over total forwards

"""Executors beyond one process: torchrun trials (processes_per_trial) and SLURM jobs through
submitit's local executor, and executor options declared by each executor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pareto_bench.core.records import EvalRecord, TrainStepRecord, TrialRecord, read_jsonl
from pareto_bench.core.schema import ConfigError
from pareto_bench.sweep import SweepOptions, load_spec, run_sweep
from pareto_bench.sweep.executors import make_executor
from pareto_bench.sweep.executors.child_process import SubprocessExecutor
from pareto_bench.sweep.executors.slurm import SlurmExecutor

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "sweeps" / "tiny.yaml"
CLI = str(Path(sys.executable).with_name("pareto-bench"))


def rows(out: Path) -> dict[int, TrialRecord]:
    return {r.number: r for r in read_jsonl(out / "trials.jsonl", TrialRecord)}


def test_executor_options_are_checked_by_the_executor_s_own_model():
    spec = load_spec(TINY, ["executor.name=slurm", "executor.partition=gpu", "executor.nodes=2"])
    executor = make_executor(spec.executor.name, spec.executor.body, spec.executor.model_extra)
    assert isinstance(executor, SlurmExecutor)
    assert (executor.options.partition, executor.options.nodes) == ("gpu", 2)
    with pytest.raises(ConfigError, match=r"executor\.nodes.*executor 'slurm' takes: nodes"):
        load_spec(TINY, ["executor.name=slurm", "executor.nodes=0"])
    with pytest.raises(ConfigError, match=r"executor\.partition.*'subprocess' takes: processes"):
        load_spec(TINY, ["executor.partition=gpu"])  # a SLURM option on the subprocess executor
    local = make_executor("subprocess", options={"processes_per_trial": 2})
    assert isinstance(local, SubprocessExecutor)
    assert local.command("spec.json")[1:4] == ["-m", "torch.distributed.run", "--standalone"]


def test_slurm_trials_run_as_jobs_and_a_failed_job_is_a_failed_trial_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # the job imports the fake body
    monkeypatch.setenv("PB_FAKE_FAIL", "1")
    spec = load_spec(
        TINY,
        [
            "executor.body=sweep_fakes:quick_body",
            "executor.name=slurm",
            "executor.cluster=local",
            "executor.gpus_per_node=0",
            "executor.poll_s=0.2",
            "trials=2",
            "baselines=[]",
        ],
    )
    result = run_sweep(spec, SweepOptions(spec_path=TINY, out_dir=Path("out"), progress=False))
    trials = rows(tmp_path / "out")
    assert [trials[n].state for n in (0, 1)] == ["COMPLETE", "FAIL"]
    assert trials[1].failure_reason.startswith("SLURM job ")
    assert "ValueError: fake failure of trial 1" in trials[1].failure_reason
    assert read_jsonl(tmp_path / "out" / "trials" / "0" / "eval.jsonl", EvalRecord)
    client = MlflowClient(result.tracking_uri)
    # The curve streamed from train.jsonl while the job ran.
    assert len(client.get_metric_history(trials[0].mlflow_run_id, "train/loss")) == 4
    log = Path(
        client.download_artifacts(trials[1].mlflow_run_id, "failure.txt", str(tmp_path))
    ).read_text()
    assert "fake failure of trial 1" in log and "job stderr" in log


@pytest.mark.slow
def test_a_sweep_with_two_processes_per_trial_runs_end_to_end(tmp_path: Path) -> None:
    """The real body on tiny, each trial trained and evaluated by torchrun on 2 processes."""
    settings = {
        "trials": "1",
        "baselines": "[grpo]",
        "executor.processes_per_trial": "2",
        "train.steps": "1",
        "train.rollout.prompts_per_step": "2",
        "train.rollout.group_size": "2",
        "train.filter.max_refill_rounds": "0",
        "eval.limit": "4",
        "eval.thresholds": "[0.5]",
    }
    command = [CLI, "sweep", str(TINY), "--out", "out"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = rows(tmp_path / "out")
    assert [t.state for t in trials.values()] == ["COMPLETE", "COMPLETE"]
    for number in trials:
        trial_dir = tmp_path / "out" / "trials" / str(number)
        assert len(read_jsonl(trial_dir / "train.jsonl", TrainStepRecord)) == 1
        evals = read_jsonl(trial_dir / "eval.jsonl", EvalRecord)
        assert [(e.threshold, e.num_samples) for e in evals] == [(0.5, 4), (0.9, 4)]
        log = (trial_dir / "trial.log").read_text()
        for rank in (0, 1):  # both ranks ran the trial to its end, and each said so
            assert f"rank {rank} of 2: done" in log, log[-2000:]


def test_a_sweep_with_two_workers_runs_trials_in_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """executor.workers 2: the sweep starts one more worker on its study; both run trials,
    and every trial runs once."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))
    monkeypatch.setenv("PB_FAKE_STARTED", str(tmp_path / "started"))
    monkeypatch.setenv("PB_FAKE_STEP_S", "0.5")
    spec = load_spec(
        TINY,
        [
            "executor.body=sweep_fakes:quick_body",
            "executor.name=subprocess",
            "executor.workers=2",
            "trials=4",
            "baselines=[]",
        ],
    )
    run_sweep(
        spec, SweepOptions(spec_path=TINY, out_dir=Path("out"), progress=False, tracking_uri="none")
    )
    trials = rows(tmp_path / "out")
    assert sorted(trials) == [0, 1, 2, 3]
    assert all(t.state == "COMPLETE" for t in trials.values())
    started = tmp_path / "started"
    assert all(len((started / f"{n}.started").read_text().split()) == 1 for n in range(4))
    assert {(started / f"{n}.slot").read_text() for n in range(4)} == {"0", "1"}
    assert (tmp_path / "out" / "worker-1.log").is_file()


def test_a_failed_trial_s_detail_keeps_the_head_and_the_tail_of_its_stderr() -> None:
    """Under torchrun a rank's traceback often comes first and the launcher's summary last."""
    from pareto_bench.sweep.executors.child_process import StderrExcerpt

    excerpt = StderrExcerpt(head=3, tail=2)
    for i in range(10):
        excerpt.add(f"line {i}\n")
    assert excerpt.text() == (
        "line 0\nline 1\nline 2\n[... 5 lines left out, see trial.log ...]\nline 8\nline 9\n"
    )

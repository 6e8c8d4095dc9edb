"""The real thing, shortened: `pareto-bench sweep sweeps/tiny.yaml` trains the shipped tiny model
with LightningRL and GRPO for a step, evaluates every checkpoint, and records it all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from pypdf import PdfReader

from pareto_bench.core.records import EvalRecord, TrainStepRecord, TrialRecord, read_jsonl
from pareto_bench.rl.config import TrainConfig
from pareto_bench.tracking import PARENT_TAG

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("pareto-bench"))
SHORT = {
    "train.steps": "1",
    "train.rollout.prompts_per_step": "2",
    "train.rollout.group_size": "2",
    "train.filter.max_refill_rounds": "0",
    "eval.limit": "4",
    "eval.thresholds": "[0.5]",  # plus the operating threshold, 0.9
}


@pytest.mark.slow
def test_tiny_sweep_end_to_end(tmp_path: Path) -> None:
    command = [CLI, "sweep", str(ROOT / "sweeps" / "tiny.yaml"), "--trials", "1", "--out", "out"]
    for key, value in SHORT.items():
        command += ["--set", f"{key}={value}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "3 complete, 0 failed" in result.stdout
    # The summary ends with the best trial against the base model, and how to get the report.
    verdict = "Best trial per task against the base model: synthetic: trial 2 "
    assert verdict in result.stdout and "AUP " in result.stdout.split(verdict)[1]
    assert result.stdout.rstrip().endswith("report: pareto-bench report out")

    out = tmp_path / "out"
    rows = {r.number: r for r in read_jsonl(out / "trials.jsonl", TrialRecord)}
    assert [rows[n].name for n in range(3)] == ["base", "grpo", "trial-2"]
    assert all(r.state == "COMPLETE" for r in rows.values())
    for number in (1, 2):  # trained: resolved config, curve, checkpoint
        trial_dir = out / "trials" / str(number)
        config = TrainConfig.model_validate(yaml.safe_load((trial_dir / "config.yaml").read_text()))
        assert config.steps == 1 and config.model == "tiny" and config.eval_every == 0
        assert len(read_jsonl(trial_dir / "train.jsonl", TrainStepRecord)) == 1
        assert (trial_dir / "checkpoint" / "model.safetensors").is_file()
    grpo_config = (out / "trials" / "1" / "config.yaml").read_text()
    assert "tpf_weight: 0.0" in grpo_config
    trial_config = TrainConfig.model_validate(
        yaml.safe_load((out / "trials" / "2" / "config.yaml").read_text())
    )
    assert trial_config.reward.tpf_weight == pytest.approx(rows[2].params["reward.tpf_weight"])
    for number in range(3):
        evals = read_jsonl(out / "trials" / str(number) / "eval.jsonl", EvalRecord)
        assert [(e.task, e.threshold, e.num_samples) for e in evals] == [
            ("synthetic", 0.5, 4),
            ("synthetic", 0.9, 4),
        ]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    run = client.get_run(rows[2].mlflow_run_id)
    assert run.info.status == "FINISHED" and PARENT_TAG in run.data.tags
    assert {
        "train/reward",
        "train/tpf",
        "synthetic/accuracy",
        "synthetic/tpf",
        "synthetic/aup",
    } <= set(run.data.metrics)

    # What the sweep logged is enough for the report and for compare, with no records on disk.
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    parent = run.data.tags[PARENT_TAG]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = subprocess.run(
        [CLI, "report", "--mlflow-run", parent, "--tracking-uri", uri, "--out", "r.pdf",
         "--n-boot", "50", "--no-log-mlflow"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    text = " ".join(page.extract_text() for page in PdfReader(elsewhere / "r.pdf").pages)
    assert "Sweep report: tiny" in text and "trial 2" in text and "base model" in text
    compare = subprocess.run(
        [CLI, "compare", parent, str(out / "trials" / "0"), "--tracking-uri", uri,
         "--n-boot", "50", "--json"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stderr
    result = json.loads(compare.stdout)["tasks"]["synthetic"]
    assert result["problems_a"] == result["problems_b"] == 4 and result["paired"]


@pytest.mark.slow
def test_a_replicated_tiny_sweep_trains_each_configuration_with_each_seed(tmp_path: Path) -> None:
    """2 configurations (GRPO and one search trial) x 2 seeds, really trained, on 2 workers."""
    command = [CLI, "sweep", str(ROOT / "sweeps" / "tiny.yaml"), "--trials", "1", "--out", "out"]
    for key, value in {**SHORT, "replicates": "2", "baselines": "[grpo]"}.items():
        command += ["--set", f"{key}={value}"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "2 complete, 0 failed" in result.stdout

    out = tmp_path / "out"
    for number in (0, 1):
        replicates = read_jsonl(out / "trials" / str(number) / "replicates.jsonl", TrialRecord)
        done = {r.seed: r for r in replicates if r.state == "COMPLETE"}
        assert sorted(done) == [0, 1]
        for seed in (0, 1):
            seed_dir = out / "trials" / str(number) / f"seed-{seed}"
            config = TrainConfig.model_validate(
                yaml.safe_load((seed_dir / "config.yaml").read_text())
            )
            assert (
                config.seed == seed
                and len(read_jsonl(seed_dir / "train.jsonl", TrainStepRecord)) == 1
            )
        pooled = read_jsonl(out / "trials" / str(number) / "eval.jsonl", EvalRecord)
        assert {r.num_samples for r in pooled} == {2 * 4}  # both seeds' 4 problems

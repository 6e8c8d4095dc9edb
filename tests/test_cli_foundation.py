"""The foundation commands, run as a user runs them."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from pareto_bench.cli import app
from pareto_bench.core.records import EvalRecord, read_jsonl
from pareto_bench.dllm.models import load_model

runner = CliRunner()


def test_decode_prints_text_tokens_forwards_and_tpf():
    result = runner.invoke(
        app, ["decode", "--model", "tiny", "--prompt", "1,2,3,4:", "--threshold", "0.9", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["tpf"] == len(out["tokens"]) / out["num_forwards"]
    assert len(out["step_map"]) == len(out["tokens"])
    assert out["text"] == load_model("tiny").decode(out["tokens"])


def test_eval_writes_records_with_aggregate_tpf(tmp_path):
    path = tmp_path / "eval.jsonl"
    args = [
        "eval",
        "--model",
        "tiny",
        "--task",
        "synthetic",
        "--thresholds",
        "0.5,1.01",
        "--limit",
        "12",
        "--out",
        str(path),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = read_jsonl(path, EvalRecord)
    assert [r.threshold for r in records] == [0.5, 1.01]
    for r in records:
        assert r.num_samples == 12 == len(r.samples)
        assert r.tpf == sum(s.num_tokens for s in r.samples) / sum(
            s.num_forwards for s in r.samples
        )
        assert r.accuracy == 100 * sum(s.correct for s in r.samples) / 12
        assert "answer_accuracy" in r.extra
    assert records[1].tpf <= 1.0  # tau > 1: one token per forward


def test_eval_rejects_bad_thresholds_in_one_line():
    result = runner.invoke(app, ["eval", "--task", "synthetic", "--thresholds", "0.5,high"])
    assert result.exit_code != 0
    assert "--thresholds" in str(result.exception)


def test_pretrain_tiny_runs_a_few_steps_and_saves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "tiny"
    args = ["pretrain-tiny", "--out", str(out), "--steps", "3", "--set", "batch_size=8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lm = load_model(out)
    assert lm.block_size == 8 and lm.mask_id == lm.tokenizer.mask_token_id


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--task", "synthetic", "--model", "MISSING"],
        ["decode", "--model", "MISSING", "--prompt", "1,2,3,4:"],
        ["train", "trainers/lightningrl.yaml", "--model", "MISSING", "--steps", "1"],
    ],
    ids=["eval", "decode", "train"],
)
def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path, args):
    """As a user sees it: the installed command, stderr one line naming the path and the fix."""
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("pareto-bench"))
    missing = str(tmp_path / "no-such-checkpoint")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [cli, *[missing if a == "MISSING" else a for a in args], "--out", str(tmp_path / "out")]
        if args[0] != "decode"
        else [cli, *[missing if a == "MISSING" else a for a in args]],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: checkpoint {missing}: no such directory (pass --model tiny or a checkpoint directory)"
    ]
    assert not (tmp_path / "out").exists()  # nothing written before the error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--task", "gsm8k", "--data-dir", "EMPTY"], "gsm8k/test.jsonl not found"),
        (["eval", "--task", "nosuch"], "unknown task 'nosuch'"),
        (
            ["train", "trainers/lightningrl.yaml", "--task", "gsm8k", "--data-dir", "EMPTY"],
            "gsm8k/train.jsonl not found",
        ),
        (["train", "trainers/lightningrl.yaml", "--set", "optim.lr=-1"], "field 'optim.lr'"),
        (["train", "nosuch-recipe"], "trainer recipe 'nosuch-recipe' not found"),
        (["score", "--task", "nosuch", "--samples", "EMPTY/s.jsonl"], "unknown task 'nosuch'"),
        (["score", "--task", "humaneval", "--samples", "EMPTY/s.jsonl"], "no such file"),
        (["pretrain-tiny", "--set", "nosuch=1"], "unknown field 'nosuch'"),
        (["bench", "train", "--set", "optim.lr=-1"], "field 'optim.lr'"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) and v else None,
)
def test_bad_input_is_one_line_before_any_work(tmp_path, args, message):
    """Data, task, config and recipe errors of every command: exit 2 and one line on stderr,
    before a model is loaded or anything is written."""
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("pareto-bench"))
    empty = tmp_path / "empty"
    empty.mkdir()
    command = [cli, *[a.replace("EMPTY", str(empty)) for a in args]]
    if args[0] in ("train", "pretrain-tiny"):
        command += ["--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "PARETO_BENCH_DATA"}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists()

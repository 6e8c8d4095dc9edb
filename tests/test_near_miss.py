"""Near-miss controls for code scoring: each task's reference solutions, wrapped so that their
result is wrong by the smallest margin of one kind, must all score as wrong. ``return None``
(the gold tests' control) only shows that a scorer runs the tests; these show that it compares
closely enough: one off, the same value in another type, a float beyond the tolerance, and
for HumanEval+/MBPP+ a solution right on the original tests' inputs only.

The wrapper keeps the reference solution and renames it, so a near miss fails only through
its result. The first problems of each set are used, to keep the run short.
"""

from __future__ import annotations

import pytest

from pareto_bench.tasks import get_task

CODE_TASKS = ["humaneval", "humanevalplus", "mbpp", "mbpp-sanitized", "mbppplus"]
SAMPLE = 15

# Each mutation is the source of ``_near_miss(result)``, which makes the result wrong.
MUTATIONS = {
    # One off, in the result's own type: an int +1, a string or list one element short, ...
    "off_by_one": """
def _near_miss(r):
    if isinstance(r, bool):
        return not r
    if isinstance(r, (int, float)):
        return r + 1
    if isinstance(r, (str, list, tuple)):
        return r[:-1] if len(r) else r + type(r)("0" if isinstance(r, str) else [0])
    if isinstance(r, (set, frozenset)):
        return type(r)(set(r) | {"_near_miss"})
    if isinstance(r, dict):
        return {**r, "_near_miss": 0}
    return 0 if r is None else None
""",
    # The same value in another type: 3 -> "3", [1, 2] -> "[1, 2]", "ab" -> ["a", "b"]. Not a
    # list as a tuple: some MBPP+ tests compare set(result) (Mbpp/2, Mbpp/7), so there the
    # container is not part of the answer.
    "wrong_type": """
def _near_miss(r):
    if isinstance(r, str):
        return list(r) if r else None
    return "None" if r is None else str(r)
""",
}

# A float off by more than the task's tolerance, but only just: HumanEval+ compares with an
# atol of 1e-6 and up, MBPP+ with 1e-4, MBPP's own tests with math.isclose(rel_tol=0.001).
# Only for problems whose result is a float.
FLOAT_MISS = """
def _near_miss(r):
    return r + RELATIVE * max(1.0, abs(r))
"""
HUMANEVAL_FLOATS = ["HumanEval/2", "HumanEval/4", "HumanEval/45"]
MBPP_FLOATS = ["Mbpp/82", "Mbpp/85", "Mbpp/98"]  # sphere volume and area, product / length
FLOAT_PROBLEMS = {  # task: (problems, relative miss)
    "humaneval": (HUMANEVAL_FLOATS, 1e-4),
    "humanevalplus": (HUMANEVAL_FLOATS, 1e-4),
    "mbppplus": (MBPP_FLOATS, 1e-3),
    "mbpp": (MBPP_FLOATS, 1e-2),
    "mbpp-sanitized": (MBPP_FLOATS, 1e-2),
}


def _program(gold: str) -> str:
    return gold.strip().removeprefix("```python").removesuffix("```").strip("\n")


def wrapper(entry: str, mutation: str) -> str:
    """Code that, appended to a program defining ``entry``, rebinds ``entry`` to its
    ``_near_miss``-ed result."""
    return (
        f"{mutation}\n_reference = {entry}\n\n\n"
        f"def {entry}(*args, **kwargs):\n    return _near_miss(_reference(*args, **kwargs))\n"
    )


def near_miss(gold: str, entry: str, mutation: str) -> str:
    """The gold response with its entry point wrapped by ``_near_miss``."""
    return f"```python\n{_program(gold)}\n\n{wrapper(entry, mutation)}```"


def _passed(name: str, data_dir, chosen, mutation: str) -> dict[str, str]:
    task = get_task(name)
    problems = chosen(task.load(data_dir))
    assert problems
    responses = [near_miss(p.gold, p.meta["entry_point"], mutation) for p in problems]
    verdicts = task.score(problems, responses)
    return {p.id: v.detail for p, v in zip(problems, verdicts, strict=True) if v.correct}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@pytest.mark.parametrize("name", CODE_TASKS)
def test_near_misses_score_as_wrong(name, kind, data_dir):
    passed = _passed(name, data_dir, lambda problems: problems[:SAMPLE], MUTATIONS[kind])
    assert not passed, passed


@pytest.mark.parametrize("name", sorted(FLOAT_PROBLEMS))
def test_floats_beyond_the_tolerance_score_as_wrong(name, data_dir):
    ids, relative = FLOAT_PROBLEMS[name]

    def chosen(problems):
        return [p for p in problems if p.id in ids]

    assert not _passed(name, data_dir, chosen, FLOAT_MISS.replace("RELATIVE", repr(relative)))


@pytest.mark.parametrize("name", CODE_TASKS)
def test_the_wrapper_alone_keeps_the_gold_correct(name, data_dir):
    """The control of the controls: with ``_near_miss`` the identity, every wrapped reference
    still passes, so the near misses above fail through their results alone."""
    task = get_task(name)
    problems = task.load(data_dir)[:SAMPLE]
    identity = "\ndef _near_miss(r):\n    return r\n"
    verdicts = task.score(
        problems, [near_miss(p.gold, p.meta["entry_point"], identity) for p in problems]
    )
    assert all(v.correct for v in verdicts), [v.detail for v in verdicts if not v.correct]


# A solution right on the original tests' inputs and one off on every other: only the
# "plus" tests can tell.
PLUS_FILES = {
    "humanevalplus": ("humaneval", "humanevalplus/HumanEvalPlus.jsonl.gz"),
    "mbppplus": ("mbpp", "mbppplus/MbppPlus-v0.2.0.jsonl"),
}


def plus_only_miss(gold: str, entry: str, base_inputs: list) -> str:
    """The gold response, wrong (one off) on every input that is not one of ``base_inputs``."""
    code = _program(gold)
    keys = sorted({repr(list(args)) for args in base_inputs})
    wrapper = (
        f"{MUTATIONS['off_by_one']}\n_BASE = set({keys!r})\n_reference = {entry}\n\n\n"
        f"def {entry}(*args):\n"
        f"    base = repr(list(args)) in _BASE\n"
        f"    result = _reference(*args)\n"
        f"    return result if base else _near_miss(result)\n"
    )
    return f"```python\n{code}\n\n{wrapper}```"


@pytest.mark.parametrize("name", sorted(PLUS_FILES))
def test_solutions_right_only_on_the_original_inputs_fail_the_plus_tests(name, data_dir):
    import gzip
    import json

    base_name, file = PLUS_FILES[name]
    path = data_dir / file
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        raw = {r["task_id"]: r for r in map(json.loads, f)}
    task, base_task = get_task(name), get_task(base_name)
    problems = task.load(data_dir)[:SAMPLE]
    misses = [
        plus_only_miss(p.gold, p.meta["entry_point"], raw[p.id]["base_input"]) for p in problems
    ]
    plus = task.score(problems, misses)
    assert not [p.id for p, v in zip(problems, plus, strict=True) if v.correct]
    # The same programs against the original tests pass where those tests call the function
    # with the recorded base inputs: all 15 HumanEval ones, 7 of the 8 MBPP ones in the sample.
    by_id = {p.id: p for p in base_task.load(data_dir)}
    kept = [(by_id[p.id], m) for p, m in zip(problems, misses, strict=True) if p.id in by_id]
    base = base_task.score([p for p, _ in kept], [m for _, m in kept])
    assert sum(v.correct for v in base) >= 0.8 * len(kept), [v.detail for v in base]

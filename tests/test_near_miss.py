"""Near-miss controls for code scoring: each task's reference solutions, wrapped so that their
result is wrong by the smallest margin of one kind, must all score as wrong. ``return None``
(the gold tests' control) only shows that a scorer runs the tests; these show that it compares
closely enough: one off, the same value in another type, a float beyond the tolerance.

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

# A float off by more than the tolerance (1e-6 and up) but by less than 0.01%: only for
# problems whose result is a float.
FLOAT_MISS = """
def _near_miss(r):
    return r + 1e-4 * max(1.0, abs(r))
"""
FLOAT_PROBLEMS = {
    "humaneval": ["HumanEval/2", "HumanEval/4", "HumanEval/45"],
    "humanevalplus": ["HumanEval/2", "HumanEval/4", "HumanEval/45"],
}


def near_miss(gold: str, entry: str, mutation: str) -> str:
    """The gold response with its entry point wrapped by ``_near_miss``."""
    code = gold.strip().removeprefix("```python").removesuffix("```").strip("\n")
    wrapper = (
        f"{mutation}\n_reference = {entry}\n\n\n"
        f"def {entry}(*args, **kwargs):\n    return _near_miss(_reference(*args, **kwargs))\n"
    )
    return f"```python\n{code}\n\n{wrapper}```"


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
    wanted = set(FLOAT_PROBLEMS[name])

    def chosen(problems):
        return [p for p in problems if p.id in wanted]

    assert not _passed(name, data_dir, chosen, FLOAT_MISS)


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

"""The synthetic task of the ``tiny`` model: sum a few digits as a chain of partial sums.

Prompt ``6,7,1,5:``; one valid response ``6+7=13,13+1=14,14+5=19;19``. The operands may be
added in **any order**, so every problem has many valid trajectories that reach one answer.
That multi-modality is deliberate: decoding many low-confidence tokens at once mixes
trajectories and breaks chains, which gives the base model a real accuracy-parallelism
trade-off for RL to improve.

The verifier checks the whole trajectory (every step's arithmetic, each operand used exactly
once, the answer equal to the last partial sum) and, separately, whether the final answer is
right: a small model can often compute the answer beside a broken chain.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pareto_bench.tasks.base import Problem, Verdict, register_task

NUM_OPERANDS = 4
TEST_SEED = 20261125
TEST_SIZE = 500
CHAIN_BUDGET = 32  # new tokens: the longest chain is 25 characters plus EOS

_STEP = re.compile(r"(\d+)\+(\d+)=(\d+)")


def prompt_text(operands: Sequence[int]) -> str:
    return ",".join(map(str, operands)) + ":"


def chain_text(order: Sequence[int]) -> str:
    """The response that adds ``order`` left to right."""
    steps, total = [], order[0]
    for x in order[1:]:
        steps.append(f"{total}+{x}={total + x}")
        total += x
    return ",".join(steps) + f";{total}"


def random_chain(operands: Sequence[int], rng: random.Random) -> str:
    order = list(operands)
    rng.shuffle(order)
    return chain_text(order)


@dataclass(frozen=True)
class ChainCheck:
    valid: bool  # the whole trajectory is right
    answer_correct: bool  # the final answer is the true sum
    reason: str


def check_chain(operands: Sequence[int], response: str) -> ChainCheck:
    truth = sum(operands)
    body, sep, answer = response.strip().partition(";")
    answer_correct = sep == ";" and answer.strip() == str(truth)
    if not sep:
        return ChainCheck(False, False, "no ';answer'")
    steps = body.split(",")
    if len(steps) != len(operands) - 1:
        return ChainCheck(
            False, answer_correct, f"{len(steps)} steps, expected {len(operands) - 1}"
        )
    used: list[int] = []
    total: int | None = None
    for step in steps:
        match = _STEP.fullmatch(step)
        if not match:
            return ChainCheck(False, answer_correct, f"malformed step {step!r}")
        x, y, z = (int(g) for g in match.groups())
        if total is None:
            used += [x, y]
        elif x != total:
            return ChainCheck(
                False, answer_correct, f"step {step!r} does not continue from {total}"
            )
        else:
            used.append(y)
        if x + y != z:
            return ChainCheck(False, answer_correct, f"wrong arithmetic {step!r}")
        total = z
    if Counter(used) != Counter(operands):
        return ChainCheck(False, answer_correct, "operands not used exactly once")
    if answer.strip() != str(total):
        return ChainCheck(False, answer_correct, "answer differs from the last partial sum")
    return ChainCheck(answer_correct, answer_correct, "ok" if answer_correct else "wrong answer")


def _all_operand_tuples() -> list[tuple[int, ...]]:
    import itertools

    return list(itertools.product(range(10), repeat=NUM_OPERANDS))


def split_problems() -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """A fixed held-out test set and the disjoint rest for training."""
    everything = _all_operand_tuples()
    rng = random.Random(TEST_SEED)
    test = rng.sample(everything, TEST_SIZE)
    held_out = set(test)
    return [t for t in everything if t not in held_out], test


def to_problem(operands: Sequence[int], split: str) -> Problem:
    ops = tuple(operands)
    return Problem(
        id=f"{split}/{''.join(map(str, ops))}",
        question=prompt_text(ops),
        reference=ops,
        gold=chain_text(ops),
        meta={"split": split},
    )


def training_stream(seed: int) -> Iterator[tuple[str, str]]:
    """Endless (prompt, response) pairs from the training split, each in a random order."""
    train, _ = split_problems()
    rng = random.Random(seed)
    while True:
        operands = rng.choice(train)
        yield prompt_text(operands), random_chain(operands, rng)


@register_task
class SyntheticTask:
    """Held-out problems of the synthetic chain-sum task."""

    name = "synthetic"
    version = "1"
    max_new_tokens = CHAIN_BUDGET
    split = "test"

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        train, test = split_problems()
        chosen = test if self.split == "test" else train
        return [to_problem(ops, self.split) for ops in chosen]

    def prompt(self, problem: Problem) -> str:
        return problem.question

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[Verdict]:
        verdicts = []
        for problem, response in zip(problems, responses, strict=True):
            check = check_chain(problem.reference, response)
            verdicts.append(
                Verdict(check.valid, float(check.valid), check.reason, check.answer_correct)
            )
        return verdicts

    def corrupt(self, problem: Problem) -> str:
        """The gold chain with a final answer one too high."""
        chain, _, answer = problem.gold.rpartition(";")
        return f"{chain};{int(answer) + 1}"


@register_task
class SyntheticTrainTask(SyntheticTask):
    """The training split (every operand tuple not held out), for RL."""

    name = "synthetic-train"
    split = "train"

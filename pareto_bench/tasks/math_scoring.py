"""Maths scoring: the last ``\\boxed{}`` of a response, checked against the gold answer with
math-verify in a pool of worker processes, with a hard deadline per item.

A response without a ``\\boxed{}`` answer is wrong. A verifier that times out or crashes makes
that item wrong, never the run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from pareto_bench.execution.pool import DeadlinePool
from pareto_bench.tasks.base import MAX_NEW_TOKENS, Problem, Verdict

DEFAULT_TEMPLATE = (
    "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``) in
    ``text``, braces matched; None when there is none or it is never closed."""
    for match in reversed(list(_BOXED.finditer(text))):
        rest = text[match.end() :]
        if rest.startswith("{"):
            depth = 0
            for i, ch in enumerate(rest):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        return rest[1:i].strip()
            continue  # unclosed: try an earlier one
        bare = re.match(r"[^\s$]+", rest)  # "\boxed 5$"
        if bare:
            return bare.group(0)
    return None


def _verify_item(item: tuple[str, str, float]) -> bool:
    """In a pool worker: does the predicted LaTeX answer equal the gold one?"""
    from math_verify import parse, verify

    predicted, gold, timeout = item
    seconds = max(1, int(timeout))
    gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=seconds)
    predicted_parsed = parse(f"\\boxed{{{predicted}}}", parsing_timeout=seconds)
    if not gold_parsed or not predicted_parsed:
        return False
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=seconds))


def verify_answers(
    pairs: Sequence[tuple[str, str]],
    *,
    timeout: float = 5.0,
    workers: int = 2,
    on_done: Callable[[int], None] | None = None,
) -> list[tuple[bool, str]]:
    """``(predicted, gold)`` LaTeX answers -> ``(correct, failure reason or "")`` per pair."""
    if not pairs:
        return []
    items = [(p, g, timeout) for p, g in pairs]
    with DeadlinePool(min(workers, len(items))) as pool:
        # The worker's own alarms stop most slow parses; the pool's deadline is the backstop.
        raw = pool.map(
            _verify_item,
            items,
            timeout=3 * timeout + 5,
            on_failure=lambda item, reason: reason,
            on_done=on_done,
        )
    return [(r, "") if isinstance(r, bool) else (False, f"verifier {r}") for r in raw]


@dataclass
class MathTask:
    """Shared behaviour of the maths benchmarks. Subclasses set the class constants and
    ``load``; ``template`` and ``shots`` make the prompt changeable per instance."""

    name: ClassVar[str]
    version: ClassVar[str]
    max_new_tokens: ClassVar[int] = MAX_NEW_TOKENS

    template: str = DEFAULT_TEMPLATE
    shots: int = 0
    verify_timeout: float = 5.0
    workers: int = 2
    few_shot_examples: list[tuple[str, str]] = field(default_factory=list)
    progress: Callable[[str, int, int], None] | None = field(
        default=None, repr=False, compare=False
    )

    def prompt(self, problem: Problem) -> str:
        examples = self.few_shot_examples[: self.shots]
        shots = "".join(f"{self.template.format(question=q)}\n{a}\n\n" for q, a in examples)
        return shots + self.template.format(question=problem.question)

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[Verdict]:
        if len(problems) != len(responses):
            raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
        answers = [last_boxed(r) if isinstance(r, str) else None for r in responses]
        todo = [i for i, a in enumerate(answers) if a]
        done = [0]

        def on_done(_: int) -> None:
            done[0] += 1
            if self.progress is not None:
                self.progress("verifying answers", done[0], len(todo))

        checked = verify_answers(
            [(answers[i], str(problems[i].reference)) for i in todo],  # type: ignore[misc]
            timeout=self.verify_timeout,
            workers=self.workers,
            on_done=on_done,
        )
        verdicts = [Verdict(False, 0.0, "no \\boxed{} answer") for _ in problems]
        for i, (correct, reason) in zip(todo, checked, strict=True):
            detail = f"{answers[i]}" + (f" ({reason})" if reason else "")
            verdicts[i] = Verdict(correct, 1.0 if correct else 0.0, detail[:200])
        return verdicts

    def corrupt(self, problem: Problem) -> str:
        """The gold response with a wrong final answer (the gold plus one)."""
        return f"The answer is \\boxed{{{corrupt_answer(str(problem.reference))}}}."


def corrupt_answer(answer: str) -> str:
    """A different answer: a plain number gets one added; anything else gets ``+1``."""
    plain = answer.replace(",", "").strip()
    if re.fullmatch(r"-?\d+", plain):
        return str(int(plain) + 1)
    if re.fullmatch(r"-?\d*\.\d+", plain):
        return repr(float(plain) + 1)
    return f"{answer}+1"

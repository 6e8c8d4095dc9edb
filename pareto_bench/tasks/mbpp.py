"""MBPP (google-research), its sanitized subset, and MBPP+ (EvalPlus v0.2.0).

- ``mbpp``: the standard test split of the full set, task ids 11-510 (500 problems). Tests are
  the three ``test_list`` asserts, after ``test_setup_code``; ``challenge_test_list`` is not
  used, as is standard.
- ``mbpp-train``: the standard training split, task ids 601-974, less the 108 of them that
  MBPP+ evaluates (266 problems): what RL on ``mbpp`` trains on, so that it never sees a
  problem that ``mbpp`` or ``mbppplus`` scores.
- ``mbpp-sanitized``: the sanitized set's problems in the same test range (257 problems);
  ``test_imports`` run before the asserts.
- ``mbppplus``: differential tests on the original and the extra inputs, judged as EvalPlus
  does. Inputs are converted to tuples/sets by EvalPlus's own function for the tasks that
  need it, so the same calls are made.

Ids follow EvalPlus: ``Mbpp/N``.
"""

from __future__ import annotations

import ast
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pareto_bench.execution.codec import encode
from pareto_bench.execution.judge import AssertTests, Oracle
from pareto_bench.tasks.base import (
    Problem,
    TaskDataError,
    register_task,
    require_file,
    resolve_data_dir,
)
from pareto_bench.tasks.code_scoring import CodeTask, DiffTests, file_sha256, read_jsonl

TEST_SPLIT = range(11, 511)
TRAIN_SPLIT = range(601, 975)


def functions_under_test(code: str, tests: list[str]) -> tuple[str, ...]:
    """Names the asserts call that the reference code defines (task 126 defines ``sum``, so a
    builtin's name counts too)."""
    with warnings.catch_warnings():  # old MBPP code has invalid escapes like "\w"
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(code)
    defined = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    called: list[str] = []
    for test in tests:
        for node in ast.walk(ast.parse(test)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                if name in defined and name not in called:
                    called.append(name)
    return tuple(called)


def tests_prompt(text: str, tests: list[str]) -> str:
    return f"{text.strip()}\nYour code should pass these tests:\n\n" + "\n".join(
        t.strip() for t in tests
    )


@dataclass
class _AssertMBPP(CodeTask):
    def _problem(
        self,
        task_id: int,
        text: str,
        code: str,
        setup: str,
        tests: list[str],
        where: str,
        sha: str,
        source: Path,
    ) -> Problem:
        try:
            wrap = functions_under_test(code, tests)
        except SyntaxError as e:
            raise TaskDataError(
                f"{where}: reference code or tests do not parse ({e}); is this the published file?"
            ) from e
        if not wrap:
            raise TaskDataError(f"{where}: the tests call no function the reference defines")
        return Problem(
            id=f"Mbpp/{task_id}",
            question=tests_prompt(text, tests),
            reference=AssertTests(
                code=code, setup=setup, script="\n".join(tests) + "\n", wrap=wrap
            ),
            gold=f"```python\n{code}\n```",
            meta={"entry_point": wrap[0], "task_id": task_id, "source": str(source), "sha256": sha},
        )


@register_task
@dataclass
class MBPP(_AssertMBPP):
    name: ClassVar[str] = "mbpp"
    version: ClassVar[str] = "1"
    split: ClassVar[range] = TEST_SPLIT

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        path = require_file(resolve_data_dir(data_dir), "mbpp/mbpp.jsonl", self.name)
        sha = file_sha256(path)
        problems = []
        for lineno, r in read_jsonl(
            path, ("task_id", "text", "code", "test_list", "test_setup_code"), "MBPP"
        ):
            if r["task_id"] in self.split:
                code = r["code"].replace("\r\n", "\n")
                problems.append(
                    self._problem(
                        r["task_id"],
                        r["text"],
                        code,
                        r["test_setup_code"],
                        r["test_list"],
                        f"{path}:{lineno}",
                        sha,
                        path,
                    )
                )
        return problems


@register_task
@dataclass
class MBPPTrain(MBPP):
    name: ClassVar[str] = "mbpp-train"
    split: ClassVar[range] = TRAIN_SPLIT

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        problems = super().load(data_dir)
        plus = Path(resolve_data_dir(data_dir) or ".") / MBPPPlus.filename
        if not plus.is_file():
            warnings.warn(
                f"mbpp-train: {plus} not found, so the MBPP+ problems (108 of ids 601-974) cannot "
                "be left out of training; do not evaluate mbppplus on a model trained this way",
                stacklevel=2,
            )
            return problems
        evaluated = {r["task_id"] for _, r in read_jsonl(plus, ("task_id",), "MBPP+")}
        return [p for p in problems if p.id not in evaluated]


@register_task
@dataclass
class MBPPSanitized(_AssertMBPP):
    name: ClassVar[str] = "mbpp-sanitized"
    version: ClassVar[str] = "1"

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        path = require_file(resolve_data_dir(data_dir), "mbpp/sanitized-mbpp.json", self.name)
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TaskDataError(
                f"{path}: not valid JSON ({e}); is this the published sanitized MBPP file?"
            ) from e
        if not isinstance(records, list):
            raise TaskDataError(f"{path}: expected a JSON array of problems")
        sha = file_sha256(path)
        problems = []
        for index, r in enumerate(records):
            where = f"{path}: record {index}"
            missing = [
                k
                for k in ("task_id", "prompt", "code", "test_list", "test_imports")
                if not isinstance(r, dict) or k not in r
            ]
            if missing:
                raise TaskDataError(
                    f"{where} lacks {', '.join(missing)}; is this the published sanitized MBPP file?"
                )
            if r["task_id"] in TEST_SPLIT:
                setup = "\n".join(r["test_imports"])
                problems.append(
                    self._problem(
                        r["task_id"],
                        r["prompt"],
                        r["code"],
                        setup,
                        r["test_list"],
                        where,
                        sha,
                        path,
                    )
                )
        return problems


@register_task
@dataclass
class MBPPPlus(CodeTask):
    name: ClassVar[str] = "mbppplus"
    version: ClassVar[str] = "1"
    filename: ClassVar[str] = "mbppplus/MbppPlus-v0.2.0.jsonl"

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        from evalplus.data.mbpp import mbpp_deserialize_inputs

        path = require_file(resolve_data_dir(data_dir), self.filename, self.name)
        sha = file_sha256(path)
        fields = (
            "task_id",
            "prompt",
            "entry_point",
            "canonical_solution",
            "base_input",
            "plus_input",
            "atol",
        )
        problems = []
        for lineno, r in read_jsonl(path, fields, "MBPP+"):
            try:
                base = mbpp_deserialize_inputs(r["task_id"], r["base_input"])
                plus = mbpp_deserialize_inputs(r["task_id"], r["plus_input"])
                inputs: list[Any] = [list(args) for args in [*base, *plus]]
            except (TypeError, ValueError, IndexError, AttributeError) as e:
                raise TaskDataError(
                    f"{path}:{lineno}: inputs of {r['task_id']} are malformed ({e})"
                ) from e
            tests = DiffTests(
                code=r["prompt"] + r["canonical_solution"],
                inputs=tuple(encode(args) for args in inputs),
                num_base=len(base),
                oracle=Oracle("mbpp", r["entry_point"], float(r["atol"])),
            )
            problems.append(
                Problem(
                    id=r["task_id"],
                    question=r["prompt"].strip().strip('"').strip(),
                    reference=tests,
                    gold=f"```python\n{r['canonical_solution'].strip()}\n```",
                    meta={
                        "entry_point": r["entry_point"],
                        "prompt": r["prompt"],
                        "source": str(path),
                        "sha256": sha,
                    },
                )
            )
        return problems

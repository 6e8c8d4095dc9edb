"""Pass/fail for code, decided on the trusted side from the outputs a sandbox reported.

Two kinds of tests:

- **Differential** (HumanEval+, MBPP+): each input's output is compared with the reference
  solution's output the way EvalPlus compares them (exact match, else ``np.allclose`` with the
  task's ``atol``, plus EvalPlus's own special oracles, imported from evalplus so the rules are
  identical). Runs in the parent: the values are plain data decoded from JSON.
- **Replayed assertions** (HumanEval, MBPP): the benchmark's own test code runs on the trusted
  side (in the parent under a timer, or in a pool worker when scoring runs off the main
  thread) against a *stub* of the function under test. The stub hands back, call by call,
  what the sandboxed code returned for the same arguments (recorded from a run of the
  reference solution). The code under test never sees the test, the expected values or the
  comparison, so patching ``__eq__``, builtins or ``assert`` inside the sandbox changes nothing
  here.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import io
import random
import signal
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pareto_bench.execution.codec import CodecError, decode, encode
from pareto_bench.execution.sandbox import (
    CallTimedOut,
    Outcome,
    Raised,
    RecordedCall,
    Returned,
    Status,
)


@dataclass(frozen=True)
class Judgement:
    status: Status
    passed: int  # tests (inputs or assert statements) passed
    total: int
    detail: str = ""

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


def _failed_call(outcome: Outcome | None, missing: Status) -> tuple[Status, str] | None:
    """The status of a call that did not return normally; None when it returned."""
    if outcome is None:
        return missing, "no result (the process stopped early)"
    if isinstance(outcome, CallTimedOut):
        return Status.TIMEOUT, f"timed out after {outcome.seconds:.1f}s"
    if isinstance(outcome, Raised):
        status = Status.MEMORY if outcome.type_name == "MemoryError" else Status.ERROR
        return status, f"raised {outcome.type_name}: {outcome.message}"[:300]
    return None


# ----------------------------------------------------------------------------------------
# Differential testing, EvalPlus rules
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Oracle:
    """How one problem's outputs are compared. ``dataset``: "humaneval" or "mbpp" (EvalPlus
    keys its special cases by dataset and entry point)."""

    dataset: str
    entry_point: str
    atol: float


def _is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, list | tuple) and bool(x) and all(isinstance(i, float) for i in x)


def exact_match_possible(oracle: Oracle) -> bool:
    """Whether EvalPlus may decide this problem's outputs by ``==`` alone (no special oracle
    and no tolerance), so that large outputs can travel as digests. Float outputs, which
    switch a tolerance on, are kept as values by the sandbox itself."""
    from evalplus.eval import _special_oracle as special

    special_entries = {
        "find_zero",
        "are_equivalent",
        "sum_div",
        "surface_Area",
        "digit_distance_nums",
    }
    special_entries |= {*special.MBPP_OUTPUT_SET_EQ_TASKS, *special.MBPP_OUTPUT_NOT_NONE_TASKS}
    return oracle.entry_point not in special_entries and oracle.atol == 0


def compare_outputs(
    outcomes: Sequence[Outcome | None],
    expected: Sequence[Any],
    inputs: Sequence[Sequence[Any]],
    oracle: Oracle,
    missing: Status,
) -> Judgement:
    """Compare one run of inputs (EvalPlus's "base" or "plus" set) with the expected outputs.
    The status is that of the first failing input; ``passed`` counts every input."""
    import numpy as np
    from evalplus.eval import _special_oracle as special

    atol = oracle.atol
    passed, first_failure = 0, None
    for i, (outcome, exp) in enumerate(zip(outcomes, expected, strict=True)):
        failure = _failed_call(outcome, missing)
        if failure is None:
            assert isinstance(outcome, Returned)
            try:
                ok, atol = _output_matches(outcome.value, exp, inputs[i], oracle, atol, np, special)
            except Exception:  # a comparison that blows up on a hostile value is a mismatch
                ok = False
            if not ok:
                failure = Status.FAILED, f"wrong output for input #{i}"
        if failure is None:
            passed += 1
        elif first_failure is None:
            first_failure = failure
    status, detail = first_failure or (Status.PASSED, "")
    return Judgement(status, passed, len(expected), detail)


def _output_matches(
    out: Any, exp: Any, inp: Sequence[Any], oracle: Oracle, atol: float, np: Any, special: Any
) -> tuple[bool, float]:
    """EvalPlus's per-input rule; returns (match, atol for the next input), since EvalPlus
    keeps the tolerance it switched on for floats."""
    entry = oracle.entry_point
    exact = out == exp
    if oracle.dataset == "humaneval" and entry == "find_zero":
        return abs(special._poly(*inp, out)) <= atol, atol
    if oracle.dataset == "mbpp":
        if entry == "are_equivalent":
            exact = True
        elif entry == "sum_div":
            exact = exact or out == 0
        elif entry == "surface_Area":
            exact = exact or abs(out - special._surface_Area(*inp)) <= atol
        elif entry == "digit_distance_nums":
            exact = exact or out == special._digit_distance_nums(*inp)
        elif entry in special.MBPP_OUTPUT_SET_EQ_TASKS:
            exact = set(out) == set(exp)
        elif entry in special.MBPP_OUTPUT_NOT_NONE_TASKS:
            exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if atol == 0 and _is_floats(exp):
        atol = 1e-6  # EvalPlus enforces a tolerance for float outputs
    if not exact and atol != 0:
        if type(out) is not type(exp):
            return False, atol
        if isinstance(exp, list | tuple) and len(out) != len(exp):
            return False, atol
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol)), atol
    return bool(exact), atol


# ----------------------------------------------------------------------------------------
# Replayed assertions (runs in a DeadlinePool worker)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssertTests:
    """A benchmark's own test code. ``code``: trusted reference code (defines the helpers the
    test uses, e.g. HumanEval's ``poly``); ``setup``: fixture code run after it; ``script``:
    the test statements; ``wrap``: the functions under test."""

    code: str
    setup: str
    script: str
    wrap: tuple[str, ...]
    seed: int = 0


class _Unfinished(BaseException):
    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class _Diverged(BaseException):
    """The test asked for a call the reference run never made (its path depends on an output
    that differs), so there is no recorded answer to give."""


def _rebuild_exception(raised: Raised) -> Exception:
    cls = getattr(builtins, raised.type_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError
    try:
        exc = cls(raised.message)
    except Exception:
        exc = RuntimeError(raised.message)
    exc.from_code_under_test = raised.type_name  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class _CompiledTests:
    code: Any
    setup: Any
    statements: tuple[tuple[int, bool, Any], ...]  # (line, is a test, code), one per statement


@functools.lru_cache(maxsize=1024)
def _compiled(tests: AssertTests) -> _CompiledTests:
    """A problem's test code, compiled once for all its samples."""
    statements = tuple(
        (
            statement.lineno,
            isinstance(statement, ast.Assert | ast.Expr),
            compile(ast.Module([statement], type_ignores=[]), "<test>", "exec"),
        )
        for statement in ast.parse(tests.script).body
    )
    return _CompiledTests(
        compile(tests.code, "<reference>", "exec"),
        compile(tests.setup, "<test setup>", "exec") if tests.setup else None,
        statements,
    )


def replay(
    item: tuple[AssertTests, Sequence[RecordedCall], Sequence[Outcome | None], Status],
) -> Judgement:
    """Run the test statements with each function under test replaced by a stub that returns
    the sandboxed outputs. One statement's failure does not stop the next."""
    tests, recorded, outcomes, missing = item
    compiled = _compiled(tests)
    namespace: dict[str, Any] = {"__name__": "solution"}
    exec(compiled.code, namespace)
    if compiled.setup is not None:
        exec(compiled.setup, namespace)
    used = [False] * len(recorded)

    def stub_for(name: str) -> Any:
        def stub(*args: Any, **kwargs: Any) -> Any:
            try:
                key = (encode(list(args), namespace), encode(kwargs, namespace))
            except (CodecError, RecursionError):
                raise _Diverged(f"{name}: arguments cannot be matched") from None
            for j, call in enumerate(recorded):
                if (
                    not used[j]
                    and call.fn == name
                    and call.args == key[0]
                    and call.kwargs == key[1]
                ):
                    used[j] = True
                    outcome = outcomes[j]
                    failure = _failed_call(outcome, missing)
                    if isinstance(outcome, Raised):
                        raise _rebuild_exception(outcome)
                    if failure is not None:
                        raise _Unfinished(*failure)
                    return decode(outcome.encoded, namespace)  # type: ignore[union-attr]
            raise _Diverged(f"{name} called with arguments the reference run never used")

        return stub

    for name in tests.wrap:
        namespace[name] = stub_for(name)
    random.seed(tests.seed)
    passed = total = 0
    first_failure: tuple[Status, str] | None = None
    for line, is_test, statement in compiled.statements:
        try:
            exec(statement, namespace)
            failure = None
        except _Unfinished as e:
            failure = e.status, str(e)
        except _Diverged as e:
            failure = Status.FAILED, f"test path diverged: {e}"
        except AssertionError:
            failure = Status.FAILED, f"assertion failed at line {line}"
        except Exception as e:
            origin = getattr(e, "from_code_under_test", None)
            if origin is not None:
                status = Status.MEMORY if origin == "MemoryError" else Status.ERROR
                failure = status, f"raised {origin}: {e}"[:300]
            else:  # the test itself broke on the returned value (a wrong type, say)
                failure = Status.FAILED, f"test failed on the output: {type(e).__name__}: {e}"[:300]
        if is_test or failure is not None:
            total += 1
            passed += failure is None
        if failure is not None and first_failure is None:
            first_failure = failure
    status, detail = first_failure or (Status.PASSED, "")
    return Judgement(status, passed, total, detail)


class _ReplayTimeout(BaseException):
    pass


def _on_replay_alarm(signum: int, frame: object) -> None:
    raise _ReplayTimeout()


def _replay_here(item: tuple[Any, ...], timeout: float) -> Judgement:
    """One replay in this process, under a timer, with its prints and warnings swallowed (a
    test that prints must not write into ``--json`` output)."""
    quiet = io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
            contextlib.redirect_stderr(quiet),
        ):
            warnings.simplefilter("ignore")  # old benchmark code compiles with escape warnings
            return replay(item)  # type: ignore[arg-type]
    except _ReplayTimeout:
        return Judgement(Status.FAILED, 0, 1, "test replay timed out")
    except Exception as e:  # noqa: BLE001 - a broken replay fails that sample only
        return Judgement(Status.FAILED, 0, 1, f"test replay failed: {type(e).__name__}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def replays_here() -> bool:
    """Whether ``replay_all`` replays in this thread: the main thread, with its interval timer
    free, can interrupt a replay that runs too long."""
    return (
        threading.current_thread() is threading.main_thread()
        and not signal.getitimer(signal.ITIMER_REAL)[0]
    )


def replay_all(
    items: Sequence[tuple[AssertTests, Sequence[RecordedCall], Sequence[Outcome | None], Status]],
    *,
    timeout: float,
    workers: int = 2,
    on_done: Callable[[int], None] | None = None,
) -> list[Judgement]:
    """Replay every item. The test code is the benchmark's own and the values are plain
    data, so it runs right here under a per-item timer when this is the main thread (no
    process start-up); elsewhere, where no timer can interrupt it, in a ``DeadlinePool``."""
    failed = Judgement(Status.FAILED, 0, 1, "test replay failed")
    if not replays_here():
        from pareto_bench.execution.pool import DeadlinePool

        with DeadlinePool(min(workers, len(items))) as pool:
            return pool.map(
                replay,
                items,
                timeout=timeout,
                on_failure=lambda item, reason: failed,
                on_done=on_done,
            )
    judgements = []
    state = random.getstate()
    previous = signal.signal(signal.SIGALRM, _on_replay_alarm)
    try:
        for index, item in enumerate(items):
            judgements.append(_replay_here(item, timeout))
            if on_done is not None:
                on_done(index)
    finally:
        signal.signal(signal.SIGALRM, previous)
        random.setstate(state)  # the tests seed the global random module
    return judgements

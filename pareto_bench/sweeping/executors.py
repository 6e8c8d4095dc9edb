"""The executor seam: where and how one trial body runs.

- ``subprocess`` (default): a fresh Python process per trial. A crash, an OOM kill or a hang
  of the trial cannot take the sweep down, the timeout is a hard kill of the process group,
  and the child dies with its worker (so a SIGKILLed sweep leaves no orphan training).
- ``inprocess``: the body runs in the worker itself. Cheapest; the timeout is checked
  between RL steps only.

Both raise ``TrialFailed`` with a one-line reason; anything else is a harness bug.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Protocol, runtime_checkable

from pareto_bench.records import EvalRecord, TrainStepRecord, from_dict, read_jsonl
from pareto_bench.registry import Registry, lazy
from pareto_bench.sweeping.trial import (
    DEFAULT_BODY,
    EVAL_FILE,
    StepCallback,
    TrialFailed,
    TrialSpec,
    TrialTimeout,
    execute,
    failure_reason,
)

__all__ = ["EXECUTORS", "Executor", "InProcessExecutor", "SubprocessExecutor", "make_executor"]


@runtime_checkable
class Executor(Protocol):
    def run(self, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
        """Run one trial and return its eval records; raise ``TrialFailed`` if it fails.
        ``on_step`` receives each RL step's record as it happens."""
        ...


EXECUTORS: Registry[Any] = Registry("executor")


def make_executor(name: str, body: str = DEFAULT_BODY) -> Executor:
    """The executor registered as ``name``, running the trial body ``"module:attr"``."""
    return EXECUTORS.get(name)(body)


@EXECUTORS.register("inprocess")
class InProcessExecutor:
    def __init__(self, body: str = DEFAULT_BODY) -> None:
        self.body = body

    def run(self, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
        body = lazy(self.body)()
        deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else None

        def step(record: TrainStepRecord) -> None:
            on_step(record)
            if deadline is not None and time.monotonic() > deadline:
                raise TrialTimeout(f"timed out after {spec.timeout_s:g} s (executor.timeout_s)")

        try:
            return execute(body, spec, step)
        except TrialFailed:
            raise
        except Exception as e:
            raise TrialFailed(failure_reason(e), traceback.format_exc()) from e


@EXECUTORS.register("subprocess")
class SubprocessExecutor:
    """Runs ``python -m pareto_bench.sweeping.child BODY``: the spec goes in on stdin, events
    (one JSON object per line: ``step``, then ``done`` or ``failed``) come back on stdout."""

    STDERR_TAIL_LINES = 40

    def __init__(self, body: str = DEFAULT_BODY) -> None:
        self.body = body

    def run(self, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pareto_bench.sweeping.child", self.body],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(spec),
            start_new_session=True,  # its own process group, killed as a whole on timeout
            text=True,
        )
        outcome: dict[str, Any] = {}
        stderr_tail: collections.deque[str] = collections.deque(maxlen=self.STDERR_TAIL_LINES)
        readers = [
            threading.Thread(
                target=_read_events, args=(proc.stdout, on_step, outcome), daemon=True
            ),
            threading.Thread(target=stderr_tail.extend, args=(proc.stderr,), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(spec.to_dict()))
            proc.stdin.close()
            proc.wait(timeout=spec.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise TrialTimeout(
                f"timed out after {spec.timeout_s:g} s (executor.timeout_s)"
            ) from None
        except BaseException:  # Ctrl-C or a worker error: never leave the trial running
            _kill_group(proc)
            raise
        finally:
            for reader in readers:
                reader.join(timeout=10)
        if outcome.get("event") == "done":
            return read_jsonl(os.path.join(spec.trial_dir, EVAL_FILE), EvalRecord)
        if outcome.get("event") == "failed":
            raise TrialFailed(
                str(outcome.get("reason", "unknown error")), str(outcome.get("detail", ""))
            )
        last = next((line.strip() for line in reversed(stderr_tail) if line.strip()), "")
        raise TrialFailed(
            f"the trial process exited with status {proc.returncode}"
            + (
                f" ({_signal_name(proc.returncode)})"
                if proc.returncode and proc.returncode < 0
                else ""
            )
            + (f": {last[:300]}" if last else ""),
            "".join(stderr_tail),
        )


def _read_events(stream: Any, on_step: StepCallback, outcome: dict[str, Any]) -> None:
    for line in stream:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "step":
            try:
                on_step(from_dict(TrainStepRecord, event["record"]))
            except Exception as e:  # a display or tracking hiccup must not stop the stream
                print(f"warning: step callback failed ({failure_reason(e)})", file=sys.stderr)
        else:
            outcome.update(event)


def _child_env(spec: TrialSpec) -> dict[str, str]:
    env = dict(os.environ)
    # The child imports the body exactly as this process would.
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if spec.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(spec.threads)
    return env


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def run_child(body_ref: str) -> int:
    """The child side (``python -m pareto_bench.sweeping.child``): see SubprocessExecutor."""
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the body prints goes to stderr, never into the event stream
    _die_with_parent()

    def emit(event: dict[str, Any]) -> None:
        events.write(json.dumps(event) + "\n")

    try:
        spec = TrialSpec.from_dict(json.loads(sys.stdin.read()))
        execute(lazy(body_ref)(), spec, lambda r: emit({"event": "step", "record": _as_dict(r)}))
    except BaseException as e:
        emit({"event": "failed", "reason": failure_reason(e), "detail": traceback.format_exc()})
        return 1
    emit({"event": "done"})
    return 0


def _as_dict(record: TrainStepRecord) -> dict[str, Any]:
    from pareto_bench.records import to_dict

    return to_dict(record)


def _die_with_parent() -> None:
    """Exit when the worker dies, even by SIGKILL: the kernel's parent-death signal where
    Linux offers it, and a watchdog on the parent pid everywhere."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()

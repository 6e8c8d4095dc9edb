"""The ``subprocess`` executor (the default): a fresh Python process per trial. A crash, an OOM
kill or a hang of the trial cannot take the sweep down, the timeout is a hard kill of the
process group, and the child dies with its worker (so a SIGKILLed sweep leaves no orphan
training). With ``processes_per_trial`` (CPU, gloo) or ``gpus_per_trial`` above 1 the process
is ``torchrun``, and the trial trains and evaluates on every rank."""

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
from typing import Any

from pydantic import Field

from pareto_bench.core.files import EVAL_FILE, TRIAL_LOG_FILE, TRIAL_SPEC_FILE
from pareto_bench.core.records import EvalRecord, TrainStepRecord, from_dict, read_jsonl
from pareto_bench.core.registry import lazy
from pareto_bench.core.schema import StrictModel
from pareto_bench.sweep.executors import EXECUTORS, SLOT_ENV
from pareto_bench.sweep.trial import (
    DEFAULT_BODY,
    StepCallback,
    TrialFailed,
    TrialSpec,
    TrialTimeout,
    execute,
    failure_reason,
)


class SubprocessOptions(StrictModel):
    processes_per_trial: int = Field(
        1, ge=1, description="Processes per trial on CPUs (torchrun with gloo when above 1)."
    )
    gpus_per_trial: int = Field(
        0, ge=0, description="GPUs per trial, one process each (torchrun with NCCL when above 1)."
    )

    @property
    def processes(self) -> int:
        return max(self.processes_per_trial, self.gpus_per_trial)


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


@EXECUTORS.register("subprocess")
class SubprocessExecutor:
    """Runs ``python -m pareto_bench.sweep.child BODY TRIAL_SPEC_FILE`` (under ``torchrun`` for
    several processes): the spec is a JSON file in the trial directory, events (one JSON object
    per line: ``step``, then ``done`` or ``failed``) come back on stdout, from rank 0 (and
    ``failed`` from any rank)."""

    Options = SubprocessOptions
    # A failure's detail keeps the head of the child's stderr (under torchrun the first rank's
    # traceback often comes first) and its tail (the launcher's summary).
    STDERR_HEAD_LINES = 40
    STDERR_TAIL_LINES = 40
    EVENTS_GRACE_S = 120  # how long the child's events may lag behind its exit

    def __init__(self, body: str = DEFAULT_BODY, options: SubprocessOptions | None = None) -> None:
        self.body = body
        self.options = options or SubprocessOptions()

    def slots(self, threads: int | None) -> int:
        """How many trials fit on this machine at once."""
        if self.options.gpus_per_trial:
            return max(1, len(visible_gpus()) // self.options.gpus_per_trial)
        return max(1, (os.cpu_count() or 1) // (self.options.processes * (threads or 1)))

    def slot_env(self) -> dict[str, str]:
        """This worker's slot's GPUs (its trials see only those)."""
        if not self.options.gpus_per_trial:
            return {}
        g = self.options.gpus_per_trial
        slot = int(os.environ.get(SLOT_ENV, "0"))
        return {"CUDA_VISIBLE_DEVICES": ",".join(visible_gpus()[slot * g : (slot + 1) * g])}

    def command(self, spec_file: str) -> list[str]:
        child = ["-m", "pareto_bench.sweep.child", self.body, spec_file]
        if self.options.processes == 1:
            return [sys.executable, *child]
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        return [*launcher, f"--nproc-per-node={self.options.processes}", *child]

    def run(self, spec: TrialSpec, on_step: StepCallback) -> list[EvalRecord]:
        os.makedirs(spec.trial_dir, exist_ok=True)
        spec_file = os.path.join(spec.trial_dir, TRIAL_SPEC_FILE)
        with open(spec_file, "w") as f:
            json.dump(spec.to_dict(), f)
        proc = subprocess.Popen(
            self.command(spec_file),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**_child_env(spec), **self.slot_env()},
            start_new_session=True,  # its own process group, killed as a whole on timeout
            text=True,
        )
        outcome: dict[str, Any] = {}
        ended = threading.Event()  # the child's last event was read, or its stdout closed
        stderr = StderrExcerpt(self.STDERR_HEAD_LINES, self.STDERR_TAIL_LINES)
        readers = [
            threading.Thread(
                target=_read_events, args=(proc.stdout, on_step, outcome, ended), daemon=True
            ),
            threading.Thread(
                target=_keep_log,
                args=(proc.stderr, stderr, os.path.join(spec.trial_dir, TRIAL_LOG_FILE)),
                daemon=True,
            ),
        ]
        for reader in readers:
            reader.start()
        try:
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
            # The child has exited, but its last events may still be in the pipe behind slow
            # step callbacks on a busy machine: the event reader gets time to reach them (a
            # finished trial read as "exited without a result" was seen at 10 s under load).
            # It stops at the last event, not at EOF: a process the body forked may hold the
            # pipe open.
            ended.wait(timeout=self.EVENTS_GRACE_S)
            readers[1].join(timeout=10)
        if outcome.get("event") == "done":
            return read_jsonl(os.path.join(spec.trial_dir, EVAL_FILE), EvalRecord)
        if outcome.get("event") == "failed":
            raise TrialFailed(
                str(outcome.get("reason", "unknown error")), str(outcome.get("detail", ""))
            )
        lines = [*stderr.head, *stderr.tail]
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        raise TrialFailed(
            f"the trial process exited with status {proc.returncode}"
            + (
                f" ({_signal_name(proc.returncode)})"
                if proc.returncode and proc.returncode < 0
                else ""
            )
            + (f": {last[:300]}" if last else ""),
            stderr.text(),
        )


class StderrExcerpt:
    """The first ``head`` and the last ``tail`` lines of a stream, and how many were between."""

    def __init__(self, head: int, tail: int) -> None:
        self.head: list[str] = []
        self.tail: collections.deque[str] = collections.deque(maxlen=tail)
        self.head_lines = head
        self.skipped = 0

    def add(self, line: str) -> None:
        if len(self.head) < self.head_lines:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.skipped += 1
        self.tail.append(line)

    def text(self) -> str:
        gap = [f"[... {self.skipped} lines left out, see trial.log ...]\n"] if self.skipped else []
        return "".join([*self.head, *gap, *self.tail])


def _keep_log(stream: Any, excerpt: StderrExcerpt, path: str) -> None:
    """The trial's stderr (every rank's, under torchrun) to ``trial.log``, and its head and tail."""
    with open(path, "a") as log:
        for line in stream:
            log.write(line)
            excerpt.add(line)


def _read_events(
    stream: Any, on_step: StepCallback, outcome: dict[str, Any], ended: threading.Event
) -> None:
    try:
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
            elif outcome.get("event") != "failed":  # the first rank to fail names the cause
                outcome.update(event)
                ended.set()
    finally:
        ended.set()


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


def run_child(body_ref: str, spec_file: str | None = None) -> int:
    """The child side (``python -m pareto_bench.sweep.child``): see SubprocessExecutor. The
    spec comes from ``spec_file``, or from stdin without one."""
    from pareto_bench.core.placement import World

    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the body prints goes to stderr, never into the event stream
    world = World.from_env()
    # Under torchrun the parent is its agent, which stops its ranks itself; its worker threads
    # come and go, and a parent-death signal follows the thread that started the process.
    _die_with_parent(kernel_signal=not world.distributed)
    main = world.is_main

    def emit(event: dict[str, Any]) -> None:
        if main or event["event"] == "failed":
            events.write(json.dumps(event) + "\n")

    try:
        with open(spec_file) if spec_file else contextlib.nullcontext(sys.stdin) as source:
            spec = TrialSpec.from_dict(json.loads(source.read()))
        execute(lazy(body_ref)(), spec, lambda r: emit({"event": "step", "record": _as_dict(r)}))
        world.finish()
        if world.distributed:  # each rank says it ran, in trial.log
            print(f"rank {world.rank} of {world.size}: done", file=sys.stderr, flush=True)
    except BaseException as e:
        emit({"event": "failed", "reason": failure_reason(e), "detail": traceback.format_exc()})
        return 1
    emit({"event": "done"})
    return 0


def _as_dict(record: TrainStepRecord) -> dict[str, Any]:
    from pareto_bench.core.records import to_dict

    return to_dict(record)


def _die_with_parent(kernel_signal: bool = True) -> None:
    """Exit when the worker dies, even by SIGKILL: the kernel's parent-death signal where
    Linux offers it (``kernel_signal``), and a watchdog on the parent pid everywhere."""
    parent = os.getppid()
    try:
        import ctypes

        if kernel_signal:
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

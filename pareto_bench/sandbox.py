"""Untrusted code execution: one fresh process per sample, and verdicts decided out here.

Each sample runs in its own process (``sandbox_child.py``) with:

- a scrubbed environment and a fresh work directory (a size-limited tmpfs when namespaces work);
- rlimits on CPU time, address space, file size, open files (and processes when not root);
- a wall-clock deadline after which the whole process group is killed, and with it the PID
  namespace, so even processes that left the group die;
- where the OS allows ``unshare``: new mount, PID, network, IPC and UTS namespaces. There is no
  network (only a loopback that is down), ``/proc`` shows only the sample's own processes,
  every mount is read-only except the work directory, answer keys and the home directory are
  hidden, and all capabilities are dropped;
- an audit hook that refuses (and reports) process creation, signals, sockets, ctypes, heap
  and frame introspection and writes outside the work directory: defence in depth behind the
  namespaces, and the guard on machines that refuse namespaces.

What comes back is *data*: one JSON line per call with the call's return value, read through a
pipe with a byte cap and decoded by ``sandbox_child.decode`` (JSON only; nothing is unpickled
or evaluated). Stdout and stderr go to capped files. Exit status 0 means nothing here: a
sample passes only when the trusted side finds every expected output among those lines.
See ``pareto_bench.tasks.code_judge`` for the comparisons.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from pareto_bench.sandbox_child import CodecError, decode, encode

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")


class Status(StrEnum):
    """How one sample ended. Only ``PASSED`` is a pass."""

    PASSED = "passed"
    FAILED = "failed"  # ran, but an output or assertion was wrong
    ERROR = "error"  # raised an exception (or did not compile, or lacked the function)
    TIMEOUT = "timeout"  # a call or the whole sample ran out of (wall or CPU) time
    MEMORY = "memory"  # ran out of its address-space limit
    CRASHED = "crashed"  # the process ended before reporting every result (exit, signal)
    OUTPUT_LIMIT = "output_limit"  # flooded stdout/stderr or the result channel
    ESCAPE = "escape"  # tried an operation the sandbox refuses (network, fork, kill, ...)
    NO_CODE = "no_code"  # the response held no code at all


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sample. ``wall_seconds`` bounds the whole process; each call
    also has its own limit (``Call.limit``)."""

    wall_seconds: float = 10.0
    cpu_seconds: float | None = None  # default: the wall limit
    memory_mb: int = 2048
    file_mb: int = 8  # largest file it may write, stdout and stderr included
    disk_mb: int = 64  # size of its work directory (a tmpfs) when namespaces are available
    max_procs: int = 16  # process/thread headroom (enforced for non-root users only)
    result_mb: int = 64  # cap on the result channel
    tail_chars: int = 2000  # how much of stdout/stderr to keep for reading failures


@dataclass(frozen=True)
class Call:
    """One call of a function defined by the code under test. ``args``/``kwargs`` are already
    encoded with ``sandbox_child.encode`` (JSON-ready), so jobs can be cached as they are."""

    fn: str
    args: Any  # encoded list
    kwargs: Any = field(default_factory=lambda: {"t": "dict", "v": []})
    limit: float = 5.0  # seconds for this call
    digest: bool = False  # send the output's digest, not the output (large, exact-match outputs)

    @staticmethod
    def of(
        fn: str, args: Sequence[Any], kwargs: dict[str, Any] | None = None, limit: float = 5.0
    ) -> Call:
        return Call(fn, encode(list(args)), encode(dict(kwargs or {})), limit)


@dataclass(frozen=True)
class Program:
    """What to run. ``mode="call"``: load ``code`` (then ``setup``) and make ``calls``.
    ``mode="record"``: load trusted reference ``code`` and ``setup``, then run the trusted
    test ``script`` and record every top-level call to the functions named in ``wrap``."""

    code: str
    calls: tuple[Call, ...] = ()
    setup: str = ""
    mode: str = "call"
    script: str = ""
    wrap: tuple[str, ...] = ()
    seed: int = 0
    digest_over: int = 0  # reference runs: outputs larger than this (bytes) come back as digests


@dataclass(frozen=True)
class Returned:
    """A call returned. ``encoded`` is the validated wire form; ``value`` decodes a fresh copy
    each time, so no consumer can change what another one sees."""

    encoded: Any
    seconds: float = 0.0

    @property
    def value(self) -> Any:
        return decode(self.encoded)


@dataclass(frozen=True)
class Raised:
    type_name: str
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class CallTimedOut:
    seconds: float = 0.0


Outcome = Returned | Raised | CallTimedOut


@dataclass(frozen=True)
class RecordedCall:
    fn: str
    args: Any  # encoded
    kwargs: Any  # encoded
    seconds: float


@dataclass
class Execution:
    """Everything observed about one run. ``outcomes[i]`` is None when call i never reported."""

    outcomes: list[Outcome | None]
    finished: bool = False  # the harness reached its end (a claim; used only for diagnostics)
    timed_out: bool = False  # killed at the wall-clock deadline
    output_limit: bool = False
    returncode: int | None = None
    load_error: tuple[str, str] | None = None  # the code did not load: (type, message)
    violations: list[str] = field(default_factory=list)
    isolation: dict[str, bool] = field(default_factory=dict)
    recorded: list[RecordedCall] = field(default_factory=list)  # record mode
    script_error: tuple[str, str] | None = None  # record mode: the test script raised
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    def missing_status(self) -> Status:
        """The status of a call that never reported: why the process stopped early."""
        if self.output_limit:
            return Status.OUTPUT_LIMIT
        if self.timed_out or self.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return Status.TIMEOUT
        if self.returncode == -signal.SIGXFSZ:
            return Status.OUTPUT_LIMIT
        return Status.CRASHED


# ----------------------------------------------------------------------------------------
# Isolation: decided once per process
# ----------------------------------------------------------------------------------------


@cache
def namespace_prefix() -> tuple[str, ...]:
    """The ``unshare`` command line that gives a sample its own namespaces, or () when this
    machine refuses them (then rlimits and the audit hook are the guards)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    prefix = [
        unshare,
        "--mount",
        "--mount-proc",
        "--net",
        "--pid",
        "--ipc",
        "--uts",
        "--fork",
        "--kill-child",
    ]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return tuple(prefix) if ok else ()


def default_hidden_paths(extra: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """Paths the code under test must not read: ``extra`` (answer keys, caches) and every
    entry of the home directory except those that hold the Python installation."""
    keep = {
        os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.executable)
    }
    hidden = {os.path.realpath(p) for p in extra if os.path.exists(p)}
    home = Path.home()
    try:
        entries = list(home.iterdir()) if home.is_dir() else []
    except OSError:
        entries = []
    for entry in entries:
        real = os.path.realpath(entry)
        if not any(k == real or k.startswith(real + os.sep) for k in keep):
            hidden.add(real)
    # Never hide a directory that holds the interpreter or the work area.
    tmp = os.path.realpath(tempfile.gettempdir())
    return sorted(
        p for p in hidden if not any(k == p or k.startswith(p + os.sep) for k in (*keep, tmp))
    )


def _extra_import_paths() -> list[str]:
    """site-packages, so that code under test may import numpy and friends (the child runs
    with ``-S``, which skips them, and with them the project's own editable install)."""
    paths = []
    for p in [*site.getsitepackages(), site.getusersitepackages()]:
        if p and os.path.isdir(p):
            paths.append(p)
    return paths


def _scrubbed_env(work_dir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": work_dir,
        "TMPDIR": work_dir,
        "PYTHONHASHSEED": "0",  # set iteration order is part of some outputs: keep it reproducible
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


# ----------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------


def run(
    program: Program, limits: Limits = Limits(), *, hidden: Sequence[str] | None = None
) -> Execution:
    """Run one program in a fresh sandbox process and report what it did. Never raises for
    anything the program does; a failure of the machine itself (no temp space) does raise."""
    root = tempfile.mkdtemp(prefix="pareto-sandbox-")
    try:
        return _run_in(
            root, program, limits, default_hidden_paths() if hidden is None else list(hidden)
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_many(
    programs: Sequence[Program],
    limits: Limits | Sequence[Limits] = Limits(),
    *,
    workers: int = 2,
    hidden: Sequence[str] | None = None,
    on_done: Callable[[int, Execution], None] | None = None,
) -> list[Execution]:
    """Run programs with at most ``workers`` at a time; results in input order. One
    program's crash or timeout never affects another's result."""
    per_program = [limits] * len(programs) if isinstance(limits, Limits) else list(limits)
    if len(per_program) != len(programs):
        raise ValueError("run_many: one Limits per program, or a single Limits for all")
    hidden_paths = default_hidden_paths() if hidden is None else list(hidden)
    results: list[Execution | None] = [None] * len(programs)

    def one(index: int) -> None:
        results[index] = run(programs[index], per_program[index], hidden=hidden_paths)
        if on_done is not None:
            on_done(index, results[index])

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(one, i) for i in range(len(programs))]:
            future.result()
    return results  # type: ignore[return-value]


def _job(program: Program, limits: Limits, work_dir: str, hidden: list[str]) -> dict[str, Any]:
    cpu = limits.cpu_seconds if limits.cpu_seconds is not None else limits.wall_seconds
    job: dict[str, Any] = {
        "mode": program.mode,
        "code": program.code,
        "setup": program.setup,
        "calls": [
            {"fn": c.fn, "args": c.args, "kwargs": c.kwargs, "limit": c.limit, "digest": c.digest}
            for c in program.calls
        ],
        "script": program.script,
        "wrap": list(program.wrap),
        "seed": program.seed,
        "digest_over": program.digest_over,
        "work_dir": work_dir,
        "hidden": hidden,
        "namespaces": bool(namespace_prefix()),
        "extra_paths": _extra_import_paths(),
        "limits": {
            "cpu_seconds": max(1, int(cpu + 0.999)),
            "memory_bytes": limits.memory_mb << 20,
            "file_bytes": limits.file_mb << 20,
            "disk_bytes": limits.disk_mb << 20,
            "nproc": _nproc_limit(limits.max_procs),
        },
    }
    return job


def _nproc_limit(headroom: int) -> int:
    """RLIMIT_NPROC counts every process of the real user, and root is exempt from it: for
    other users allow what they run now plus ``headroom``."""
    if os.geteuid() == 0:
        return 0
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count + headroom


def _run_in(root: str, program: Program, limits: Limits, hidden: list[str]) -> Execution:
    work_dir = os.path.join(root, "work")
    os.mkdir(work_dir, 0o700)
    job_path = os.path.join(root, "job.json")
    with open(job_path, "w", encoding="utf-8") as f:
        json.dump(_job(program, limits, work_dir, hidden), f)
    out_path, err_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
    read_fd, write_fd = os.pipe()
    command = [
        *namespace_prefix(),
        sys.executable,
        "-S",
        "-s",
        "-B",
        str(CHILD_SCRIPT),
        job_path,
        str(write_fd),
    ]
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(write_fd,),
                cwd=work_dir,
                env=_scrubbed_env(work_dir),
                start_new_session=True,  # its own process group, killed as a whole
            )
        finally:
            os.close(write_fd)
    reader = _ResultReader(limits.result_mb << 20)
    deadline = start + limits.wall_seconds
    exited = False
    try:
        timed_out = not reader.read_until(read_fd, deadline)
        if not timed_out:  # the channel closed: give the process a moment to exit by itself
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
        exited = proc.poll() is not None
    finally:
        os.close(read_fd)
        _kill_group(proc)
    execution = reader.execution(len(program.calls))
    execution.timed_out = timed_out
    # Only the exit status of a process that ended by itself says anything.
    execution.returncode = proc.returncode if exited else None
    execution.seconds = time.monotonic() - start
    cap = limits.file_mb << 20
    execution.output_limit = reader.overflow or any(
        os.path.getsize(p) >= cap for p in (out_path, err_path)
    )
    execution.stdout = _tail(out_path, limits.tail_chars)
    execution.stderr = _tail(err_path, limits.tail_chars)
    return execution


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the sample's whole process group (with namespaces, its PID 1 goes with it and the
    kernel kills everything else in the namespace), then reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the leader is not reaped yet: the group id is ours
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - only an unkillable process
        proc.kill()
        proc.wait()


def _tail(path: str, chars: int) -> str:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 4 * chars))
        return f.read().decode("utf-8", "replace")[-chars:]


class _ResultReader:
    """Reads the result pipe until EOF or a deadline, with a byte cap, and parses each line
    as it completes. Lines that are not valid JSON objects are skipped."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self.overflow = False
        self.partial: list[bytes] = []  # the current, unfinished line
        self.messages: list[dict[str, Any]] = []

    def read_until(self, fd: int, deadline: float) -> bool:
        """False when the deadline passed before EOF."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return True
            self.total += len(chunk)
            if self.total > self.max_bytes:
                self.overflow = True
                return True
            if b"\n" not in chunk:
                self.partial.append(chunk)
                continue
            *lines, rest = b"".join([*self.partial, chunk]).split(b"\n")
            self.partial = [rest] if rest else []
            for line in lines:
                self._parse(line)

    def _parse(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return
        if isinstance(message, dict):
            self.messages.append(message)

    def execution(self, num_calls: int) -> Execution:
        outcomes: list[Outcome | None] = [None] * num_calls
        execution = Execution(outcomes=outcomes)
        for position, message in enumerate(self.messages):
            if "ready" in message:
                # Trusted only as the very first line: it is written before untrusted code runs.
                if position == 0 and isinstance(message["ready"], dict):
                    execution.isolation = {str(k): bool(v) for k, v in message["ready"].items()}
            elif "i" in message:
                index = message["i"]
                if type(index) is int and 0 <= index < num_calls and outcomes[index] is None:
                    outcomes[index] = _outcome(message)
            elif "violation" in message:
                execution.violations.append(str(message["violation"])[:300])
            elif "call" in message:
                recorded = _recorded(message)
                if recorded is not None:
                    execution.recorded.append(recorded)
            elif "load" in message and execution.load_error is None:
                execution.load_error = _error_pair(message["load"])
            elif "script" in message and execution.script_error is None:
                execution.script_error = _error_pair(message["script"])
            elif "record_error" in message and execution.script_error is None:
                execution.script_error = ("RecordError", str(message["record_error"])[:500])
            elif message.get("done") is True:
                execution.finished = True
        return execution


def _seconds(message: dict[str, Any]) -> float:
    s = message.get("s", 0.0)
    return float(s) if type(s) in (int, float) else 0.0


def _error_pair(value: Any) -> tuple[str, str]:
    if isinstance(value, list) and len(value) == 2:
        return str(value[0])[:100], str(value[1])[:500]
    return "Error", str(value)[:500]


def _outcome(message: dict[str, Any]) -> Outcome:
    seconds = _seconds(message)
    if "ok" in message:
        try:
            decode(message["ok"])  # validate once; consumers decode their own copies
        except (CodecError, RecursionError, MemoryError) as e:
            return Raised("MalformedOutput", str(e)[:200], seconds)
        return Returned(message["ok"], seconds)
    if message.get("timeout") is True:
        return CallTimedOut(seconds)
    type_name, text = _error_pair(message.get("err"))
    return Raised(type_name, text, seconds)


def _recorded(message: dict[str, Any]) -> RecordedCall | None:
    call = message["call"]
    if not (isinstance(call, list) and len(call) == 3 and isinstance(call[0], str)):
        return None
    return RecordedCall(call[0], call[1], call[2], _seconds(message))


def isolation_summary() -> dict[str, Any]:
    """What this machine gives the sandbox, for reports and the bench JSON."""
    execution = run(Program(code="pass"), Limits(wall_seconds=20))
    return {
        "namespaces": bool(namespace_prefix()),
        "root": os.geteuid() == 0,
        "nproc_limit_enforced": os.geteuid() != 0,
        **execution.isolation,
    }

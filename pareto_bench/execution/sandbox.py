"""Untrusted code execution: one fresh process per sample, and verdicts decided out here.

Each sample runs in its own process, forked by a *zygote* (``sandbox_child.zygote``: a clean,
single-threaded process started once and then shared by every batch, so no sample pays for an
interpreter start).
Each sample gets:

- a scrubbed environment and a fresh work directory (a private, size-limited tmpfs as its
  ``/tmp`` when namespaces are available);
- rlimits on CPU time, address space, file size, open files (and processes when not root);
- a wall-clock deadline after which its whole process group is killed; with namespaces it is
  PID 1 of its own PID namespace, so its death takes every process it started with it;
- where the OS allows: new mount, PID, network, IPC and UTS namespaces (through a user
  namespace for non-root users). There is no network (only a loopback that is down),
  ``/proc`` shows only the sample's own processes, every mount is read-only except its
  ``/tmp``, answer keys and the home directory are hidden, and all capabilities are dropped;
- an audit hook that refuses (and reports) process creation, signals, sockets, foreign
  calls through ctypes, heap introspection and writes outside the work directory: defence
  in depth behind the namespaces, and the guard on machines that refuse namespaces.

What comes back is *data*: one JSON line per call with the call's return value, read through a
pipe with a byte cap and decoded by ``codec.decode`` (JSON only; nothing is unpickled
or evaluated). Stdout and stderr go to capped files. Exit status 0 means nothing here: a
sample passes only when the trusted side finds every expected output among those lines.
See ``pareto_bench.execution.judge`` for the comparisons.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed as futures_as_completed
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from pareto_bench.execution.codec import decode, encode

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
# Ask for namespaces (each sample falls back to the audit hook alone where the OS refuses
# them). Tests turn this off to check that fallback on a machine that has them.
USE_NAMESPACES = True
_NO_KWARGS = {"t": "dict", "v": []}


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
    encoded with ``codec.encode`` (JSON-ready), so jobs can be cached as they are."""

    fn: str
    args: Any  # encoded list
    kwargs: Any = None  # encoded dict; None for no keyword arguments
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
        """Raises ``CodecError`` when the sample sent something malformed."""
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
    # Where the time went (STAGES), for benchmarks: the parent measures its own stages; the
    # sample reports load, run and encode, which only diagnose (the code could forge them).
    stages: dict[str, float] = field(default_factory=dict)

    def missing_status(self) -> Status:
        """The status of a call that never reported: why the process stopped early."""
        if self.output_limit:
            return Status.OUTPUT_LIMIT
        if self.timed_out or self.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return Status.TIMEOUT
        if self.returncode == -signal.SIGXFSZ:
            return Status.OUTPUT_LIMIT
        return Status.CRASHED


STAGES = {
    "create": "fork the sandbox from the zygote",
    "setup": "namespaces, mounts and limits, up to the sample's ready line",
    "wait": "ready, waiting for a free worker slot",
    "load": "the sample executes its code (and test set-up)",
    "run": "inside the calls under test",
    "encode": "the sample encodes the results",
    "parse": "the parent reads and parses the result lines",
}
REPORTED_STAGES = ("load", "run", "encode")  # the sample's own; the parent times the rest


# ----------------------------------------------------------------------------------------
# Isolation: decided once per process
# ----------------------------------------------------------------------------------------


def _user_namespace() -> bool:
    """Non-root users reach the other namespaces through a user namespace of their own."""
    return os.geteuid() != 0


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
    # Never hide a directory that holds the interpreter or the work area, and hide each
    # directory once: a mount per path is most of a sample's set-up.
    tmp = os.path.realpath(tempfile.gettempdir())
    hidden = {
        p for p in hidden if not any(k == p or k.startswith(p + os.sep) for k in (*keep, tmp))
    }
    return sorted(p for p in hidden if not any(p.startswith(q + os.sep) for q in hidden))


def _extra_import_paths() -> list[str]:
    """site-packages, so that code under test may import numpy and friends (the child runs
    with ``-S``, which skips them, and with them the project's own editable install)."""
    paths = []
    for p in [*site.getsitepackages(), site.getusersitepackages()]:
        if p and os.path.isdir(p):
            paths.append(p)
    return paths


def _scrubbed_env() -> dict[str, str]:
    """The zygote's (and so every sample's) environment; each sample sets HOME and TMPDIR to
    its own work directory."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # set iteration order is part of some outputs: keep it reproducible
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@dataclass(frozen=True)
class _Spawned:
    id: int
    pid: Future[int | None]
    status: Future[int | None]


class Zygote:
    """The parent's end of ``sandbox_child.zygote``: one clean process that forks a sandbox per
    sample, a few milliseconds each. Thread-safe, and restarted if it ever dies. One serves
    the whole process (``shared_zygote``); starting one costs about 30 ms of CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._pending: dict[int, tuple[Future[int | None], Future[int | None]]] = {}
        self._next_id = 0
        self._owner = os.getpid()  # a forked child must not close the parent's zygote

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-s", "-B", str(CHILD_SCRIPT), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=_scrubbed_env(),
                cwd="/",
                start_new_session=True,
            )
        self._sock = ours
        threading.Thread(target=self._read, args=(ours, self._pending), daemon=True).start()

    def _read(
        self, sock: socket.socket, pending: dict[int, tuple[Future[int | None], Future[int | None]]]
    ) -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
                message = json.loads(data) if data else None
            except (OSError, ValueError):
                message = None
            if message is None:
                break
            with self._lock:
                futures = pending.get(message.get("id"))
                if futures is not None and "status" in message:
                    del pending[message["id"]]
            if futures is not None:
                which = 0 if "pid" in message else 1
                if not futures[which].done():
                    futures[which].set_result(message.get("pid", message.get("status")))
        with self._lock:  # the zygote is gone: nothing more will be reported
            for pid_future, status_future in pending.values():
                for future in (pid_future, status_future):
                    if not future.done():
                        future.set_result(None)
            pending.clear()

    def spawn(self, job_path: str, fds: Sequence[int]) -> _Spawned:
        """Fork a sample that runs ``job_path`` with (result pipe, stdout, stderr, go pipe)
        ``fds``. Its process id and wait status arrive as futures (None if the zygote died)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            request_id, self._next_id = self._next_id, self._next_id + 1
            spawned = _Spawned(request_id, Future(), Future())
            self._pending[request_id] = (spawned.pid, spawned.status)
            request = {
                "op": "spawn",
                "id": request_id,
                "job": job_path,
                "namespaces": USE_NAMESPACES,
                "user": _user_namespace(),
                "cpus": _cpus(),
            }
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], list(fds))  # type: ignore[arg-type]
            except OSError:
                del self._pending[request_id]
                spawned.pid.set_result(None)
                spawned.status.set_result(None)
        return spawned

    def kill(self, spawned: _Spawned) -> None:
        """Kill a sample's process group if it is still there; the zygote decides, as the only
        one that knows whether the process id is still the sample's."""
        with self._lock, contextlib.suppress(OSError, AttributeError):
            self._sock.send(json.dumps({"op": "kill", "id": spawned.id}).encode())  # type: ignore[union-attr]

    def close(self) -> None:
        if os.getpid() != self._owner:
            return
        with self._lock:
            sock, proc, self._sock, self._proc = self._sock, self._proc, None, None
        if sock is not None:
            # shutdown, not just close: the reader thread's pending recv keeps the socket open
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the zygote sees EOF, kills what is left, exits
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cpus() -> list[int] | None:
    """The cores this thread may run on: its samples get the same ones, whenever the zygote
    was started (a rank pinned to its cores scores on them)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


_shared: list[Zygote] = []
_shared_lock = threading.Lock()


def shared_zygote() -> Zygote:
    """The process's zygote, started on first use and closed at exit. It knows nothing of
    any sample but what each request carries, so every batch can use it."""
    with _shared_lock:
        if not _shared:
            _shared.append(Zygote())
            atexit.register(_shared[0].close)
        return _shared[0]


def _forget_shared_zygote() -> None:
    """In a forked child: the zygote answers the parent only, so start a fresh one when
    needed. Its socket is left alone (closing it would end the parent's zygote)."""
    _shared.clear()


os.register_at_fork(after_in_child=_forget_shared_zygote)


# ----------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------


def run(
    program: Program, limits: Limits = Limits(), *, hidden: Sequence[str] | None = None
) -> Execution:
    """Run one program in a fresh sandbox and report what it did. Never raises for anything
    the program does; a failure of the machine itself (no temp space) does raise."""
    hidden_paths = default_hidden_paths() if hidden is None else list(hidden)
    return _run(program, limits, hidden_paths, shared_zygote(), threading.BoundedSemaphore(1))


def as_completed(
    programs: Sequence[Program],
    limits: Limits | Sequence[Limits] = Limits(),
    *,
    workers: int = 2,
    hidden: Sequence[str] | None = None,
    expected_seconds: Sequence[float] | None = None,
) -> Iterator[tuple[int, Execution]]:
    """Run programs with at most ``workers`` at a time, and yield ``(index, execution)`` in
    the caller's thread as each one finishes, so that the caller judges one while the others
    run. One program's crash or timeout never affects another's result. ``expected_seconds``:
    start the longest first, so that no long one is left to run alone at the end."""
    per_program = [limits] * len(programs) if isinstance(limits, Limits) else list(limits)
    if len(per_program) != len(programs):
        raise ValueError("as_completed: one Limits per program, or a single Limits for all")
    hidden_paths = default_hidden_paths() if hidden is None else list(hidden)
    # ``workers`` samples execute at a time; as many again get their sandboxes set up
    # meanwhile, since set-up mostly waits on the kernel rather than using a CPU.
    slots = threading.BoundedSemaphore(max(1, workers))
    order = range(len(programs))
    if expected_seconds is not None:
        order = sorted(order, key=lambda i: -expected_seconds[i])
    zygote = shared_zygote()
    with ThreadPoolExecutor(max_workers=2 * max(1, workers)) as pool:
        futures = {
            pool.submit(_run, programs[i], per_program[i], hidden_paths, zygote, slots): i
            for i in order
        }
        try:
            for future in futures_as_completed(futures):
                yield futures[future], future.result()
        finally:  # the caller stopped early, or one raised: start nothing more
            pool.shutdown(cancel_futures=True)


def _job(program: Program, limits: Limits, work_dir: str, hidden: list[str]) -> dict[str, Any]:
    cpu = limits.cpu_seconds if limits.cpu_seconds is not None else limits.wall_seconds
    return {
        "mode": program.mode,
        "code": program.code,
        "setup": program.setup,
        "calls": [_call_job(c) for c in program.calls],
        "script": program.script,
        "wrap": list(program.wrap),
        "seed": program.seed,
        "digest_over": program.digest_over,
        "work_dir": work_dir,
        "hidden": hidden,
        "extra_paths": _extra_import_paths(),
        "limits": {
            "cpu_seconds": max(1, int(cpu + 0.999)),
            "memory_bytes": limits.memory_mb << 20,
            "file_bytes": limits.file_mb << 20,
            "disk_bytes": limits.disk_mb << 20,
            "nproc": _nproc_limit(limits.max_procs),
        },
    }


def _call_job(call: Call) -> dict[str, Any]:
    """A call as the sample reads it: empty keyword arguments and a false digest flag are left
    out (HumanEval+ alone makes 124k calls)."""
    job = {"fn": call.fn, "args": call.args, "limit": call.limit}
    if call.kwargs and call.kwargs != _NO_KWARGS:
        job["kwargs"] = call.kwargs
    if call.digest:
        job["digest"] = True
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


@cache
def _scratch_dir() -> str | None:
    """Where each sample's job and output files go: shared memory when there is some, which
    spares the disk (and its journal) a few file operations per sample."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


SETUP_SECONDS = 60.0  # a sandbox that is not ready by then counts as crashed


def _run(
    program: Program, limits: Limits, hidden: list[str], zygote: Zygote, slots: threading.Semaphore
) -> Execution:
    root = tempfile.mkdtemp(prefix="pareto-sandbox-", dir=_scratch_dir())
    try:
        return _run_in(root, program, limits, hidden, zygote, slots)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_in(
    root: str,
    program: Program,
    limits: Limits,
    hidden: list[str],
    zygote: Zygote,
    slots: threading.Semaphore,
) -> Execution:
    work_dir = os.path.join(root, "work")  # created by the sample only if namespaces are refused
    job_path = os.path.join(root, "job.json")
    with open(job_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(_job(program, limits, work_dir, hidden)))  # json.dump has no C encoder
    out_path, err_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
    read_fd, write_fd = os.pipe()
    go_read, go_write = os.pipe()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            spawned = zygote.spawn(job_path, (write_fd, out.fileno(), err.fileno(), go_read))
        finally:
            os.close(write_fd)  # the sample holds its own copies now
            os.close(go_read)
    reader = _ResultReader(limits.result_mb << 20)
    start = time.monotonic()
    stages: dict[str, float] = {}
    timed_out = ended_by_itself = False
    try:
        pid = spawned.pid.result(timeout=SETUP_SECONDS)
        stages["create"] = time.monotonic() - start
        if pid is not None and reader.read_first_line(read_fd, start + SETUP_SECONDS):
            stages["setup"] = time.monotonic() - start - stages["create"]
            ready = time.monotonic()
            with slots:
                start = time.monotonic()  # the sample's clock starts at "go"
                stages["wait"] = start - ready
                with contextlib.suppress(OSError):
                    os.write(go_write, b"g")
                timed_out = not reader.read_until(read_fd, start + limits.wall_seconds)
                finished = reader.finished()
                if not timed_out and not finished:  # it stopped early: learn how
                    with contextlib.suppress(FutureTimeout):
                        spawned.status.result(timeout=1.0)
                ended_by_itself = spawned.status.done()
                zygote.kill(spawned)  # anything left of it, as soon as possible
    finally:
        os.close(read_fd)
        os.close(go_write)
    if not ended_by_itself and not reader.finished():
        with contextlib.suppress(FutureTimeout):
            spawned.status.result(timeout=10)  # wait for the kill, so no process is left
    execution = reader.execution(len(program.calls))
    # The parent's own timings over anything the sample claimed.
    execution.stages = {**execution.stages, **stages, "parse": reader.parse_seconds}
    execution.timed_out = timed_out
    # Only the exit status of a process that ended by itself says anything.
    status = spawned.status.result() if ended_by_itself else None
    execution.returncode = os.waitstatus_to_exitcode(status) if status is not None else None
    execution.seconds = time.monotonic() - start
    cap = limits.file_mb << 20
    execution.output_limit = reader.overflow or any(
        os.path.getsize(p) >= cap for p in (out_path, err_path)
    )
    execution.stdout = _tail(out_path, limits.tail_chars)
    execution.stderr = _tail(err_path, limits.tail_chars)
    return execution


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
        self.parse_seconds = 0.0

    def read_first_line(self, fd: int, deadline: float) -> bool:
        """Read until the first line is in (the sample's set-up is done); False at EOF or
        the deadline."""
        return self.read_until(fd, deadline, first_line=True) and bool(self.messages)

    def finished(self) -> bool:
        return any(m.get("done") is True for m in self.messages)

    def read_until(self, fd: int, deadline: float, first_line: bool = False) -> bool:
        """False when the deadline passed before EOF (or, with ``first_line``, before the
        first complete line)."""
        while True:
            if first_line and self.messages:
                return True
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
            started = time.perf_counter()
            *lines, rest = b"".join([*self.partial, chunk]).split(b"\n")
            self.partial = [rest] if rest else []
            self._parse(lines)
            self.parse_seconds += time.perf_counter() - started

    def _parse(self, lines: list[bytes]) -> None:
        """Keep the lines that are JSON objects. All at once as one JSON array, a single
        call where a call per line would cost more than the parsing; line by line when that
        fails. (Lines that join into valid JSON only when read together say nothing the
        sample could not have written as one line.)"""
        try:
            messages = json.loads(b"[" + b",".join(lines) + b"]")
        except (ValueError, RecursionError):
            messages = []
            for line in lines:
                try:
                    messages.append(json.loads(line))
                except (ValueError, RecursionError):
                    continue
        self.messages.extend(m for m in messages if isinstance(m, dict))

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
                reported = message.get("seconds")
                if isinstance(reported, dict):
                    execution.stages = {
                        k: float(v)
                        for k, v in reported.items()
                        if k in REPORTED_STAGES and type(v) in (int, float)
                    }
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
        return Returned(message["ok"], seconds)  # decoded (and so checked) by each consumer
    if message.get("timeout") is True:
        return CallTimedOut(seconds)
    type_name, text = _error_pair(message.get("err"))
    return Raised(type_name, text, seconds)


def _recorded(message: dict[str, Any]) -> RecordedCall | None:
    call = message["call"]
    if not (isinstance(call, list) and len(call) == 3 and isinstance(call[0], str)):
        return None
    return RecordedCall(call[0], call[1], call[2], _seconds(message))


@cache
def isolation_summary() -> dict[str, Any]:
    """What this machine gives the sandbox, from a probe run: for reports and the bench JSON."""
    execution = run(Program(code="pass"), Limits(wall_seconds=20))
    return {
        "root": os.geteuid() == 0,
        "nproc_limit_enforced": os.geteuid() != 0,
        **{"namespaces": False, **execution.isolation},
    }


def namespaces_available() -> bool:
    return bool(isolation_summary().get("namespaces"))

"""A small pool of *trusted* worker processes in which every item has a hard deadline.

Scorers call into libraries that can hang or blow up on hostile input (math-verify on a
pathological LaTeX string, a test script replaying a giant output). Each item runs in a
worker process; when an item passes its deadline the worker is killed and replaced, and the
item gets ``on_failure(item, "timeout")``. A worker that dies gives ``"crashed"``. Either
way the other items and the run go on.

Only trusted code runs here: untrusted code goes to ``pareto_bench.execution.sandbox``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

A = TypeVar("A")
R = TypeVar("R")


class PoolBroken(RuntimeError):
    """Workers die before finishing a single item: the machine, not an item, is at fault."""


def serve(fd: int, memory_mb: int) -> None:
    """A worker's main loop (run as ``python -c``, so no parent ``__main__`` is re-imported)."""
    if memory_mb:
        import resource

        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import warnings

    warnings.simplefilter("ignore")  # old benchmark code compiles with escape warnings
    conn = Connection(fd)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, fn, item = message
        try:
            result = (index, True, fn(item))
        except BaseException as e:  # noqa: BLE001 - report every failure, keep serving
            result = (index, False, f"{type(e).__name__}: {e}"[:500])
        try:
            conn.send(result)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            conn.send((index, False, f"unpicklable result: {e}"[:500]))


class _Worker:
    def __init__(self, memory_mb: int | None) -> None:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        code = f"from pareto_bench.execution.pool import serve; serve({child_sock.fileno()}, {memory_mb or 0})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(child_sock.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # nothing a worker prints may reach the parent's --json
            env=env,
        )
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.busy: tuple[int, float] | None = None  # (item index, deadline)
        self.completed = 0

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()


class DeadlinePool:
    """``with DeadlinePool(2) as pool: pool.map(fn, items, timeout=5, on_failure=...)``.

    ``fn`` must be a module-level function (it is sent to the workers by name). Workers start
    lazily and are reused across ``map`` calls until ``close``."""

    def __init__(self, workers: int = 2, *, memory_mb: int | None = 4096) -> None:
        self.size = max(1, workers)
        self.memory_mb = memory_mb
        self._workers: list[_Worker] = []

    def __enter__(self) -> DeadlinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def map(
        self,
        fn: Callable[[A], R],
        items: Sequence[A],
        *,
        timeout: float,
        on_failure: Callable[[A, str], R],
        on_done: Callable[[int], None] | None = None,
    ) -> list[R]:
        """Results in input order. A failed item gets ``on_failure(item, reason)`` where reason
        is ``"timeout"``, ``"crashed"`` or the exception text."""
        results: list[Any] = [None] * len(items)
        pending = deque(range(len(items)))
        while len(self._workers) < min(self.size, len(items)):
            self._workers.append(_Worker(self.memory_mb))
        remaining = len(items)

        def finish(index: int, value: Any) -> None:
            nonlocal remaining
            results[index] = value
            remaining -= 1
            if on_done is not None:
                on_done(index)

        def dispatch(worker: _Worker) -> None:
            if pending:
                index = pending.popleft()
                worker.conn.send((index, fn, items[index]))
                worker.busy = (index, time.monotonic() + timeout)

        startup_crashes = 0

        def replace(worker: _Worker, crashed: bool) -> _Worker:
            nonlocal startup_crashes
            worker.kill()
            startup_crashes = startup_crashes + 1 if crashed and worker.completed == 0 else 0
            if startup_crashes >= 3:
                self.close()
                raise PoolBroken(
                    "scoring workers die before finishing any item; see their errors above"
                )
            fresh = _Worker(self.memory_mb)
            self._workers[self._workers.index(worker)] = fresh
            return fresh

        for worker in self._workers:
            dispatch(worker)
        while remaining:
            busy = [w for w in self._workers if w.busy is not None]
            next_deadline = min(w.busy[1] for w in busy)  # type: ignore[index]
            ready = wait([w.conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic()))
            for worker in busy:
                index, deadline = worker.busy  # type: ignore[misc]
                if worker.conn in ready:
                    try:
                        got, ok, value = worker.conn.recv()
                    except (EOFError, OSError):
                        worker.busy = None
                        finish(index, on_failure(items[index], "crashed"))
                        dispatch(replace(worker, crashed=True))
                        continue
                    worker.busy = None
                    worker.completed += 1
                    finish(got, value if ok else on_failure(items[got], value))
                    dispatch(worker)
                elif time.monotonic() >= deadline:
                    worker.busy = None
                    finish(index, on_failure(items[index], "timeout"))
                    dispatch(replace(worker, crashed=False))
        return results

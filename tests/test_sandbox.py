"""Adversarial tests of the sandbox and the code judge: one attack per test.

Every attack is scored through the real pipeline (reference run, sandboxed sample, trusted
judge) on two small problems: one judged by replaying its assertions (as HumanEval and MBPP
are) and one by comparing outputs (as HumanEval+ and MBPP+ are). The attacks run in one batch
with correct samples between them, so the batch also shows that one sample's crash, timeout
or flood never costs another sample its result.

Where an attack *also* computes the right answer, it fails for the attempt alone (``escape``).
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from pareto_bench.execution import sandbox
from pareto_bench.execution.codec import Opaque, decode, encode
from pareto_bench.execution.judge import AssertTests, Oracle
from pareto_bench.execution.sandbox import Call, Limits, Program, Returned, Status
from pareto_bench.tasks.base import Problem
from pareto_bench.tasks.code_scoring import CodeTask, DiffTests

SECRET = "s3cret-token-value"
GOOD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"


def _problems() -> list[Problem]:
    replayed = AssertTests(
        code=GOOD,
        setup="",
        script="assert add(1, 2) == 3\nassert add(-4, 4) == 0\nassert add(10, 5) == 15\n",
        wrap=("add",),
    )
    compared = DiffTests(
        code=GOOD,
        inputs=tuple(encode(args) for args in ([1, 2], [-4, 4], [10, 5], [2**70, 1])),
        num_base=2,
        oracle=Oracle("humaneval", "add", 0.0),
    )
    meta = {"entry_point": "add", "sha256": "adversarial-test"}
    return [
        Problem(
            id="replayed/add",
            question="add",
            reference=replayed,
            gold=f"```python\n{GOOD}```",
            meta=meta,
        ),
        Problem(
            id="compared/add",
            question="add",
            reference=compared,
            gold=f"```python\n{GOOD}```",
            meta=meta,
        ),
    ]


@dataclass
class AddTask(CodeTask):
    name: ClassVar[str] = "adversarial-add"
    version: ClassVar[str] = "1"

    def load(self, data_dir: Path | None = None) -> list[Problem]:
        return _problems()


def _d(source: str) -> str:
    return textwrap.dedent(source)


def attacks(parent_pid: int, port: int, outside_file: Path) -> dict[str, str]:
    """name -> the program of a sample that attacks the checker that way."""
    code = {
        "exit_zero_before_tests": "import sys\nsys.exit(0)\n" + WRONG,
        "os_exit_before_tests": "import os\nos._exit(0)\n" + WRONG,
        "builtin_exit_before_tests": "exit()\n" + WRONG,
        "os_exit_in_call": "import os\ndef add(a, b):\n    os._exit(0)\n",
        "system_exit_in_call": "def add(a, b):\n    raise SystemExit(0)\n",
        "keyboard_interrupt_in_call": "def add(a, b):\n    raise KeyboardInterrupt\n",
        "eq_always_true": _d("""
            class Anything:
                def __eq__(self, other):
                    return True
                def __ne__(self, other):
                    return False
                __hash__ = object.__hash__
            def add(a, b):
                return Anything()
            """),
        "int_subclass_eq_always_true": _d("""
            class Liar(int):
                def __eq__(self, other):
                    return True
                __hash__ = int.__hash__
            def add(a, b):
                return Liar(a - b)
            """),
        "repr_mimics_answer": _d("""
            class Mimic:
                def __init__(self, v): self.v = v
                def __repr__(self): return repr(self.v)
                __str__ = __repr__
            def add(a, b):
                return Mimic(a + b)
            """),
        "patch_builtins": _d("""
            import builtins
            builtins.AssertionError = type("Nope", (Exception,), {})
            builtins.isinstance = lambda *a: True
            builtins.len = lambda *a: 0
            builtins.abs = lambda *a: 0
            """)
        + WRONG,
        "patch_assert_and_comparison": _d("""
            import operator, unittest
            operator.eq = lambda a, b: True
            unittest.TestCase.assertEqual = lambda *a, **k: None
            def check(candidate):
                return True
            candidate = None
            """)
        + WRONG,
        "patch_the_harness": _d("""
            import __main__
            for name in ("encode", "output_payload", "decode", "_describe"):
                if hasattr(__main__, name):
                    setattr(__main__, name, lambda *a, **k: 3)
            """)
        + WRONG,
        "read_test_from_caller_frames": _d("""
            import sys
            def add(a, b):
                frame, seen = sys._getframe(1), []
                while frame is not None:
                    seen.extend(v for v in frame.f_locals.values() if isinstance(v, int) and v not in (a, b))
                    frame = frame.f_back
                return seen[0] if seen else 0
            """),
        "heap_search_for_expected_values": _d("""
            import gc
            def add(a, b):
                for obj in gc.get_objects():
                    pass
                return a - b
            """),
        "kill_the_parent": _d(f"""
            import os, signal
            for pid in ({parent_pid}, os.getppid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except Exception:
                    pass
            """)
        + GOOD,
        "fork_bomb": _d("""
            import os
            def add(a, b):
                while True:
                    os.fork()
            """),
        "subprocess_fork_bomb": _d("""
            import subprocess
            try:
                subprocess.Popen(["sh", "-c", ":(){ :|:& };:"])
            except Exception:
                pass
            """)
        + GOOD,
        "memory_bomb": "def add(a, b):\n    hog = bytearray(1 << 40)\n    return a + b\n",
        "memory_bomb_gradual": "def add(a, b):\n    hog = []\n    while True:\n        hog.append(' ' * (1 << 28))\n",
        "infinite_loop": "def add(a, b):\n    while True:\n        pass\n",
        "infinite_loop_swallowing_timeouts": _d("""
            def add(a, b):
                while True:
                    try:
                        while True:
                            pass
                    except BaseException:
                        pass
            """),
        "disable_the_call_timer": _d("""
            import signal
            def add(a, b):
                signal.signal(signal.SIGALRM, signal.SIG_IGN)
                signal.setitimer(signal.ITIMER_REAL, 0)
                while True:
                    pass
            """),
        "deep_recursion": "def add(a, b):\n    return add(a, b) + 1\n",
        "stdout_flood": "import sys\ndef add(a, b):\n    while True:\n        sys.stdout.write('x' * 65536)\n",
        "stdout_flood_then_answer": "def add(a, b):\n    print('y' * (64 << 20))\n    return a + b\n",
        "result_channel_flood": "def add(a, b):\n    return 'z' * (200 << 20)\n",
        "deeply_nested_output": "def add(a, b):\n    x = []\n    for _ in range(100000):\n        x = [x]\n    return x\n",
        "write_outside_tmp": _d(f"""
            def add(a, b):
                try:
                    with open({str(outside_file)!r}, "w") as f:
                        f.write("pwned")
                except Exception:
                    pass
                return a + b
            """),
        "write_into_the_repo": _d(f"""
            import os
            try:
                open(os.path.join({str(code_dir())!r}, "pwned.py"), "w").write("x")
            except Exception:
                pass
            """)
        + GOOD,
        "network_access": _d(f"""
            import socket
            def add(a, b):
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"leak")
                except Exception:
                    pass
                return a + b
            """),
        "read_env_secret": _d(f"""
            import os
            def add(a, b):
                return a + b if os.environ.get("PARETO_TEST_SECRET") == {SECRET!r} else None
            """),
        "read_parent_environ_from_proc": _d(f"""
            def add(a, b):
                try:
                    data = open("/proc/{parent_pid}/environ", "rb").read()
                except Exception:
                    data = b""
                return a + b if {SECRET!r}.encode() in data else None
            """),
        "ctypes_escape": _d("""
            import ctypes
            def add(a, b):
                libc = ctypes.CDLL(None)
                libc.kill(1, 9)
                return a + b
            """),
        "print_fake_success_marker": _d("""
            import sys
            print("passed"); print("ALL TESTS PASSED"); print('{"passed": true, "status": "passed"}')
            sys.stderr.write("OK\\n")
            """)
        + WRONG,
        "forge_result_channel": _d("""
            import os
            def add(a, b):
                for fd in range(3, 64):
                    try:
                        os.write(fd, b'{"done": true}\\n{"ready": {"namespaces": true}}\\n{"status": "passed"}\\n')
                    except OSError:
                        pass
                return a - b
            """),
        "close_result_channel": "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n"
        + GOOD,
        "code_object_tampering": _d("""
            def add(a, b):
                g = lambda: None
                g.__code__ = add.__code__
                return a - b
            """),
    }
    return code


@pytest.fixture(scope="module", params=["namespaces", "audit-hook-only"])
def judged(request, tmp_path_factory):
    """Verdicts per (attack, problem), plus the correct samples scored in the same batch:
    once with the namespaces, and once with the audit hook and rlimits alone, as on a
    machine that refuses namespaces."""
    if request.param == "namespaces" and not sandbox.namespaces_available():
        pytest.skip("this machine refuses namespaces")
    cache = tmp_path_factory.mktemp("plans")
    # Outside the sample's own /tmp (which is a private tmpfs when namespaces are available):
    # shared memory, where the parent keeps the samples' job files.
    shared = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/var/tmp")
    outside = shared / f"pareto-sandbox-probe-{os.getpid()}.txt"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    saved = {k: os.environ.get(k) for k in ("PARETO_BENCH_CACHE", "PARETO_TEST_SECRET")}
    os.environ.update(PARETO_BENCH_CACHE=str(cache), PARETO_TEST_SECRET=SECRET)
    sandbox.USE_NAMESPACES = request.param == "namespaces"
    try:
        task = AddTask()
        problems = task.load()
        programs = attacks(os.getpid(), port, outside)
        batch = [("correct", GOOD)] + [
            item for pair in programs.items() for item in (pair, ("correct", GOOD))
        ]
        rows = [(name, p, code) for name, code in batch for p in problems]
        verdicts = task.score_programs([p for _, p, _ in rows], [c for _, _, c in rows])
    finally:
        sandbox.USE_NAMESPACES = True
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        connection, _ = listener.accept()
        leaked = connection.recv(100)
    except BlockingIOError:
        leaked = b""
    listener.close()
    results: dict[str, list] = {}
    for (name, _, _), verdict in zip(rows, verdicts, strict=True):
        results.setdefault(name, []).append(verdict)
    return {"verdicts": results, "outside": outside, "leaked": leaked, "mode": request.param}


def _fails(judged: dict, name: str, *statuses: Status) -> None:
    for verdict in judged["verdicts"][name]:
        assert not verdict.correct and verdict.score == 0.0, (name, verdict)
        if statuses:
            assert verdict.status in {s.value for s in statuses}, (name, verdict)


def test_correct_samples_in_the_same_batch_still_pass(judged):
    correct = judged["verdicts"]["correct"]
    assert len(correct) == 2 * (len(judged["verdicts"]) - 1 + 1)
    assert all(v.correct and v.score == 1.0 and v.status == "passed" for v in correct)


def test_sys_exit_zero_before_the_tests_fails(judged):
    _fails(judged, "exit_zero_before_tests", Status.ERROR)


def test_os_exit_zero_before_the_tests_fails(judged):
    _fails(judged, "os_exit_before_tests", Status.CRASHED)


def test_builtin_exit_before_the_tests_fails(judged):
    # the reference LightningRL harness counted this as passing every test
    _fails(judged, "builtin_exit_before_tests", Status.ERROR)


def test_os_exit_inside_a_call_fails(judged):
    _fails(judged, "os_exit_in_call", Status.CRASHED)


def test_raising_system_exit_in_a_test_fails(judged):
    _fails(judged, "system_exit_in_call", Status.ERROR)


def test_raising_keyboard_interrupt_in_a_test_fails(judged):
    _fails(judged, "keyboard_interrupt_in_call", Status.ERROR)


def test_an_eq_that_always_says_true_fails(judged):
    _fails(judged, "eq_always_true", Status.FAILED)


def test_an_int_subclass_that_always_compares_equal_is_judged_by_its_value(judged):
    _fails(judged, "int_subclass_eq_always_true", Status.FAILED)


def test_an_object_whose_repr_mimics_the_answer_fails(judged):
    _fails(judged, "repr_mimics_answer", Status.FAILED)


def test_patching_builtins_fails(judged):
    # The harness shares the builtins, so this may also break the harness: then it crashes.
    _fails(judged, "patch_builtins", Status.FAILED, Status.CRASHED, Status.ERROR)


def test_patching_assert_and_the_comparison_fails(judged):
    _fails(judged, "patch_assert_and_comparison", Status.FAILED)


def test_patching_the_harness_itself_fails(judged):
    _fails(judged, "patch_the_harness")


def test_reading_the_test_from_caller_frames_finds_nothing(judged):
    _fails(judged, "read_test_from_caller_frames", Status.FAILED)


def test_searching_the_heap_for_expected_values_is_refused(judged):
    _fails(judged, "heap_search_for_expected_values", Status.ESCAPE)


def test_killing_the_parent_fails_and_the_parent_lives(judged):
    _fails(judged, "kill_the_parent", Status.ESCAPE)  # and this test process is still here


def test_a_fork_bomb_fails(judged):
    _fails(judged, "fork_bomb", Status.ESCAPE)


def test_a_subprocess_fork_bomb_fails(judged):
    _fails(judged, "subprocess_fork_bomb", Status.ESCAPE)


def test_a_memory_bomb_fails(judged):
    _fails(judged, "memory_bomb", Status.MEMORY)


def test_a_gradual_memory_bomb_fails(judged):
    _fails(judged, "memory_bomb_gradual", Status.MEMORY, Status.CRASHED, Status.TIMEOUT)


def test_an_infinite_loop_times_out(judged):
    _fails(judged, "infinite_loop", Status.TIMEOUT)


def test_an_infinite_loop_that_swallows_timeouts_is_killed(judged):
    _fails(judged, "infinite_loop_swallowing_timeouts", Status.TIMEOUT)


def test_disabling_the_call_timer_only_meets_the_wall_clock(judged):
    _fails(judged, "disable_the_call_timer", Status.TIMEOUT)


def test_unbounded_recursion_fails(judged):
    _fails(judged, "deep_recursion", Status.ERROR)


def test_flooding_stdout_fails(judged):
    _fails(judged, "stdout_flood", Status.OUTPUT_LIMIT)


def test_flooding_stdout_then_answering_still_fails(judged):
    _fails(judged, "stdout_flood_then_answer", Status.OUTPUT_LIMIT)


def test_flooding_the_result_channel_fails(judged):
    _fails(judged, "result_channel_flood", Status.OUTPUT_LIMIT)


def test_a_deeply_nested_output_fails(judged):
    _fails(judged, "deeply_nested_output", Status.ERROR)


def test_writing_outside_the_work_directory_fails_and_writes_nothing(judged):
    _fails(judged, "write_outside_tmp", Status.ESCAPE)
    assert not judged["outside"].exists()


def code_dir() -> Path:
    """Code a sample must not write into: this checkout's tests, or, when the checkout lies in
    /tmp (the sample's own, private /tmp hides it, so a write there lands nowhere and proves
    nothing), the standard library, which lies outside every writable place of the sandbox."""
    here = Path(__file__).resolve().parent
    return here if not here.is_relative_to("/tmp") else Path(os.__file__).resolve().parent


def test_writing_into_the_repository_fails_and_writes_nothing(judged):
    _fails(judged, "write_into_the_repo", Status.ESCAPE)
    assert not (code_dir() / "pwned.py").exists()


def test_network_access_fails_and_nothing_arrives(judged):
    _fails(judged, "network_access", Status.ESCAPE)
    assert judged["leaked"] == b""


def test_environment_secrets_are_not_visible(judged):
    _fails(judged, "read_env_secret", Status.FAILED)


def test_the_parents_environment_is_not_readable_through_proc(judged):
    _fails(judged, "read_parent_environ_from_proc")


def test_calling_libc_through_ctypes_is_refused(judged):
    _fails(judged, "ctypes_escape", Status.ESCAPE)


def test_printing_a_fake_success_marker_fails(judged):
    _fails(judged, "print_fake_success_marker", Status.FAILED)


def test_forging_lines_on_the_result_channel_fails(judged):
    _fails(judged, "forge_result_channel", Status.FAILED)


def test_closing_the_result_channel_fails(judged):
    _fails(judged, "close_result_channel", Status.CRASHED)


def test_rewriting_a_functions_code_is_refused(judged):
    _fails(judged, "code_object_tampering", Status.ESCAPE)


# ----------------------------------------------------------------------------------------
# The sandbox and codec on their own
# ----------------------------------------------------------------------------------------


def test_a_run_reports_each_call_as_data():
    execution = sandbox.run(
        Program(
            code=GOOD,
            calls=(Call.of("add", [2, 3]), Call.of("add", ["a", "b"]), Call.of("nope", [])),
        )
    )
    first, second, third = execution.outcomes
    assert isinstance(first, Returned) and first.value == 5
    assert isinstance(second, Returned) and second.value == "ab"
    assert third.type_name == "NameError"


def test_scoring_off_the_main_thread_judges_as_on_it(tmp_path, monkeypatch):
    """Replays run as samples finish on the main thread, and in one batch at the end on any
    other (where no timer can stop them): the same verdicts either way."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("PARETO_BENCH_CACHE", str(tmp_path))
    task = AddTask()
    problems = task.load() * 2
    programs = [GOOD, GOOD, WRONG, "def add(a, b):\n    raise ValueError"]

    def judged() -> list[tuple[bool, str]]:
        return [(v.correct, v.status) for v in task.score_programs(problems, programs)]

    here = judged()
    with ThreadPoolExecutor(1) as other:
        assert other.submit(judged).result() == here
    assert here == [(True, "passed"), (True, "passed"), (False, "failed"), (False, "error")]


def test_scoring_pauses_the_cyclic_collector_and_leaves_it_as_it_found_it():
    import gc

    from pareto_bench.tasks.code_scoring import _cyclic_gc_paused

    assert gc.isenabled()
    with _cyclic_gc_paused():
        assert not gc.isenabled()
        with _cyclic_gc_paused():  # a second scorer, say on another thread
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first is still scoring
    assert gc.isenabled()
    gc.disable()
    try:
        with _cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_one_zygote_serves_the_process_and_a_forked_child_starts_its_own():
    def adds() -> bool:
        outcome = sandbox.run(Program(code=GOOD, calls=(Call.of("add", [1, 2]),))).outcomes[0]
        return isinstance(outcome, Returned) and outcome.value == 3

    ours = sandbox.shared_zygote()
    assert adds() and adds() and sandbox.shared_zygote() is ours
    pid = os.fork()
    if pid == 0:  # the child: its own zygote, and no way to close the parent's
        try:
            ok = adds() and sandbox.shared_zygote() is not ours
            ours.close()
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sandbox.shared_zygote() is ours and adds()  # still serving the parent


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two cores and CPU affinity",
)
def test_samples_run_on_the_cores_of_the_thread_that_asks_for_them():
    probe = "import os\ndef cores():\n    return sorted(os.sched_getaffinity(0))\n"

    def cores_seen() -> list[int]:
        return sandbox.run(Program(code=probe, calls=(Call.of("cores", []),))).outcomes[0].value

    every = sorted(os.sched_getaffinity(0))
    assert cores_seen() == every  # the zygote is running now, on every core
    os.sched_setaffinity(0, every[:1])
    try:
        assert cores_seen() == every[:1]
    finally:
        os.sched_setaffinity(0, every)
    assert cores_seen() == every


def test_result_lines_that_are_not_json_objects_are_skipped():
    reader = sandbox._ResultReader(1 << 20)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"i":0,"ok":1}\nnot json\n[1,2]\n\n{"i":1,"ok":[2]}\n{"i":2,"ok"')
    os.close(write_fd)
    assert reader.read_until(read_fd, time.monotonic() + 10)  # to the end of the pipe
    os.close(read_fd)
    assert reader.messages == [{"i": 0, "ok": 1}, {"i": 1, "ok": [2]}]  # the last line never ended


@pytest.mark.skipif(not sandbox.namespaces_available(), reason="this machine refuses namespaces")
def test_with_namespaces_the_child_is_locked_down():
    probe = textwrap.dedent(
        """
        import os
        def probe():
            return [os.getpid(), sorted(p for p in os.listdir("/proc") if p.isdigit()), os.access("/", os.W_OK)]
        """
    )
    execution = sandbox.run(Program(code=probe, calls=(Call.of("probe", []),)))
    pid, pids, root_writable = execution.outcomes[0].value
    assert execution.isolation == {
        "namespaces": True,
        "private_proc": True,
        "work_dir": True,
        "read_only_fs": True,
        "hidden_paths": True,
        "no_capabilities": True,
    }
    assert pid == 1 and pids == ["1"]  # its own PID namespace: nothing else is visible
    assert root_writable is False


def test_a_flat_list_or_a_string_digests_as_its_encoding_does():
    from pareto_bench.execution.codec import digest, encode, value_digest

    huge = 1 << 9000  # beyond the codec's plain ints
    lists = [
        [],
        ["a", "b", ""],
        [0, -3, 1 << 60, 7],
        [0, huge, -huge],
        [1.0, 2.5, -0.0, 1e16, float("inf"), float("-inf"), float("nan")],
        [True, False, None, 1, 1.0, "1"],
        [1, 2.0, (3, 4)],  # not flat: the general path
        [[1, 2], [3.0]],
        [2**53 - 1, -(2**53) + 1, 0.5],  # doubles hold these exactly
        [2**53 + 1, 0.5],  # and not this one
        [1e300, -0.0, False],
        "a string, \udc80 with a lone surrogate",
        "",
    ]
    for value in lists:
        assert value_digest(value) == digest(encode(value)), value
    # Equal under == gives equal digests; unequal gives unequal ones.
    assert value_digest([1, 2.0, True]) == value_digest([1.0, 2, 1])
    assert value_digest([-0.0, 0]) == value_digest([0.0, False])
    assert value_digest([2**53 + 1]) != value_digest([float(2**53 + 1)])
    assert value_digest([2**53 - 1]) == value_digest([float(2**53 - 1)])
    assert value_digest("1") != value_digest([1]) != value_digest(["1"]) != value_digest("[1]")


def test_the_codec_round_trips_plain_values_and_flattens_subclasses():
    from collections import Counter, OrderedDict, namedtuple

    Point = namedtuple("Point", "x y")
    values = [
        None,
        True,
        3,
        2**9000,
        -0.5,
        float("inf"),
        "s",
        b"\x00",
        (1, [2, {3}]),
        {1: "a", (2,): None},
        frozenset({1}),
        1 + 2j,
        range(1, 5, 2),
    ]
    for value in values:
        assert decode(encode(value)) == value
    assert decode(encode(Point(1, 2))) == (1, 2) and type(decode(encode(Point(1, 2)))) is tuple
    assert decode(encode(Counter("aab"))) == {"a": 2, "b": 1}
    assert type(decode(encode(OrderedDict(a=1)))) is dict
    assert isinstance(decode(encode(object())), Opaque)


@pytest.mark.parametrize(
    "hostile",
    [
        {"t": "set", "v": [[1]]},
        {"t": "dict", "v": [[[1], 2]]},
        {"t": "fraction", "v": [1, 0]},
        {"t": "nope", "v": 1},
        {"x": 1},
        {"t": "int", "v": "zz"},
    ],
)
def test_hostile_encoded_values_are_rejected_not_crashing(hostile):
    from pareto_bench.execution.codec import CodecError

    with pytest.raises(CodecError):
        decode(hostile)


def test_a_timeout_kills_the_whole_process_group_quickly():
    execution = sandbox.run(
        Program(
            code="def spin():\n    while True:\n        pass\n",
            calls=(Call("spin", encode([]), limit=60),),
        ),
        Limits(wall_seconds=1.5),
    )
    assert execution.timed_out and execution.outcomes == [None]
    assert execution.seconds < 5


@pytest.mark.skipif(not sandbox.namespaces_available(), reason="this machine refuses namespaces")
def test_the_user_namespace_path_taken_by_non_root_users_locks_down_too(monkeypatch):
    monkeypatch.setattr(sandbox, "_user_namespace", lambda: True)  # as for a non-root user
    target = Path("/var/tmp") / f"pareto-userns-probe-{uuid.uuid4().hex}"  # this test's own
    probe = textwrap.dedent(
        """
        import os, socket
        def probe():
            try:
                open(TARGET, "w")
                wrote = True
            except OSError:
                wrote = False
            try:
                socket.socket().connect(("127.0.0.1", 9))
                connected = True
            except OSError:
                connected = False
            return [os.getpid(), open("/proc/self/uid_map").read().split(), wrote, connected]
        """
    ).replace("TARGET", repr(str(target)))
    execution = sandbox.run(Program(code=probe, calls=(Call.of("probe", []),)))
    pid, uid_map, wrote, connected = execution.outcomes[0].value
    assert execution.isolation["namespaces"] and execution.isolation["read_only_fs"]
    assert pid == 1 and uid_map[:2] == ["0", str(os.getuid())]
    assert not wrote and not connected and not target.exists()


def test_an_execution_says_where_its_time_went():
    program = Program(code="def f(n):\n    return list(range(n))", calls=(Call.of("f", [50_000]),))
    execution = sandbox.run(program)
    assert isinstance(execution.outcomes[0], sandbox.Returned)
    assert set(execution.stages) == set(sandbox.STAGES)
    assert all(seconds >= 0 for seconds in execution.stages.values())
    # Encoding 50,000 integers costs something, and the call itself happens inside the run.
    assert execution.stages["encode"] > 0 and execution.stages["create"] > 0
    assert execution.stages["run"] + execution.stages["encode"] <= execution.seconds

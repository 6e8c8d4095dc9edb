"""The code that runs *inside* a sandbox process; the trusted side is ``pareto_bench.execution.sandbox``.

It runs as a *zygote* (``python -S -s -B sandbox_child.py SOCKET_FD``, with a scrubbed
environment): a clean single-threaded process that forks one sandbox per sample, so no sample
pays for an interpreter start. It imports nothing but the standard library and the value codec
(``codec.py``, beside it).

Order of events in a sample's process, and why:

0. fork from the zygote straight into new mount, PID, network, IPC and UTS namespaces (and
   a user namespace for non-root users), as PID 1 there, so that its death takes every
   process it started with it;
1. read the job (written by the parent, trusted) and delete the file;
2. lock the process down while it is still trusted: a private /proc, answer keys and the
   home directory hidden, a fresh tmpfs as /tmp, every other mount read-only, all
   capabilities dropped, rlimits set;
3. report the isolation it achieved: the last line written before untrusted code runs, so
   the parent can trust it;
4. install an audit hook that refuses process creation, signals, sockets, foreign calls,
   heap introspection and writes outside the work directory, reporting each attempt;
5. wait for the parent's "go" (set-ups run ahead of free CPU slots), then run the untrusted
   code and the requested calls, streaming one JSON line per call.

Nothing the child reports is ever taken as a verdict. Untrusted code shares this process and
can write anything to the result channel; what it writes is at most a claim about *its own
outputs*, which is no more than returning them. Expected outputs never enter this process,
and the parent compares.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import sys
import time

if __package__:  # imported by the trusted side (tests, the sandbox's parent)
    from pareto_bench.execution.codec import CodecError, decode, encode, output_payload
else:  # the zygote, run as a script: the codec is the file beside this one
    from codec import CodecError, decode, encode, output_payload

# ----------------------------------------------------------------------------------------
# Lock-down (run while the process is still trusted)
# ----------------------------------------------------------------------------------------

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = 32, 1024, 2048, 4096
_MS_REC, _MS_RELATIME, _MS_STRICTATIME = 16384, 1 << 21, 1 << 24
_MOUNT_FLAGS = {
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "nodiratime": _MS_NODIRATIME,
    "relatime": _MS_RELATIME,
    "strictatime": _MS_STRICTATIME,
}
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 24, 38, 47
_CAP_V3 = 0x20080522


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, per-mount flags to keep) for every mount, deepest last."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # \040 and friends
            flags = 0
            for opt in fields[5].split(","):
                flags |= _MOUNT_FLAGS.get(opt, 0)
            points.append((point, flags))
    return points


_SYS_MOUNT_SETATTR, _AT_RECURSIVE, _AT_FDCWD, _MOUNT_ATTR_RDONLY = 442, 0x8000, -100, 1
# clone's number where its first argument is the flags; elsewhere samples get no namespaces.
_SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120}.get(os.uname().machine)
_MS_PRIVATE = 1 << 18


class Kernel:
    """The system calls Python 3.11 does not expose (clone, mount, mount_setattr, capset),
    through ctypes. Made once in the zygote, so samples skip the set-up; code under
    test cannot use it (the audit hook refuses every foreign call)."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        # Calls that must keep the GIL, as os.fork does around fork().
        self.holding_gil = ctypes.PyDLL(None, use_errno=True)
        self.holding_gil.syscall.restype = ctypes.c_long
        self.libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]

        class MountAttr(ctypes.Structure):
            _fields_ = [
                (n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns_fd")
            ]

        class CapHeader(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class CapData(ctypes.Structure):
            _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

        self.MountAttr, self.CapHeader, self.CapData = MountAttr, CapHeader, CapData

    def fork_into(self, namespaces: int) -> int | None:
        """``os.fork`` whose child starts in new ``namespaces`` (CLONE_NEW* flags): the child's
        pid in the parent and 0 in the child, or None where the kernel refuses (nothing was
        forked). A fork then ``unshare`` would need a second fork to enter the new PID
        namespace: a second process per sample, with its own page tables to copy and free.
        Python's own fork bookkeeping runs on both sides, as in ``os.fork``."""
        if _SYS_CLONE is None:
            return None
        api, c = self.ctypes.pythonapi, self.ctypes
        api.PyOS_BeforeFork()
        flags = c.c_ulong(namespaces | signal.SIGCHLD)  # SIGCHLD at exit, as for fork's children
        pid = self.holding_gil.syscall(_SYS_CLONE, flags, None, None, None, None)
        if pid == 0:
            api.PyOS_AfterFork_Child()
            return 0
        api.PyOS_AfterFork_Parent()
        return pid if pid > 0 else None

    def mount(
        self, src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
    ) -> bool:
        def enc(text: str | None) -> bytes | None:
            return None if text is None else text.encode()

        return self.libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) == 0

    def mount_setattr(self, path: str, set_flags: int, clear_flags: int) -> bool:
        """Change the flags of ``path`` and every mount below it (Linux 5.12+)."""
        attr = self.MountAttr(set_flags, clear_flags, 0, 0)
        ct = self.ctypes
        return (
            self.libc.syscall(
                _SYS_MOUNT_SETATTR,
                _AT_FDCWD,
                path.encode(),
                _AT_RECURSIVE,
                ct.byref(attr),
                ct.sizeof(attr),
            )
            == 0
        )

    def drop_capabilities(self) -> bool:
        """No capabilities left, and none to be gained by exec (no_new_privs)."""
        self.libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        self.libc.prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)  # clear all ambient capabilities
        header, data = self.CapHeader(_CAP_V3, 0), (self.CapData * 2)()
        return self.libc.capset(self.ctypes.byref(header), data) == 0


def _read_only_except(kernel: Kernel, work: str) -> bool:
    """Every mount read-only but ``work``: one recursive ``mount_setattr``, then ``work`` made
    writable again; older kernels remount each mount point in turn."""
    if kernel.mount_setattr("/", _MOUNT_ATTR_RDONLY, 0):
        return kernel.mount_setattr(work, 0, _MOUNT_ATTR_RDONLY)
    ok = True
    for point, keep in _mount_points():
        if point != work and not point.startswith(work + "/"):
            ok &= (
                kernel.mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep)
                or point != "/"
            )
    return ok


WORK_DIR_IN_NAMESPACE = "/tmp"


def lock_down(kernel: Kernel, hidden: list[str], disk_bytes: int) -> dict[str, bool]:
    """Inside fresh mount and PID namespaces (``namespace_flags``): mount a private /proc,
    hide ``hidden`` paths, give the sample a fresh tmpfs of ``disk_bytes`` as /tmp (its work
    directory), make every other mount read-only, and drop every capability. Each step that
    fails is reported as not achieved rather than stopping the run."""
    done = dict.fromkeys(
        ("private_proc", "hidden_paths", "work_dir", "read_only_fs", "no_capabilities"), False
    )
    try:
        # Private propagation so nothing done here leaks back to the host, and a /proc that
        # shows only this PID namespace (no other process's environment or command line).
        kernel.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        done["private_proc"] = kernel.mount(
            "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
        )
        # One empty read-only tmpfs, bound over every hidden directory; /dev/null over files.
        empty, hidden_ok = None, True
        for path in hidden:
            if os.path.isdir(path):
                if empty is None:
                    hidden_ok &= kernel.mount(
                        "tmpfs",
                        path,
                        "tmpfs",
                        _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
                        "size=4k,mode=0555",
                    )
                    empty = path
                else:
                    hidden_ok &= kernel.mount(empty, path, None, _MS_BIND)
            elif os.path.exists(path):
                hidden_ok &= kernel.mount("/dev/null", path, None, _MS_BIND)
        done["hidden_paths"] = hidden_ok
        # A fresh, size-limited tmpfs as /tmp: the sample cannot fill the disk or see other
        # samples' files, and what it writes vanishes with the namespace.
        work = WORK_DIR_IN_NAMESPACE
        done["work_dir"] = kernel.mount(
            "tmpfs", work, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={disk_bytes},mode=0700"
        )
        if done["work_dir"]:
            done["read_only_fs"] = _read_only_except(kernel, work)
        done["no_capabilities"] = kernel.drop_capabilities()
    except (OSError, AttributeError, ValueError):
        pass
    finally:
        # Untrusted code must import ctypes afresh; it cannot reach the functions used here.
        for name in [
            m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))
        ]:
            del sys.modules[name]
    return done


def set_limits(limits: dict) -> None:
    def cap(kind: int, value: int) -> None:
        try:
            _, hard = resource.getrlimit(kind)
            hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
            resource.setrlimit(kind, (min(value, hard), hard))
        except (ValueError, OSError):
            pass

    cpu = int(limits["cpu_seconds"])
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    cap(resource.RLIMIT_AS, limits["memory_bytes"])
    cap(resource.RLIMIT_FSIZE, limits["file_bytes"])
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, 256)
    if limits.get("nproc"):
        cap(resource.RLIMIT_NPROC, limits["nproc"])


# ----------------------------------------------------------------------------------------
# The audit hook: defence in depth behind the namespaces, and the only guard without them.
# ----------------------------------------------------------------------------------------

_REFUSED_EVENTS = frozenset(
    {
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "pty.spawn",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "socket.__new__",
        "socket.bind",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.sendto",
        "socket.sendmsg",
        "ctypes.dlsym",
        "ctypes.dlsym/handle",
        "ctypes.cdata",
        "ctypes.cdata/buffer",
        "ctypes.addressof",
        "ctypes.call_function",
        "ctypes.PyObj_FromPtr",
        "ctypes.string_at",
        "ctypes.wstring_at",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._current_frames",
        "sys.settrace",
        "sys.setprofile",
        "code.__new__",
        "function.__new__",
        "os.chroot",
        "os.setuid",
        "os.setgid",
        "resource.setrlimit",
        "resource.prlimit",
        "webbrowser.open",
        "urllib.Request",
        "ftplib.connect",
        "smtplib.connect",
        "http.client.connect",
        "telnetlib.Telnet.open",
        "imaplib.open",
        "poplib.connect",
    }
)
# ctypes itself may be imported (numpy does, calling only dlopen(None)); looking up or calling
# a foreign function is refused above.
_REFUSED_IMPORTS = frozenset({"cffi", "_xxsubinterpreters", "_testcapi", "_testinternalcapi"})
# Events whose first (and for some, second) argument is a path that gets changed.
_WRITE_EVENTS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.utime",
        "os.chflags",
        "os.mkfifo",
        "os.mknod",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.copytree",
        "shutil.move",
        "shutil.chown",
        "os.setxattr",
        "os.removexattr",
    }
)
_CODE_ATTRIBUTES = frozenset({"__code__", "__globals__", "__closure__"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def install_audit_hook(work_dir: str, hidden: tuple[str, ...], report: object) -> None:
    """Refuse the operations untrusted code has no business doing, and report each attempt
    through ``report`` (which writes a line to the result channel) before refusing it."""
    inside = (work_dir, work_dir + os.sep)
    hidden_prefixes = tuple(p.rstrip("/") for p in hidden)

    def resolve(path: object) -> str | None:
        # Only plain paths: converting other objects could run their code inside the hook.
        if type(path) is bytes:
            path = path.decode("utf-8", "surrogateescape")
        if type(path) is not str:
            return None
        return os.path.normpath(os.path.join(work_dir, path))

    def outside(path: object) -> bool:
        resolved = resolve(path)
        return resolved is None or not (resolved == inside[0] or resolved.startswith(inside[1]))

    def is_hidden(path: object) -> bool:
        resolved = resolve(path)
        return resolved is not None and any(
            resolved == p or resolved.startswith(p + "/") for p in hidden_prefixes
        )

    def refuse(event: str, detail: str) -> None:
        report(f"{event} {detail}"[:300])
        raise PermissionError(f"sandbox: {event} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event in _REFUSED_EVENTS:
            refuse(event, "")
        elif event == "ctypes.dlopen":
            if args and args[0] is not None:
                refuse(event, repr(args[0])[:100])
        elif event == "import":
            if args and args[0] in _REFUSED_IMPORTS:
                refuse(event, str(args[0]))
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if type(path) is int:
                return  # an fd already open: nothing new is reached
            writes = (type(flags) is int and flags & _WRITE_FLAGS) or (
                type(mode) is str and any(c in mode for c in "wax+")
            )
            if writes and outside(path):
                refuse(event, f"write {path!r}")
            if is_hidden(path):
                refuse(event, f"read {path!r}")
        elif event in _WRITE_EVENTS:
            targets = (
                args[:2]
                if event
                in (
                    "os.rename",
                    "os.symlink",
                    "os.link",
                    "shutil.move",
                    "shutil.copyfile",
                    "shutil.copytree",
                )
                else args[:1]
            )
            if any(outside(t) for t in targets if type(t) is not int):
                refuse(event, repr(targets)[:200])
        elif event == "object.__setattr__" and len(args) >= 2 and args[1] in _CODE_ATTRIBUTES:
            refuse(event, str(args[1]))  # rewriting a function's code could neuter this hook

    sys.addaudithook(hook)


# ----------------------------------------------------------------------------------------
# Running the job
# ----------------------------------------------------------------------------------------


class _CallTimeout(BaseException):
    """Raised by SIGALRM inside a call; a BaseException so that ``except Exception`` in the
    code under test does not swallow it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _CallTimeout()


def _describe(exc: BaseException) -> list[str]:
    try:
        message = str(exc)
    except BaseException:  # a hostile __str__
        message = ""
    return [type(exc).__name__, message[:500]]


_to_json = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


class Channel:
    """Writes JSON lines to the result pipe. One ``os.write`` per line keeps short lines
    atomic; the parent skips any line that is not valid JSON."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict) -> None:
        self.write(_to_json(message))

    def result(self, index: int, key: str, value: object, seconds: float) -> None:
        """One call's line, ``{"i": index, key: value, "s": seconds}``, formatted directly:
        the result channel carries a line per call."""
        self.write(f'{{"i":{index},"{key}":{_to_json(value)},"s":{seconds!r}}}')

    def write(self, line: str) -> None:
        data = (line + "\n").encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:  # the parent is gone or the channel was closed by the code under test
            os._exit(3)


def run_calls(job: dict, channel: Channel) -> dict[str, float]:
    """Run the calls; returns seconds spent loading the code, in the calls themselves and
    encoding their results (diagnostics only: the code under test could forge them)."""
    namespace: dict = {"__name__": "solution", "__builtins__": __builtins__}
    seconds = {"load": 0.0, "run": 0.0, "encode": 0.0}
    start = time.perf_counter()
    try:
        exec(compile(job["code"], "<solution>", "exec"), namespace)
        if job.get("setup"):
            exec(compile(job["setup"], "<test setup>", "exec"), namespace)
    except _CallTimeout:
        channel.send({"load": ["Timeout", "loading the code took too long"]})
        return seconds
    except BaseException as e:  # SystemExit and KeyboardInterrupt are failures too
        channel.send({"load": _describe(e)})
        return seconds
    seconds["load"] = time.perf_counter() - start
    signal.signal(signal.SIGALRM, _on_alarm)
    digest_over = int(job.get("digest_over") or 0)
    for index, call in enumerate(job["calls"]):
        fn = namespace.get(call["fn"])
        if not callable(fn):
            channel.send(
                {"i": index, "err": ["NameError", f"{call['fn']!r} is not defined"], "s": 0.0}
            )
            continue
        start = time.perf_counter()
        try:
            args = decode(call["args"], namespace)
            kwargs = decode(call["kwargs"], namespace) if "kwargs" in call else {}
            signal.setitimer(signal.ITIMER_REAL, call["limit"])
            called = time.perf_counter()
            result = fn(*args, **kwargs)
            returned = time.perf_counter()
            value = output_payload(result, "digest" in call, digest_over)
            signal.setitimer(signal.ITIMER_REAL, 0)
            seconds["run"] += returned - called
            seconds["encode"] += time.perf_counter() - returned
            channel.result(index, "ok", value, time.perf_counter() - start)
        except _CallTimeout:
            channel.result(index, "timeout", True, time.perf_counter() - start)
            return seconds  # the rest would only time out too; the wall clock is shared
        except BaseException as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            channel.result(index, "err", _describe(e), time.perf_counter() - start)
    return seconds


def run_record(job: dict, channel: Channel) -> None:
    """Run trusted test code against trusted reference code, recording every top-level call
    to the wrapped functions: their arguments become the inputs that untrusted code gets."""
    namespace: dict = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(compile(job["code"], "<reference>", "exec"), namespace)
        if job.get("setup"):
            exec(compile(job["setup"], "<test setup>", "exec"), namespace)
    except BaseException as e:
        channel.send({"load": _describe(e)})
        return
    depth = [0]

    def recorder(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if depth[0]:
                return fn(*args, **kwargs)  # recursion inside the reference is not a test call
            try:
                encoded = [encode(list(args), namespace), encode(kwargs, namespace)]
            except (CodecError, RecursionError) as e:
                channel.send({"record_error": f"{name}: argument cannot be sent ({e})"})
                raise
            depth[0] += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                channel.send({"call": [name, *encoded], "s": time.perf_counter() - start})

        return wrapper

    for name in job["wrap"]:
        if callable(namespace.get(name)):
            namespace[name] = recorder(name, namespace[name])
    random.seed(job.get("seed", 0))
    try:
        exec(compile(job["script"], "<test>", "exec"), namespace)
    except BaseException as e:
        channel.send({"script": _describe(e)})


def run_job(job_path: str, fd: int, kernel: Kernel | None) -> None:
    """The sample's own process, from trusted set-up to untrusted code. Never returns."""
    try:
        with open(job_path, encoding="utf-8") as f:
            job = json.load(f)
        os.unlink(job_path)
    except (OSError, ValueError):
        os._exit(4)
    channel = Channel(fd)
    work_dir = job["work_dir"]  # on the host; used only when namespaces are refused
    namespaces = kernel is not None
    isolation = {"namespaces": namespaces}
    if kernel is not None:
        isolation.update(lock_down(kernel, job.get("hidden", []), job["limits"]["disk_bytes"]))
        if isolation["work_dir"]:
            work_dir = WORK_DIR_IN_NAMESPACE
    if work_dir != WORK_DIR_IN_NAMESPACE:
        os.makedirs(work_dir, mode=0o700, exist_ok=True)
    set_limits(job["limits"])
    os.environ["HOME"] = os.environ["TMPDIR"] = work_dir
    sys.path.extend(job.get("extra_paths", []))
    os.chdir(work_dir)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
    channel.send({"ready": isolation})
    hidden = tuple(job.get("hidden", []))
    if not namespaces:
        hidden += ("/proc",)  # other processes' environments; namespaces give a private /proc
    install_audit_hook(work_dir, hidden, lambda text: channel.send({"violation": text}))
    # Set-up is done; wait for the parent's "go" (it runs set-ups ahead of free CPU slots,
    # and the sample's clock starts now).
    if os.read(GO_FD, 1) != b"g":
        os._exit(5)
    os.close(GO_FD)
    seconds: dict[str, float] = {}
    if job["mode"] == "record":
        run_record(job, channel)
    else:
        seconds = run_calls(job, channel)
    channel.send({"done": True, "seconds": seconds})
    sys.stdout.flush()
    os._exit(0)  # skip atexit handlers and non-daemon threads left by the code under test


# ----------------------------------------------------------------------------------------
# The zygote: a clean, single-threaded, trusted process that forks one sandbox per sample.
# Forking it costs a few milliseconds where a fresh interpreter costs tens. It never sees a
# job's content (the sample reads its own job file), so one sample cannot find another's.
# ----------------------------------------------------------------------------------------

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000


def namespace_flags(user: bool) -> int:
    """New mount, PID, network, IPC and UTS namespaces; with ``user``, a user namespace too
    (how non-root users get the rest)."""
    flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS
    return flags | (_CLONE_NEWUSER if user else 0)


def map_caller_to_root(uid: int, gid: int) -> bool:
    """In a fresh user namespace: map the caller (``uid``/``gid`` outside) to root inside it."""
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {uid} 1"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError:
        return False
    return True


RESULT_FD, GO_FD = 3, 4


def _sample_process(
    request: dict, fds: list[int], kernel: Kernel, namespaces: bool, ids: tuple[int, int]
) -> None:
    """In the zygote's child, already in its new namespaces when ``namespaces`` (as PID 1 of
    its own PID namespace): become the sample. ``ids``: the zygote's uid and gid, mapped to
    root in a new user namespace. Never returns."""
    try:
        result_fd, out_fd, err_fd, go_fd = fds
        os.setsid()  # its own process group, killed as a whole
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in (
            (null, 0),
            (out_fd, 1),
            (err_fd, 2),
            (result_fd, RESULT_FD),
            (go_fd, GO_FD),
        ):
            os.dup2(source, target)
        os.closerange(GO_FD + 1, 1 << 16)  # the zygote's socket and everything else
        if namespaces and request.get("user"):
            namespaces = map_caller_to_root(*ids)
        run_job(request["job"], RESULT_FD, kernel if namespaces else None)
    except BaseException:  # noqa: BLE001 - nothing may escape into the zygote's loop
        os._exit(70)
    os._exit(70)


# The standard modules the benchmarks' programs import most (HumanEval's prompts import
# typing; MBPP's solutions heapq, bisect, operator and cmath; json and the codec already
# bring re, math, collections, itertools and functools), loaded once in the zygote rather
# than in every sample.
PRELOADED = ("typing", "heapq", "bisect", "operator", "cmath", "string")
_WARM_UP_SOURCE = """
from typing import List


def f(xs: List[int], k: int = 2) -> list:
    seen = {x: i for i, x in enumerate(xs) if x % k == 0}
    return sorted((lambda y: [y, f"{y!r}"])(x) for x in seen)
"""


def warm_up() -> None:
    """Load ``PRELOADED`` and compile a small program, so that each sample inherits both: a
    process's first compile costs about a millisecond more than the next ones."""
    for name in PRELOADED:
        __import__(name)
    compile(_WARM_UP_SOURCE, "<warm-up>", "exec")


def zygote(sock_fd: int) -> None:
    """Serve requests on a SOCK_SEQPACKET socket. ``{"op": "spawn", "id", "job", ...}`` comes
    with four file descriptors (result pipe, stdout, stderr, go pipe) and is answered with
    ``{"id", "pid"}`` at once and ``{"id", "status"}`` when that sample ends; ``{"op": "kill",
    "id"}`` kills a sample's process group if it is still there. Exits, killing what is left,
    when the parent goes away."""
    import select
    import socket

    kernel = Kernel()
    ids = os.getuid(), os.getgid()
    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up byte is written
    pids: dict[object, int] = {}  # request id -> pid, until reaped
    on_cpus = None  # the cores this zygote was last asked to work on
    warm_up()
    import gc

    gc.freeze()  # a sample's collections then skip the zygote's objects: fewer pages copied

    def reply(message: dict) -> None:
        sock.send(json.dumps(message).encode())

    def reap() -> None:
        while pids:
            # Peek first: while the child is an unreaped zombie its group id cannot be reused,
            # so killing what is left of the group is safe.
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is None:
                return
            with contextlib.suppress(OSError):
                os.killpg(info.si_pid, signal.SIGKILL)
            _, status = os.waitpid(info.si_pid, 0)
            request_id = next((k for k, v in pids.items() if v == info.si_pid), None)
            if request_id is not None:
                del pids[request_id]
                reply({"id": request_id, "status": status})

    try:
        while True:
            ready, _, _ = select.select([sock, wake_r], [], [])
            if wake_r in ready:
                os.read(wake_r, 4096)
                reap()
            if sock not in ready:
                continue
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
            if not message:
                break  # the parent is gone
            request = json.loads(message)
            if request.get("op") == "kill":
                if request["id"] in pids:
                    with contextlib.suppress(OSError):
                        os.killpg(pids[request["id"]], signal.SIGKILL)
                continue
            cpus = request.get("cpus")
            if cpus and cpus != on_cpus:  # work where the one asking works; the sample inherits
                with contextlib.suppress(OSError, ValueError, TypeError):
                    os.sched_setaffinity(0, cpus)
                    on_cpus = cpus
            flags = namespace_flags(bool(request.get("user")))
            pid = kernel.fork_into(flags) if request.get("namespaces") else None
            namespaces = pid is not None  # else refused: the sample relies on the audit hook
            if pid is None:
                pid = os.fork()
            if pid == 0:
                sock.close()
                _sample_process(request, fds, kernel, namespaces, ids)
            for fd in fds:
                os.close(fd)
            pids[request["id"]] = pid
            reply({"id": request["id"], "pid": pid})
    except (OSError, ValueError):
        pass
    for pid in pids.values():
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    os._exit(0)


if __name__ == "__main__":
    sys.path.pop(0)  # this file's directory: the package's modules are not for code under test
    zygote(int(sys.argv[1]))

"""The code that runs *inside* a sandbox process; the trusted side is ``pareto_bench.sandbox``.

It runs as a *zygote* (``python -S -s -B sandbox_child.py SOCKET_FD``, with a scrubbed
environment): a clean single-threaded process that forks one sandbox per sample, so no sample
pays for an interpreter start. It imports nothing but the standard library. It also holds the
value codec, which the parent imports to decode what comes back.

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
import hashlib
import json
import marshal
import math
import os
import random
import resource
import signal
import sys
import time

# ----------------------------------------------------------------------------------------
# Value codec: tagged JSON. Lists, str, int, finite float, bool and None are plain JSON;
# every other value is an object {"t": tag, "v": payload}. Plain dicts never appear as
# JSON objects, so a payload cannot be mistaken for a tag.
# ----------------------------------------------------------------------------------------

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000  # items taken from an iterator before giving up
_BIG_INT_BITS = 8000  # beyond this, ints travel as hex (JSON's decimal path has a digit limit)


class Opaque:
    """A value the codec cannot carry (a custom object, a numpy array...). It is not None and
    equals nothing but itself, so a test can see that *something* came back, and no more."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<opaque {self.type_name}>"

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class Ref:
    """An argument that is a named object of the test fixture (MBPP's tree ``Node``\\ s)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Ref({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Ref", self.name))


class Digest:
    """Stands for a large output by hashes of it: ``m:`` of its marshal bytes (fast; exact
    types and order) and ``c:`` of its canonical encoding (see ``canonical``; equal under
    ``==`` gives equal hashes). Two digests are equal when they share a hash, so exact
    comparisons need not ship the value."""

    __slots__ = ("hashes",)

    def __init__(self, hashes: frozenset[str]) -> None:
        self.hashes = hashes

    def __repr__(self) -> str:
        return f"<digest {sorted(self.hashes)}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digest) and not self.hashes.isdisjoint(other.hashes)

    def __hash__(self) -> int:
        return 0  # equality is not transitive; never used as a key


class CodecError(ValueError):
    pass


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode(obj: object, refs: dict | None = None, _depth: int = 0) -> object:
    """Plain, JSON-ready data for ``obj``. Subclasses of builtin types are read through the
    base type's own methods, so an overridden ``__eq__`` or ``__repr__`` cannot travel.
    ``refs``: a namespace whose named objects may be passed by name (``Ref``)."""
    if _depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    cls = type(obj)
    if obj is None or cls is bool or cls is str:
        return obj
    if cls is int:
        return obj if obj.bit_length() <= _BIG_INT_BITS else {"t": "int", "v": hex(obj)}
    if cls is float:
        return obj if math.isfinite(obj) else {"t": "float", "v": repr(obj)}
    if cls is list:
        return [encode(x, refs, _depth + 1) for x in obj]
    if cls is tuple:
        return {"t": "tuple", "v": [encode(x, refs, _depth + 1) for x in obj]}
    if cls is dict:
        return {
            "t": "dict",
            "v": [
                [encode(k, refs, _depth + 1), encode(v, refs, _depth + 1)] for k, v in obj.items()
            ],
        }
    if cls is set or cls is frozenset:
        items = [encode(x, refs, _depth + 1) for x in obj]
        # Sorted by text so that the encoding does not depend on hash order.
        items.sort(key=lambda x: json.dumps(x, sort_keys=True))
        return {"t": "set" if cls is set else "frozenset", "v": items}
    if cls is bytes or cls is bytearray:
        return {"t": cls.__name__, "v": bytes(obj).hex()}
    if cls is complex:
        return {"t": "complex", "v": [encode(obj.real), encode(obj.imag)]}
    if cls is range:
        return {"t": "range", "v": [obj.start, obj.stop, obj.step]}
    if cls is type(Ellipsis):
        return {"t": "ellipsis", "v": None}
    if refs is not None:
        for name, value in refs.items():
            if value is obj and isinstance(name, str) and not name.startswith("__"):
                return {"t": "ref", "v": name}
    # Subclasses of builtin types: take the plain value through the base type.
    if isinstance(obj, bool):
        return bool(int.__int__(obj))
    if isinstance(obj, int):
        return encode(int.__int__(obj), refs, _depth)
    if isinstance(obj, float):
        return encode(float.__float__(obj), refs, _depth)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, list):
        return encode(list.copy(obj), refs, _depth)
    if isinstance(obj, tuple):  # namedtuples land here and compare like tuples
        return encode(tuple.__getitem__(obj, slice(None)), refs, _depth)
    if isinstance(obj, dict):  # OrderedDict, defaultdict, Counter
        return encode(dict.copy(obj), refs, _depth)
    if isinstance(obj, frozenset):
        return encode(frozenset.copy(obj), refs, _depth)
    if isinstance(obj, set):
        return encode(set.copy(obj), refs, _depth)
    if isinstance(obj, complex):
        return encode(complex.__complex__(obj), refs, _depth)
    if isinstance(obj, bytes):
        return encode(bytes.__bytes__(obj), refs, _depth)
    module, name = getattr(cls, "__module__", ""), getattr(cls, "__name__", "")
    if module == "fractions" and name == "Fraction":
        num, den = obj.numerator, obj.denominator
        if type(num) is int and type(den) is int:
            return {"t": "fraction", "v": [encode(num), encode(den)]}
    if module == "decimal" and name == "Decimal":
        return {"t": "decimal", "v": str.__str__(str(obj))}
    if module == "numpy" and getattr(obj, "ndim", None) == 0 and hasattr(obj, "item"):
        return encode(obj.item(), refs, _depth + 1)  # numpy scalars behave like Python numbers
    if name in ("dict_keys", "dict_values", "dict_items") and module == "builtins":
        return {"t": name, "v": [encode(x, refs, _depth + 1) for x in obj]}
    if hasattr(cls, "__next__") and hasattr(cls, "__iter__"):  # generators, map, zip...
        items = []
        for item in obj:
            if len(items) >= MAX_ITEMS:
                raise CodecError("iterator too long")
            items.append(encode(item, refs, _depth + 1))
        return {"t": "iter", "v": items}
    return {"t": "opaque", "v": _type_name(obj)}


def decode(data: object, refs: dict | None = None, _depth: int = 0) -> object:
    """Rebuild a value from ``encode``'s output. Builds only builtin (and Fraction/Decimal)
    values, never runs code from the data. ``refs``: resolve ``Ref``\\ s in this namespace
    (without it they stay ``Ref`` objects). Raises ``CodecError`` on anything malformed."""
    try:
        return _decode(data, refs, _depth)
    except CodecError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, ArithmeticError) as e:
        raise CodecError(f"malformed value: {type(e).__name__}: {e}") from None


_PLAIN = (bool, int, float, str)


def _decode(data: object, refs: dict | None, depth: int) -> object:
    if depth > MAX_DEPTH + 2:
        raise CodecError("value nested too deeply")
    cls = type(data)
    if data is None or cls in _PLAIN:
        return data
    if cls is list:  # plain items are kept as they are: the common case, made cheap
        return [x if x is None or type(x) in _PLAIN else _decode(x, refs, depth + 1) for x in data]
    if cls is not dict or set(data) != {"t", "v"}:
        raise CodecError(f"unexpected {cls.__name__} in encoded value")
    tag, v = data["t"], data["v"]
    if tag == "tuple":
        return tuple(_decode(x, refs, depth + 1) for x in _as_list(v))
    if tag == "dict":
        return {_decode(k, refs, depth + 1): _decode(x, refs, depth + 1) for k, x in _pairs(v)}
    if tag == "set":
        return {_decode(x, refs, depth + 1) for x in _as_list(v)}
    if tag == "frozenset":
        return frozenset(_decode(x, refs, depth + 1) for x in _as_list(v))
    if tag == "int":
        return int(_as_str(v), 16)
    if tag == "float":
        if v not in ("nan", "inf", "-inf"):
            raise CodecError(f"bad float {v!r}")
        return float(v)
    if tag == "bytes":
        return bytes.fromhex(_as_str(v))
    if tag == "bytearray":
        return bytearray.fromhex(_as_str(v))
    if tag == "complex":
        re_, im = _as_list(v)
        return complex(
            _number(_decode(re_, None, depth + 1)), _number(_decode(im, None, depth + 1))
        )
    if tag == "range":
        start, stop, step = _as_list(v)
        if not all(type(x) is int for x in (start, stop, step)):
            raise CodecError("bad range")
        return range(start, stop, step)
    if tag == "ellipsis":
        return ...
    if tag == "fraction":
        from fractions import Fraction

        num, den = (_decode(x, None, depth + 1) for x in _as_list(v))
        if type(num) is not int or type(den) is not int:
            raise CodecError("bad fraction")
        return Fraction(num, den)
    if tag == "decimal":
        from decimal import Decimal

        return Decimal(_as_str(v))
    if tag == "dict_keys":
        return dict.fromkeys(_decode(x, refs, depth + 1) for x in _as_list(v)).keys()
    if tag == "dict_values":
        return {i: _decode(x, refs, depth + 1) for i, x in enumerate(_as_list(v))}.values()
    if tag == "dict_items":
        return dict(_decode(x, refs, depth + 1) for x in _as_list(v)).items()
    if tag == "iter":
        return iter([_decode(x, refs, depth + 1) for x in _as_list(v)])
    if tag == "opaque":
        return Opaque(_as_str(v))
    if tag == "digest":
        hashes = _as_list(v)
        if not hashes or not all(type(h) is str and h[:2] in ("m:", "c:") for h in hashes):
            raise CodecError("bad digest")
        return Digest(frozenset(hashes))
    if tag == "ref":
        name = _as_str(v)
        if refs is None:
            return Ref(name)
        if name not in refs:
            raise CodecError(f"unknown fixture {name!r}")
        return refs[name]
    raise CodecError(f"unknown tag {tag!r}")


def canonical(data: object) -> object:
    """An encoded value rewritten so that values equal under ``==`` look the same: bools and
    integral floats as ints, complex numbers with no imaginary part as their real part, sets
    as one kind, and dict entries and set items sorted."""
    cls = type(data)
    if cls is bool:
        return int(data)
    if cls is float:
        return int(data) if data.is_integer() else data
    if cls is list:
        return [canonical(x) for x in data]
    if cls is not dict:
        return data
    tag, v = data.get("t"), data.get("v")
    if tag in ("set", "frozenset", "dict"):
        if tag == "dict":
            items = [[canonical(k), canonical(x)] for k, x in v]
        else:
            items = [canonical(x) for x in v]
        items.sort(key=lambda x: json.dumps(x))
        return {"t": "dict" if tag == "dict" else "set", "v": items}
    if tag == "complex" and v[1] == 0:
        return canonical(v[0])
    if tag in ("tuple", "iter", "dict_keys", "dict_values", "dict_items"):
        return {"t": tag, "v": [canonical(x) for x in v]}
    return data


def digest(data: object) -> str:
    """The hash of an encoded value's canonical form."""
    return _hash_canonical(canonical(data))


def _hash_canonical(form: object) -> str:
    text = json.dumps(form, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def value_digest(value: object) -> str:
    """``digest(encode(value))``. A flat list of plain scalars, the usual large output, is
    brought to its canonical form in one pass, or none at all when it holds only strings or
    only ints."""
    flat = _canonical_scalars(value) if type(value) is list else None
    return digest(encode(value)) if flat is None else _hash_canonical(flat)


def _canonical_scalars(value: list) -> list | None:
    """``canonical(encode(value))`` for a list of None, bools, ints, floats and strings; None
    for a list that holds anything else."""
    if all(type(x) is str for x in value):
        return value
    ints = all(type(x) is int for x in value)
    if ints and max(map(int.bit_length, value), default=0) <= _BIG_INT_BITS:
        return value
    form = []
    append = form.append
    for x in value:
        cls = type(x)
        if cls is int:
            append(x if x.bit_length() <= _BIG_INT_BITS else {"t": "int", "v": hex(x)})
        elif cls is float:
            if not math.isfinite(x):
                append({"t": "float", "v": repr(x)})
            else:
                append(int(x) if x.is_integer() else x)
        elif cls is str or x is None:
            append(x)
        elif cls is bool:
            append(int(x))
        else:
            return None
    return form


CANONICAL_LIMIT = 32 << 20  # beyond this size a sample's output is hashed by marshal bytes only


def _marshalled(value: object) -> bytes | None:
    """marshal handles exact builtin types only, so a subclass with tricks cannot pass."""
    try:
        return marshal.dumps(value, 2)
    except (ValueError, TypeError, RecursionError):
        return None


def _is_floats(value: object) -> bool:
    """EvalPlus switches on a tolerance for these outputs, which needs the values."""
    if type(value) is float:
        return True
    return type(value) in (list, tuple) and bool(value) and all(type(x) is float for x in value)


def output_payload(value: object, digest_mode: bool, digest_over: int) -> object:
    """What to send for one output. ``digest_mode``: the parent compares this output by
    digest. ``digest_over`` (reference runs): send outputs larger than this as digests."""
    if digest_mode:
        packed = _marshalled(value)
        hashes = [] if packed is None else ["m:" + hashlib.sha256(packed).hexdigest()]
        if packed is None or len(packed) <= CANONICAL_LIMIT:
            hashes.append("c:" + value_digest(value))
        return {"t": "digest", "v": hashes}
    if not digest_over:
        return encode(value)
    packed = _marshalled(value)
    if _is_floats(value) or (packed is not None and len(packed) <= digest_over):
        return encode(value)
    if packed is not None and len(packed) > CANONICAL_LIMIT:
        return {"t": "digest", "v": ["m:" + hashlib.sha256(packed).hexdigest()]}
    encoded = encode(value)
    if packed is None and len(json.dumps(encoded)) <= digest_over:
        return encoded
    hashes = ["c:" + digest(encoded)]
    if packed is not None:
        hashes.append("m:" + hashlib.sha256(packed).hexdigest())
    return {"t": "digest", "v": hashes}


def _as_list(v: object) -> list:
    if type(v) is not list:
        raise CodecError("expected a list")
    return v


def _as_str(v: object) -> str:
    if type(v) is not str:
        raise CodecError("expected a string")
    return v


def _number(v: object) -> float:
    if type(v) not in (int, float):
        raise CodecError("expected a number")
    return v


def _pairs(v: object) -> list:
    pairs = _as_list(v)
    if not all(type(p) is list and len(p) == 2 for p in pairs):
        raise CodecError("expected key/value pairs")
    return pairs


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


class Channel:
    """Writes JSON lines to the result pipe. One ``os.write`` per line keeps short lines
    atomic; the parent skips any line that is not valid JSON."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict) -> None:
        data = (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode()
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
            kwargs = decode(call.get("kwargs", {"t": "dict", "v": []}), namespace)
            signal.setitimer(signal.ITIMER_REAL, call["limit"])
            called = time.perf_counter()
            result = fn(*args, **kwargs)
            returned = time.perf_counter()
            value = output_payload(result, bool(call.get("digest")), digest_over)
            signal.setitimer(signal.ITIMER_REAL, 0)
            seconds["run"] += returned - called
            seconds["encode"] += time.perf_counter() - returned
            channel.send({"i": index, "ok": value, "s": time.perf_counter() - start})
        except _CallTimeout:
            channel.send({"i": index, "timeout": True, "s": time.perf_counter() - start})
            return seconds  # the rest would only time out too; the wall clock is shared
        except BaseException as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            channel.send({"i": index, "err": _describe(e), "s": time.perf_counter() - start})
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
    sys.path.pop(
        0
    )  # this file's directory: the package's own modules are not for the code under test
    zygote(int(sys.argv[1]))

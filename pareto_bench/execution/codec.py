"""The value codec between a sandbox and the trusted side: tagged JSON, and digests of values
too large to send. Standard library only: the sandbox's zygote imports it as a sibling file
(``codec``), the trusted side as ``pareto_bench.execution.codec``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import marshal
import math
import operator
from array import array

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
    """The hash of an encoded value's canonical form (or of its bytes: ``_direct_digest``)."""
    return _direct_digest(data) or _hash_canonical(canonical(data))


def _hash_canonical(form: object) -> str:
    text = json.dumps(form, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def value_digest(value: object) -> str:
    """``digest(encode(value))``. A flat list of plain scalars, the usual large output, is
    hashed by its numbers' bytes, or brought to its canonical form in one pass (none at all
    when it holds only strings or only ints)."""
    return _direct_digest(value) or _canonical_digest(value)


def _canonical_digest(value: object) -> str:
    """``value_digest`` of a value that ``_direct_digest`` does not take."""
    flat = _canonical_scalars(value) if type(value) is list else None
    return digest(encode(value)) if flat is None else _hash_canonical(flat)


def _direct_digest(value: object) -> str | None:
    """The digest of a string or a flat list of numbers, hashed from their bytes (a few passes
    in C, where the canonical JSON costs a Python step per item); None for other values. A
    prefix keeps these hashes apart from those of JSON texts."""
    if type(value) is str:
        return hashlib.sha256(b"str:" + value.encode("utf-8", "surrogatepass")).hexdigest()
    return _numbers_digest(value) if type(value) is list else None


_NUMBER_TYPES = frozenset({int, float, bool})
_EXACT_IN_FLOAT = 1 << 53  # ints up to this size are doubles exactly, and equal to them


def _numbers_digest(items: list) -> str | None:
    """The digest of a flat list of ints, floats and bools, each a double exactly (within
    2**53, so no NaN or infinity either): the hash of their float64 bytes. Values equal under
    ``==`` give the same bytes (-0.0 is made 0.0). None for any other list."""
    if not set(map(type, items)) <= _NUMBER_TYPES:
        return None
    if items and (min(items) < -_EXACT_IN_FLOAT or max(items) > _EXACT_IN_FLOAT):
        return None
    packed = array("d", items)
    if not math.isfinite(sum(packed)):  # a NaN, which min and max do not see
        return None
    if packed.count(0.0):  # -0.0 counts too
        packed = array("d", map(operator.add, packed, itertools.repeat(0.0)))
    return hashlib.sha256(b"float64:" + packed.tobytes()).hexdigest()


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
        direct = _direct_digest(value)
        if direct:  # the one hash both sides have for these, whatever their size
            return {"t": "digest", "v": ["c:" + direct]}
        packed = _marshalled(value)
        hashes = [] if packed is None else ["m:" + hashlib.sha256(packed).hexdigest()]
        if packed is None or len(packed) <= CANONICAL_LIMIT:
            hashes.append("c:" + _canonical_digest(value))  # not direct: checked above
        return {"t": "digest", "v": hashes}
    if not digest_over:
        return encode(value)
    packed = _marshalled(value)
    if _is_floats(value) or (packed is not None and len(packed) <= digest_over):
        return encode(value)
    direct = _direct_digest(value)
    if direct:
        return {"t": "digest", "v": ["c:" + direct]}
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

"""Record: frozen, slotted value classes that cost microseconds, not milliseconds, to define.

Owns: the `Record` base (subclass it and annotate fields, as with a dataclass), `field()`,
`replace()`, `fields()`, `asdict()`. Must not: import anything beyond the standard library
modules already loaded at interpreter start.

Why not `@dataclass(frozen=True, slots=True)`: on Python 3.11 that costs ~0.45 ms per class
(several exec'd methods, the class built twice) plus ~4 ms to import dataclasses/inspect;
`pybuild run IMAGE true` has a 60 ms budget and its start-up path defines ~25 value classes.
A Record compiles one `__init__` per class and shares `__eq__`/`__hash__`/`__repr__`/
`__setattr__`, so a class costs ~30 µs and an instance as little as a dataclass's.

Semantics follow dataclasses where they overlap: fields in annotation order (base classes'
first), defaults and `field(default_factory=…, compare=…, repr=…)`, `__post_init__`,
`__match_args__`, equality only between instances of the same class, hash of the compared
fields when frozen (unhashable when not), pickling and copying. `class C(Record, frozen=False)`
makes a mutable record. Annotations are read as text (modules use `from __future__ import
annotations`); a `ClassVar[...]` annotation is not a field.
"""
from __future__ import annotations

from operator import attrgetter

__all__ = ["Record", "FrozenInstanceError", "field", "replace", "fields", "asdict", "is_record"]


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class Field:
    __slots__ = ("default", "default_factory", "compare", "repr")

    def __init__(self, default, default_factory, compare: bool, repr: bool) -> None:  # noqa: A002
        self.default, self.default_factory, self.compare, self.repr = default, default_factory, compare, repr


def field(*, default=MISSING, default_factory=MISSING, compare: bool = True, repr: bool = True):  # noqa: A002
    """A field with options, as `dataclasses.field` (the subset records support)."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, compare, repr)


def _frozen_setattr(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field {name!r} of frozen {type(self).__name__}")


def _frozen_delattr(self, name):
    raise FrozenInstanceError(f"cannot delete field {name!r} of frozen {type(self).__name__}")


def _annotations(ns: dict) -> dict:
    """The class body's annotations in order. Python 3.14 (PEP 649/749) evaluates them lazily:
    the namespace holds an `__annotate_func__` instead of `__annotations__` unless the module uses
    `from __future__ import annotations`. Evaluated as values first (no import); names not
    defined yet (forward references) fall back to annotationlib's text form."""
    anns = ns.get("__annotations__")
    if anns is not None:
        return anns
    annotate = ns.get("__annotate_func__") or ns.get("__annotate__")
    if annotate is None:
        return {}
    try:
        return annotate(1)  # annotationlib.Format.VALUE
    except NameError:
        import annotationlib  # 3.14+ only; needed only for forward references

        return annotationlib.call_annotate_function(annotate, annotationlib.Format.STRING)


class _RecordMeta(type):
    def __new__(mcls, name, bases, ns, frozen: bool | None = None):
        if not any(isinstance(b, _RecordMeta) for b in bases):  # Record itself
            return super().__new__(mcls, name, bases, ns)
        parent_fields: dict[str, Field] = {}
        parent_frozen = None
        for b in reversed(bases):
            if isinstance(b, _RecordMeta) and b.__dict__.get("_record_fields") is not None:
                parent_fields.update(b._record_fields)
                parent_frozen = b._record_frozen
        if frozen is None:
            frozen = True if parent_frozen is None else parent_frozen
        elif parent_frozen is not None and frozen != parent_frozen:
            raise TypeError(f"{name}: cannot mix frozen and mutable records in one hierarchy")
        own: dict[str, Field] = {}
        for fname, ann in _annotations(ns).items():
            text = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
            if text.startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = ns.pop(fname, MISSING)
            own[fname] = value if isinstance(value, Field) else Field(value, MISSING, True, True)
        specs = {**parent_fields, **own}
        ns["__slots__"] = tuple(n for n in own if n not in parent_fields)
        ns["_record_fields"] = specs
        ns["_record_frozen"] = frozen
        ns["__match_args__"] = tuple(specs)
        ns["_compare"] = compare = tuple(n for n, f in specs.items() if f.compare)
        # the compared fields as one tuple, by a C-level getter (eq/hash as fast as dataclasses')
        if len(compare) > 1:
            ns["_key"] = staticmethod(attrgetter(*compare))
        else:
            ns["_key"] = staticmethod(lambda obj, _get=attrgetter(*compare) if compare else None:
                                      (_get(obj),) if _get else ())
        ns["_shown"] = tuple(n for n, f in specs.items() if f.repr)
        if specs or "__init__" not in ns:
            ns.setdefault("__init__", _make_init(name, specs, frozen, ns.get("__post_init__") is not None
                                                 or any(hasattr(b, "__post_init__") for b in bases)))
        if frozen:
            ns.setdefault("__setattr__", _frozen_setattr)
            ns.setdefault("__delattr__", _frozen_delattr)
        elif "__hash__" not in ns:
            ns["__hash__"] = None  # mutable and compared by value: unhashable, as a dataclass
        return super().__new__(mcls, name, bases, ns)


def _make_init(cls_name: str, specs: dict[str, Field], frozen: bool, post_init: bool):
    params, body, env = [], [], {"MISSING": MISSING}
    seen_default = False
    setter = "__set(self, {n!r}, {v})" if frozen else "self.{n} = {v}"
    if frozen:
        env["__set"] = object.__setattr__
    for n, f in specs.items():
        if f.default is not MISSING:
            env[f"_d_{n}"] = f.default
            params.append(f"{n}=_d_{n}")
            value = n
            seen_default = True
        elif f.default_factory is not MISSING:
            env[f"_f_{n}"] = f.default_factory
            params.append(f"{n}=MISSING")
            value = f"_f_{n}() if {n} is MISSING else {n}"
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"{cls_name}: non-default field {n!r} follows a field with a default")
            params.append(n)
            value = n
        body.append(setter.format(n=n, v=value))
    if post_init:
        body.append("self.__post_init__()")
    src = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body or ["pass"]) + "\n"
    exec(src, env)  # noqa: S102 - the source is built from annotation names only
    init = env["__init__"]
    init.__qualname__ = f"{cls_name}.__init__"
    return init


class Record(metaclass=_RecordMeta):
    """Base of value classes: annotate fields in the subclass body (see the module doc)."""

    __slots__ = ()
    # set on each subclass: _record_fields {name: Field}, _record_frozen, _compare, _shown

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._shown)})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        # tuples, as dataclasses compare: an element is equal to itself before __eq__ is asked
        return self._key(self) == self._key(other)

    def __hash__(self) -> int:
        return hash(self._key(self))

    def __getstate__(self):
        return tuple(getattr(self, n) for n in self._record_fields)

    def __setstate__(self, state) -> None:
        for n, v in zip(self._record_fields, state):
            object.__setattr__(self, n, v)


Record._record_fields = None  # type: ignore[assignment]  # the base itself has no field table


def replace(obj: Record, /, **changes):
    """A copy of `obj` with some fields changed (as `dataclasses.replace`)."""
    unknown = set(changes) - set(obj._record_fields)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field(s) {', '.join(sorted(unknown))}")
    return obj.__class__(**{n: changes[n] if n in changes else getattr(obj, n) for n in obj._record_fields})


def fields(obj_or_cls) -> tuple[str, ...]:
    """The field names, in order."""
    return tuple(obj_or_cls._record_fields)


def is_record(obj) -> bool:
    return isinstance(obj, Record) or (isinstance(obj, type) and issubclass(obj, Record) and obj is not Record)


def asdict(obj):
    """Nested plain dicts/lists of a record (tuples and lists become lists of converted items,
    dicts keep their keys), as `dataclasses.asdict` does for the types records hold."""
    if isinstance(obj, Record):
        return {n: asdict(getattr(obj, n)) for n in obj._record_fields}
    if isinstance(obj, (list, tuple)):
        return type(obj)(asdict(x) for x in obj) if not hasattr(obj, "_fields") else type(obj)(*map(asdict, obj))
    if isinstance(obj, dict):
        return {k: asdict(v) for k, v in obj.items()}
    return obj

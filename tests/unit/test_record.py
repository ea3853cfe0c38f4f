"""runtime.record: the value classes every module uses instead of dataclasses (docs/design.md, principle 2)."""
from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from runtime.record import FrozenInstanceError, Record, asdict, field, fields, is_record, replace


class Point(Record):
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False, repr=False)
    KIND: ClassVar[str] = "point"

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


class Point3(Point):
    z: int = 0


class Checked(Record):
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be >= 0")
        object.__setattr__(self, "n", self.n * 2)  # as frozen dataclasses normalise fields


class Box(Record, frozen=False):
    items: list = field(default_factory=list)
    name: str = "box"


def test_fields_defaults_and_order() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags, p.meta) == (1, 0, (), {})
    assert Point(1, 2, ("a",)).tags == ("a",)
    assert fields(Point) == ("x", "y", "tags", "meta") == fields(p)
    assert Point.KIND == "point" and "KIND" not in fields(Point)
    assert Point.__match_args__ == ("x", "y", "tags", "meta")
    assert p.norm1() == 1
    assert not hasattr(p, "__dict__")  # slotted


def test_default_factory_gives_each_instance_its_own_value() -> None:
    a, b = Point(1), Point(1)
    a.meta["k"] = 1
    assert b.meta == {}
    x, y = Box(), Box()
    x.items.append(1)
    assert y.items == []


def test_constructor_errors_like_a_function() -> None:
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, nope=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="non-default field 'b' follows"):
        class Bad(Record):
            a: int = 0
            b: int


def test_frozen() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x
    with pytest.raises(AttributeError):
        p.other = 1  # type: ignore[attr-defined]


def test_equality_hash_repr() -> None:
    assert Point(1, 2) == Point(1, 2, meta={"ignored": True})
    assert Point(1, 2) != Point(2, 1)
    assert Point(1) != Point3(1)  # other class: never equal, as with dataclasses
    assert hash(Point(1, 2)) == hash(Point(1, 2, meta={"x": 1}))
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=())"
    assert repr(Box([1])) == "Box(items=[1], name='box')"
    with pytest.raises(TypeError):
        hash(Box())  # mutable records are unhashable
    assert Box([1]) == Box([1]) and Box([1]) != Box([2])


def test_equality_is_tuple_equality_as_in_dataclasses() -> None:
    nan = float("nan")
    p = Point(1, 2, (nan,))
    assert p == p and p == Point(1, 2, p.tags)  # the same NaN object: equal, as in a tuple


def test_mutable_record_assigns() -> None:
    b = Box()
    b.name = "crate"
    assert b.name == "crate"


def test_inheritance_and_post_init() -> None:
    p = Point3(1, 2, z=3)
    assert fields(p) == ("x", "y", "tags", "meta", "z") and p.z == 3 and p.norm1() == 3
    assert Checked(2).n == 4
    with pytest.raises(ValueError):
        Checked(-1)
    with pytest.raises(TypeError, match="cannot mix"):
        class Thaw(Point, frozen=False):
            w: int = 0


def test_replace_fields_asdict() -> None:
    p = Point(1, 2, ("a",))
    q = replace(p, y=5)
    assert (q.x, q.y, q.tags) == (1, 5, ("a",)) and p.y == 2
    with pytest.raises(TypeError, match="no field"):
        replace(p, nope=1)
    assert replace(Checked(1)).n == 4  # __post_init__ runs again, as with dataclasses.replace
    nested = Box([Point(1), {"k": Point(2)}], "n")
    assert asdict(nested) == {"items": [{"x": 1, "y": 0, "tags": (), "meta": {}},
                                        {"k": {"x": 2, "y": 0, "tags": (), "meta": {}}}], "name": "n"}
    assert is_record(p) and is_record(Point) and not is_record(Record) and not is_record(1)


def test_pickle_and_copy_round_trip() -> None:
    p = Point3(1, 2, ("t",), {"m": 1}, 3)
    for q in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
        assert q == p and q.meta == {"m": 1} and type(q) is Point3
    b = pickle.loads(pickle.dumps(Box([1], "x")))
    assert b == Box([1], "x")


def test_match_statement() -> None:
    match Point(1, 2):
        case Point(1, y):
            assert y == 2
        case _:
            pytest.fail("no match")


def test_record_module_imports_nothing_heavy() -> None:
    """Records exist to keep start-up cheap (bench/cli_startup.py measures it): defining them
    must not pull in dataclasses, inspect or typing."""
    code = ("import sys\n"
            "from runtime.record import Record\n"
            "class C(Record):\n"
            "    a: int\n    b: str = ''\n"
            "assert C(1) == C(1, '')\n"
            "print(' '.join(m for m in ('dataclasses', 'inspect', 'typing') if m in sys.modules))\n")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(repo)!r})\n" + code],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"runtime.record imported {out.strip()}"


def test_records_without_the_future_import() -> None:
    """A module without `from __future__ import annotations`: on Python 3.14 (PEP 649) its class
    bodies hold a lazy `__annotate_func__`, no `__annotations__` (a Record read none and took no
    fields: CI's Python 3.14 chroot, tests/integration/test_package_pythons.py). Forward
    references and ClassVar must still work there (an unquoted forward reference only exists
    on 3.14: earlier Pythons evaluate annotations at once)."""
    later = "NotYetDefined" if sys.version_info >= (3, 14) else "'NotYetDefined'"
    src = ("from typing import ClassVar\n"
           "from runtime.record import Record, field\n"
           "class A(Record):\n"
           "    x: int\n"
           "    y: str = 'y'\n"
           "    KIND: ClassVar[str] = 'a'\n"
           "class B(A):\n"
           f"    later: {later} = None\n"
           "    items: list = field(default_factory=list)\n"
           "    ALSO: 'ClassVar[int]' = 1\n"
           "class NotYetDefined:\n"
           "    pass\n")
    ns: dict = {"__name__": "lazy_annotations"}
    exec(compile(src, "lazy_annotations.py", "exec", flags=0, dont_inherit=True), ns)
    A, B = ns["A"], ns["B"]
    assert A.__match_args__ == ("x", "y") and A(1) == A(1, "y") and A(1).KIND == "a"
    b = B(1, "z", None)
    assert B.__match_args__ == ("x", "y", "later", "items")
    assert (b.x, b.y, b.later, b.items, b.ALSO) == (1, "z", None, [], 1)
    with pytest.raises(TypeError):
        B()

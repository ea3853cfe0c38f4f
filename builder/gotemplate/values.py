"""Values in docker's --format language: the errors, the missing-key marker, Go's `%v` printing,
Go type names for messages and Go's truthiness. Must not: parse or execute templates."""
from __future__ import annotations

import math
import re

from builder.errors import PybuildError, UsageError


class TemplateParseError(UsageError):
    """The template text is malformed (an option error: exit 2, before any work)."""

    def __init__(self, line: int, msg: str) -> None:
        super().__init__(f"template parsing error: template: :{line}: {msg}")


class TemplateError(PybuildError):
    """Executing a well-formed template failed (wrong types, unknown field of a non-map…)."""


class _Missing:
    """A map key that is not there: prints `<no value>` like Go's invalid reflect.Value."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


def gostr(v) -> str:
    """Go's `%v` of a JSON-like value: `[a b]`, `map[k:v]`, `<nil>`, `true`, `1.5`."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _gofloat(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(gostr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{gostr(k)}:{gostr(v[k])}" for k in sorted(v, key=str)) + "]"
    return str(v)


def _gofloat(f: float) -> str:
    """Go's %v of a float64: shortest digits; exponent form below 1e-4 or from 1e6 (`1.5e+06`)."""
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "0"
    from decimal import Decimal

    d = Decimal(repr(f))
    exp = d.adjusted()
    if exp < -4 or exp >= 21 or exp >= 6:
        digits = "".join(map(str, d.as_tuple().digits)).rstrip("0") or "0"
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{'-' if f < 0 else ''}{mant}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def _truth(v) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _gotype(v) -> str:
    if v is None or v is MISSING:
        return "<nil>"
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}",
            tuple: "[]interface {}", dict: "map[string]interface {}"}.get(type(v), type(v).__name__)


_compiled: dict[str, re.Pattern] = {}


def _rx(name: str, pattern: str, flags: int = 0) -> re.Pattern:
    """Compiled on first use: `pybuild images` with its default table never needs them."""
    rx = _compiled.get(name)
    if rx is None:
        rx = _compiled[name] = re.compile(pattern, flags)
    return rx



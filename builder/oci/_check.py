"""Type checks shared by the OCI document readers (model.py, config.py).

Owns: small functions that check one JSON value against what the OCI schemas (and upstream's
Go validator) require and raise InvalidDocument naming the field. Must not: build values.
"""
from __future__ import annotations

import base64
import binascii
import json
import re

from builder.errors import InvalidDocument

MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z")
# RFC 3986 absolute URI: scheme ":" then only characters a URI may hold.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*\Z")
# RFC 3339 date-time, as Go's time.Time unmarshals it.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})\Z")
INT64_MAX = 2**63 - 1


def fail(where: str, what: str) -> InvalidDocument:
    return InvalidDocument(f"{where}: {what}")


def load_object(data: bytes | str, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidDocument(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidDocument(f"{what} must be a JSON object")
    return obj


def obj(v: object, where: str) -> dict:
    if not isinstance(v, dict):
        raise fail(where, "must be an object")
    return v


def string(v: object, where: str) -> str:
    if not isinstance(v, str):
        raise fail(where, "must be a string")
    return v


def opt_string(d: dict, key: str, where: str) -> str | None:
    v = d.get(key)
    return None if v is None and key not in d else string(v, f"{where}.{key}")


def integer(v: object, where: str, lo: int = -INT64_MAX - 1, hi: int = INT64_MAX) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise fail(where, "must be an integer")
    if not lo <= v <= hi:
        raise fail(where, f"must be between {lo} and {hi}")
    return v


def boolean(v: object, where: str) -> bool:
    if not isinstance(v, bool):
        raise fail(where, "must be true or false")
    return v


def strings(v: object, where: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise fail(where, "must be an array of strings")
    return tuple(string(x, f"{where}[{i}]") for i, x in enumerate(v))


def string_map(v: object, where: str) -> dict[str, str]:
    d = obj(v, where)
    for k, x in d.items():
        if k:
            string(x, f"{where}[{k!r}]")
    return dict(d)


def object_map(v: object, where: str) -> dict[str, dict]:
    d = obj(v, where)
    for k, x in d.items():
        if k:
            obj(x, f"{where}[{k!r}]")
    return dict(d)


def media_type(v: object, where: str) -> str:
    s = string(v, where)
    if not MEDIA_TYPE.match(s):
        raise fail(where, f"invalid media type {s!r}")
    return s


def uri(v: object, where: str) -> str:
    s = string(v, where)
    if not _URI.match(s):
        raise fail(where, f"not an absolute URI: {s!r}")
    return s


def date_time(v: object, where: str) -> str:
    s = string(v, where)
    if not _DATE_TIME.match(s):
        raise fail(where, f"not an RFC 3339 date-time: {s!r}")
    return s


def padded_base64(v: object, where: str) -> str:
    s = string(v, where)
    try:
        base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise fail(where, "not standard padded base64") from None
    return s

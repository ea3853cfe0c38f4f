"""Flag values with their own syntax: `RUN --mount=` specs and Go-style durations.

Owns: `parse_mount(text, fail) -> MountSpec` (CSV key=value fields, BuildKit's keys and
defaults per mount type) and `parse_duration(text) -> int` (Go's time.ParseDuration, in ns).
`fail(message, hint=None)` builds the located error to raise. Must not: do I/O.
"""
from __future__ import annotations

import csv
import re

from builder.dockerfile import ast as A

_DUR_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    s = text
    neg = s.startswith("-")
    if s[:1] in "+-" and s:
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DUR_RE.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return -int(total) if neg else int(total)



_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?$")


def _bool(v: str, key: str, fail) -> bool:
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise fail(f"invalid value for {key}: {v!r} (want true or false)")


def parse_mount(text: str, fail, ex=None) -> A.MountSpec:
    """One `--mount=` value: comma-separated key=value fields (CSV quoting allowed).

    As BuildKit does, a value with a `$` is expanded with the ARGs and ENVs in scope
    before it is checked (`--mount=type=$MNT_TYPE,target=/c`): at parse time (`ex` None)
    such a mount is kept as `raw` text and `MountSpec.expand` parses it again with `ex`.
    """
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise fail(f"invalid mount {text!r}") from None
    if ex is None and any("$" in f.partition("=")[2] for f in fields):
        frm = [f.partition("=")[2] for f in fields if f.partition("=")[0].strip().lower() == "from"]
        if frm and "$" in frm[-1][:-1]:
            raise fail("'from' doesn't support variable expansion, define alias stage instead")
        return A.MountSpec(raw=text, from_=frm[-1] if frm else None)
    kv: dict[str, object] = {"type": "bind"}
    for f in fields:
        key, sep, val = f.partition("=")
        key = key.strip().lower()
        if ex is not None and sep and key != "from":
            val = ex(val)
        if key == "type":
            if val not in _MOUNT_TYPES:
                raise fail(f"unsupported mount type {val!r}", "use type=bind, cache, tmpfs, secret or ssh")
            kv["type"] = val
        elif key in ("target", "dst", "destination"):
            kv["target"] = val
        elif key in ("source", "src"):
            kv["source"] = val
        elif key in ("from", "id", "env"):
            kv["from_" if key == "from" else key] = val
        elif key == "sharing":
            if val not in ("shared", "private", "locked"):
                raise fail(f"unsupported sharing value {val!r}", "use sharing=shared, private or locked")
            kv["sharing"] = val
        elif key in ("readonly", "ro"):
            kv["readonly"] = _bool(val, key, fail) if sep else True
        elif key in ("readwrite", "rw"):
            kv["readonly"] = not (_bool(val, key, fail) if sep else True)
        elif key == "required":
            kv["required"] = _bool(val, key, fail) if sep else True
        elif key in ("mode", "uid", "gid"):
            try:
                kv[key] = int(val, 8) if key == "mode" else int(val)
            except ValueError:
                raise fail(f"invalid {key} {val!r} in mount") from None
        elif key == "size":
            m = _SIZE_RE.match(val)
            if not m:
                raise fail(f"invalid size {val!r} in mount")
            kv["size"] = int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))
        else:
            raise fail(f"unexpected key '{key}' in '{f}'")
    t = kv["type"]
    if t == "bind" and "readonly" not in kv:
        kv["readonly"] = True  # bind mounts are read-only unless rw is given
    # BuildKit accepts a bind/cache/tmpfs mount without a target (`--mount=from=x`,
    # `--mount=type=bind`): the target is then the working directory, as a relative one is.
    if t == "secret":
        if not kv.get("id") and kv.get("target"):
            kv["id"] = str(kv["target"]).rsplit("/", 1)[-1]
        if not kv.get("target") and not kv.get("env"):
            kv["target"] = f"/run/secrets/{kv.get('id', '')}"
    if t == "ssh":
        kv.setdefault("id", "default")
        kv.setdefault("target", "/run/buildkit/ssh_agent.0")
    if t == "cache" and not kv.get("id"):
        kv["id"] = kv.get("target") or ""
    return A.MountSpec(**kv)  # type: ignore[arg-type]

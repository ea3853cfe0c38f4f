"""Cache keys: what a step's output depends on, hashed; and how two keys differ.

Owns: the `pybuild.cache.v1` recipe (docs/design.md "Cache key"): sha256 of the canonical JSON of
`{"v", "kind", "parent", "op", "inputs"}`, where `op` is the normalized operation (argv, env
and ARGs in scope sorted, workdir, user, platform, network, mounts without secret values) and
`inputs` the content digests the step reads (context sources, other stages' keys, base image
manifest digests). Proxy variables never count (BuildKit leaves them out too), nor mtimes, nor
secret values. `first_difference(a, b)` names the first field where two pre-images differ, for
`pybuild cache explain`.

Must not: read files or stores; callers hand in digests. When the recipe changes, bump VERSION.
"""
from __future__ import annotations

from builder.oci.digest import canonical_json, digest_bytes
from builder.plan.graph import ConfigOp, CopyOp, MountOp, RunOp
from runtime.record import Record

VERSION = "pybuild.cache.v1"

# BuildKit's predefined proxy ARGs: usable without ARG, never part of the cache key or history.
PROXY_ARGS = frozenset(n for p in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
                       for n in (p, p.lower()))


class CacheKey(Record):
    key: str  # "sha256:…"
    pre_image: dict  # what was hashed, kept beside the record for `cache explain`


def make_key(kind: str, parent: str | None, op: dict, inputs: list[str] | tuple[str, ...] = ()) -> CacheKey:
    pre = {"v": VERSION, "kind": kind, "parent": parent, "op": op, "inputs": list(inputs)}
    return CacheKey(str(digest_bytes(canonical_json(pre))), pre)


def _env_items(env: list[str] | tuple[str, ...]) -> list[str]:
    return sorted(e for e in env if e.split("=", 1)[0] not in PROXY_ARGS)


def _mount(m: MountOp) -> dict:
    d = {"type": m.type, "target": m.target}
    if m.type == "secret" or m.type == "ssh":
        # The id and where it goes matter (the command may read it); the value never does.
        d.update(id=m.id, env=m.env, required=m.required)
        return d
    d.update(source=m.source, readonly=m.readonly, id=m.id, sharing=m.sharing, mode=m.mode, uid=m.uid, gid=m.gid,
             size=m.size)
    if m.source_from is not None:
        d["from"] = {"stage": m.source_from.stage, "image": m.source_from.image}
    return d


def run_op(op: RunOp, *, env: tuple[str, ...], args: tuple[tuple[str, str], ...], workdir: str, user: str,
           platform: str) -> dict:
    """RUN sees the image env plus the ARGs in scope (not proxies)."""
    d = {"argv": list(op.argv), "env": _env_items(env),
         "args": sorted(f"{k}={v}" for k, v in args if k not in PROXY_ARGS),
         "workdir": workdir, "user": user, "platform": platform, "network": op.network,
         "mounts": [_mount(m) for m in op.mounts], "heredocs": [list(h) for h in op.heredocs]}
    if op.security != "sandbox":
        d["security"] = op.security  # only then: the keys of every other RUN stay what they were
    return d


def copy_op(op: CopyOp, *, dest: str, platform: str) -> dict:
    """COPY/ADD: the resolved destination and every flag; sources enter as `inputs`."""
    return {"add": op.is_add, "sources": list(op.sources), "dest": dest, "chown": op.chown, "chmod": op.chmod,
            "link": op.link, "parents": op.parents, "excludes": list(op.excludes),
            "heredocs": [list(h) for h in op.heredocs], "checksum": op.checksum,
            "keep_git_dir": op.keep_git_dir, "unpack": op.unpack, "platform": platform}


def workdir_op(op: ConfigOp, *, path: str, user: str) -> dict:
    return {"workdir": path, "user": user}


def first_difference(a: object, b: object, path: str = "") -> str | None:
    """The first place (`op.env[3]`) where two pre-images differ, or None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        order = ("v", "kind", "parent", "op", "inputs")  # the recipe's own order: causes before details
        for k in sorted(set(a) | set(b), key=lambda k: (order.index(k) if k in order else len(order), k)):
            sub = f"{path}.{k}" if path else k
            if k not in a or k not in b:
                return sub
            d = first_difference(a[k], b[k], sub)
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d is not None:
                return d
        if len(a) != len(b):
            return f"{path}[{min(len(a), len(b))}]"
        return None
    return None if a == b else (path or "<root>")


def lookup(pre: object, path: str) -> object:
    """The value at a `first_difference` path (missing → None), for printing both sides."""
    import re

    cur = pre
    for name, idx in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        try:
            cur = cur[int(idx)] if idx else cur[name]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None
    return cur

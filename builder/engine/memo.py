"""The no-op fast path: prove a build would be all CACHED without parsing or planning it.

Owns: the build memo, `$ROOT/cache/memo/<fingerprint>.json`, written after a successful build.
The fingerprint covers everything the build was asked (Dockerfile text and path, context path,
.dockerignore text, build args, target, platform, labels, network, SOURCE_DATE_EPOCH); the memo
holds what the build read: every context selection (pattern → paths) and content digest, each
base image's manifest digest by stored name, the cache records used, the tags written, the
image made and the progress lines. `try_noop` re-checks all of it — context through the stat
cache, index.json by name, records and blobs by presence — and, only if nothing changed,
replays the CACHED lines and returns the image. Any doubt returns None: the full build runs.

Must not: import the front end, planner or solver (that is the whole point: a no-op rebuild
pays for json, hashlib and the stat cache, not for Lark, dataclass-heavy modules or threads).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

MEMO_VERSION = 2  # 2: step names show FROM with the full image name


def fingerprint(fields: dict) -> str:
    from builder import __version__  # another pybuild may key its cache differently

    data = json.dumps({"v": MEMO_VERSION, "pybuild": __version__, **fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def _path(cache_dir: Path, fp: str) -> Path:
    return Path(cache_dir) / "memo" / f"{fp}.json"


def write(cache_dir: Path, tmp_dir: Path, fp: str, memo: dict) -> None:
    p = _path(cache_dir, fp)
    p.parent.mkdir(parents=True, exist_ok=True)
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".memo-")
    with os.fdopen(fd, "w") as f:
        json.dump(memo, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def _index_names(store_dir: Path) -> dict[str, str]:
    try:
        idx = json.loads((Path(store_dir) / "index.json").read_bytes())
    except (OSError, ValueError):
        return {}
    out = {}
    for m in idx.get("manifests", []):
        name = (m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if name:
            out[name] = m.get("digest")
    return out


def _blob(store_dir: Path, digest: str) -> Path:
    return Path(store_dir) / "blobs" / "sha256" / digest.split(":", 1)[-1]


def try_noop(settings, fp: str, context_dir: Path | None, ignore_patterns: list[str], reporter,
             tags: tuple[str, ...] = ()) -> dict | None:
    """The memo if the build is provably a no-op (progress replayed), else None."""
    try:
        memo = json.loads(_path(settings.cache_dir, fp).read_bytes())
    except (OSError, ValueError):
        return None
    try:
        return _check(settings, memo, context_dir, ignore_patterns, reporter, tags)
    except Exception:  # noqa: BLE001 - any surprise means "not provably a no-op": build for real
        return None


def _check(settings, memo: dict, context_dir: Path | None, ignore_patterns: list[str], reporter,
           tags: tuple[str, ...] = ()) -> dict | None:
    store = settings.store_dir
    names = _index_names(store)
    for name, digest in memo["bases"].items():
        if names.get(name) != digest:
            return None
    for name in memo["tags"]:
        if names.get(name) != memo["manifest"]["digest"]:
            return None
    if not _blob(store, memo["manifest"]["digest"]).is_file():
        return None
    for key, layer in memo["records"]:
        rec = Path(settings.cache_dir) / "records" / (key.split(":", 1)[-1] + ".json")
        if not rec.is_file() or (layer and not _blob(store, layer).is_file()):
            return None
    if memo["selects"] or memo["digests"]:
        if context_dir is None:
            return None
        from builder.context import BuildContext, Source, StatCache, stat_cache_path

        sc = StatCache.load(stat_cache_path(settings.cache_dir, context_dir))
        ctx = BuildContext(context_dir, ignore_patterns, sc)
        for pattern, rels in memo["selects"].items():
            if [s.rel for s in ctx.select(pattern)] != rels:
                return None
        for rel, (is_dir, digest) in memo["digests"].items():
            if ctx.digest(Source(rel, os.path.join(ctx.root, rel) if rel else str(ctx.root), is_dir)) != digest:
                return None
        sc.save()
    from builder.report import BuildFinished, BuildStarted, StepCached, Warning

    reporter.emit(BuildStarted(len(memo["steps"]), str(context_dir or "")))
    for w in memo.get("warnings", []):
        reporter.emit(Warning(w))
    for sid, name in memo["steps"]:
        reporter.emit(StepCached(sid, name))
    reporter.emit(BuildFinished(0.0, image=memo["config_digest"], tags=tags))
    return memo

"""`pybuild cache ls | prune | explain`: look at, shrink and explain the build cache.

Owns: the presentation of cache records (a table or JSON), pruning (records whose layer blob is
gone, records older than --until, or --all; snapshots and cache mounts with --all), and
`explain`: for each filesystem step of a build (same flags as `pybuild build`), hit or miss, and
for a miss the first field of the cache key that differs from the nearest earlier record of
that step. Must not: build anything (explain computes keys only).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from builder.layers import fstree


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="inspect, prune or explain the build cache")
    csub = p.add_subparsers(dest="cache_cmd", metavar="ls|prune|explain")
    csub.required = True
    ls = csub.add_parser("ls", help="list cache records")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    pr = csub.add_parser("prune", help="remove cache records")
    pr.add_argument("--all", action="store_true", help="remove every record, snapshot and cache mount")
    pr.add_argument("--until", type=float, metavar="HOURS", help="remove records older than this")
    ex = csub.add_parser("explain", help="why each step of a build would hit or miss")
    from builder.commands.build import add_build_flags

    add_build_flags(ex)
    ex.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    return {"ls": _ls, "prune": _prune, "explain": _explain}[args.cache_cmd](args)


def _stores():
    from builder import settings
    from builder.engine.cache import CacheStore

    st = settings.load()
    return st, CacheStore(st.cache_dir, st.tmp_dir)


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f}TB"


def _ls(args) -> int:
    _st, cache = _stores()
    recs = cache.all()
    if args.format == "json":
        print(json.dumps([{"key": r.key, "step": r.text, "created": r.created, "layer": r.layer,
                           "slot": r.slot} for r in recs], indent=2))
        return 0
    print(f"{'KEY':<19}  {'SIZE':>8}  {'AGE':>10}  STEP")
    now = time.time()
    for r in recs:
        size = _human(r.layer["size"]) if r.layer else "0B"
        age = now - (r.written or now)
        age_s = f"{age / 3600:.1f}h" if age >= 3600 else f"{age / 60:.0f}m" if age >= 60 else f"{age:.0f}s"
        print(f"{r.key[7:19]:<19}  {size:>8}  {age_s:>10}  {r.text[:80]}")
    return 0


def _prune(args) -> int:

    from builder.oci.store import DirStore

    st, cache = _stores()
    blobs = DirStore(st.store_dir)
    now = time.time()
    n = 0
    for r in cache.all():
        missing = r.layer is not None and not blobs.has(r.layer["digest"])
        old = args.until is not None and now - r.written > args.until * 3600
        if args.all or missing or old:
            cache.remove(r.key)
            n += 1
    from builder.snapshot import Snapshotter

    snaps = Snapshotter(st.snapshots_dir, st.tmp_dir)
    if args.all:
        keep: set[str] = set()
        fstree.rmtree(st.cache_dir / "mounts", ignore_errors=True)
        fstree.rmtree(st.cache_dir / "stat", ignore_errors=True)
        fstree.rmtree(st.cache_dir / "memo", ignore_errors=True)
        fstree.rmtree(st.cache_dir / "content", ignore_errors=True)
        fstree.rmtree(st.cache_dir / "convert", ignore_errors=True)
    else:
        # snapshots stay while a record or a tagged image still names them
        keep = {r.chain for r in cache.all() if r.chain}
        keep |= _image_chains(st)
    snaps.sweep()  # temp trees of killed builds (an hour old: never a live build's)
    gone = snaps.prune(keep)  # leased snapshots (a build or container using them) stay
    extra = f", {len(gone)} snapshots" + (" and the cache mounts" if args.all else "")
    print(f"removed {n} cache records{extra}")
    return 0


def _image_chains(st) -> set[str]:
    from builder.errors import PybuildError
    from builder.oci.image import Image, chain_ids
    from builder.oci.layout import ImageStore

    store = ImageStore(st.store_dir)
    out: set[str] = set()
    for _ref, desc in store.list():
        try:
            out |= {str(c) for c in chain_ids(Image.load(store.blobs, desc).diff_ids)}
        except PybuildError:
            continue
    return out


def _explain(args) -> int:
    from builder.commands.build import request_from_args
    from builder.engine.build import explain

    st, req, cleanup = request_from_args(args)
    try:
        rows = explain(req, st)
    finally:
        cleanup()
    if args.format == "json":
        print(json.dumps([{"step": r.step, "line": r.span_line, "hit": r.hit, "key": r.key,
                           "nearest": r.nearest_key, "field": r.field, "before": r.before, "after": r.after,
                           "reads": list(r.reads)}
                          for r in rows], indent=2, default=str))
        return 0
    for r in rows:
        where = f"line {r.span_line}: " if r.span_line else ""
        if r.hit:
            print(f"hit   {where}{r.step}")
        elif r.field is None:
            print(f"miss  {where}{r.step}  (no earlier record of this step)")
        else:
            print(f"miss  {where}{r.step}  first difference: {r.field}: {_show(r.before)} -> {_show(r.after)}")
        for i in r.reads:  # COPY --from / RUN --mount=from=: keyed by the content read, not the stage's key
            kind, _, rest = i.partition(":")
            src, _, d = rest.rpartition("=") if kind == "content" else ("", "", rest)
            if kind == "content":
                print(f"      reads {src}: content {d[:19]}")
            else:
                print("      reads a stage not built yet: hits after all if what it reads is unchanged")
    sys.stdout.flush()
    return 0


def _show(v) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."

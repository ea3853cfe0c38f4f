"""`pybuild store verify` and `pybuild prune`: checking and reclaiming the local store.

Owns: the command-line face of builder.oci.gc, and what counts as live when pruning: blobs
reachable from tags and from build-cache records; snapshots (`$ROOT/snapshots/<chain id>`)
of tagged images, and those a live build or container leases (builder.snapshot). Cache-only
snapshots are reclaimed: the engine unpacks them again from the layer blobs when needed.
Anything younger than --grace (default 10 min) stays: a build in flight writes blobs before it
tags. Must not: hold GC logic.
"""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("store", help="local store maintenance")
    ssub = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    v = ssub.add_parser("verify", help="re-hash every blob and check every image; exit 1 on problems")
    v.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("prune", help="remove blobs and snapshots no image or cache record uses")
    p.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("-f", "--force", action="store_true", help="accepted for docker's habit; prune never asks")
    p.add_argument("--grace", type=float, default=600.0, metavar="SECONDS",
                   help="keep anything younger than this (default 600)")
    p.add_argument("--keep-cache", action=argparse.BooleanOptionalAction, default=True,
                   help="keep blobs that build-cache records use (default: yes)")
    p.set_defaults(func=cmd_prune)


def run(args: argparse.Namespace) -> int:
    return args.func(args)


def _settings_and_store():
    from builder import settings
    from builder.oci.layout import ImageStore

    s = settings.load()
    return s, ImageStore(s.store_dir)


def cmd_store(args) -> int:
    if args.store_command != "verify":
        print("usage: pybuild store verify")
        return 2
    from builder.oci.gc import verify_store

    _, store = _settings_and_store()
    n, problems = verify_store(store)
    for p in problems:
        print(f"problem: {p}")
    if not args.quiet:
        print(f"{n} blobs checked, {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    return 1 if problems else 0


def _cache_roots(s) -> list[str]:
    try:
        from builder.engine.cache import CacheStore
    except ImportError:
        return []
    roots = []
    for rec in CacheStore(s.cache_dir, s.tmp_dir).all():
        if rec.layer and rec.layer.get("digest"):
            roots.append(rec.layer["digest"])
    return roots


def _live_chains(store) -> set[str]:
    from builder.errors import StoreError
    from builder.oci.image import Image, chain_ids

    live: set[str] = set()
    for _, desc in store.list():
        try:
            img = Image.load(store.blobs, desc)
        except StoreError:
            continue
        live.update(chain_ids(img.diff_ids))
    return live


def _prune_snapshots(s, store, grace: float, dry_run: bool) -> tuple[int, int]:
    if not s.snapshots_dir.is_dir():
        return 0, 0
    from builder.snapshot import Snapshotter

    gone = Snapshotter(s.snapshots_dir, s.tmp_dir).prune(_live_chains(store), grace=grace, dry_run=dry_run)
    return len(gone), sum(size for _, size in gone)


def _prune_containers(s, dry_run: bool) -> int:
    """Writable layers `pybuild run` kept (no --rm) whose pybuild process has exited."""
    import shutil

    from builder.commands.run import container_alive

    base = s.root / "containers"
    if not base.is_dir():
        return 0
    n = 0
    for d in sorted(base.iterdir()):
        if d.is_dir() and not container_alive(d):
            n += 1
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
    return n


def _prune_logs(s, grace: float, dry_run: bool) -> int:
    """Clipped RUN output kept under logs/ (builder.engine.steplog), older than the grace period."""
    import time

    base = s.root / "logs"
    if not base.is_dir():
        return 0
    n = 0
    for f in base.iterdir():
        try:
            if f.is_file() and not f.is_symlink() and time.time() - f.stat().st_mtime >= grace:
                n += 1
                if not dry_run:
                    f.unlink()
        except OSError:
            pass
    return n


def cmd_prune(args) -> int:
    from builder.oci.gc import prune_blobs

    s, store = _settings_and_store()
    if not (store.root / "index.json").is_file():
        print("nothing to prune (no store yet)")
        return 0
    roots = _cache_roots(s) if args.keep_cache else []
    with store.locked():
        pass  # fail fast on a broken lock file before the long walk
    res = prune_blobs(store, roots=roots, grace=args.grace, dry_run=args.dry_run)
    ncont = _prune_containers(s, args.dry_run)
    nlogs = _prune_logs(s, args.grace, args.dry_run)
    nsnap, snap_freed = _prune_snapshots(s, store, args.grace, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for d in res.removed:
        print(f"{verb} blob {d}")
    print(f"{verb} {len(res.removed)} blobs ({res.freed / 1e6:.1f} MB), {nsnap} snapshots "
          f"({snap_freed / 1e6:.1f} MB), {res.tmp_removed} temp files, {ncont} stopped containers")
    if nlogs:
        print(f"{verb} {nlogs} clipped step logs")
    return 0

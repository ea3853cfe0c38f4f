"""`pybuild system df | prune | info` and `pybuild builder prune`: docker's housekeeping verbs.

Owns: docker's names and flags for looking at and reclaiming the whole state directory; the work
is done by the existing verbs (`prune` of builder.commands.store, `cache prune` of
builder.commands.cache), so these add only the docker-shaped summary and confirmation.
Must not: hold GC logic of its own.
"""
from __future__ import annotations

import argparse
import os
import re
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("system", help="show disk usage and information, or prune everything unused")
    ssub = p.add_subparsers(dest="system_cmd", metavar="df|prune|info")
    ssub.required = True
    df = ssub.add_parser("df", help="show disk usage of images, containers and the build cache")
    df.add_argument("--format", help="table (default), json, or a Go template like docker's")
    pr = ssub.add_parser("prune", help="remove stopped containers, unused blobs, snapshots and build cache")
    pr.add_argument("-a", "--all", action="store_true",
                    help="also remove every image name and the whole build cache (as docker's -a)")
    pr.add_argument("--volumes", action="store_true", help="also remove RUN --mount=type=cache directories")
    pr.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    info = ssub.add_parser("info", help="show where pybuild keeps its state and what it holds")
    info.add_argument("-f", "--format", help="json, or a Go template like docker's")
    p.set_defaults(func=_system)

    p = sub.add_parser("builder", help="manage the build cache (docker builder prune)")
    bsub = p.add_subparsers(dest="builder_cmd", metavar="prune")
    bsub.required = True
    bp = bsub.add_parser("prune", help="remove build cache")
    bp.add_argument("-a", "--all", action="store_true", help="remove all build cache, not only unreachable records")
    bp.add_argument("--filter", action="append", default=[], metavar="until=DURATION",
                    help="until=24h: only records older than this (Go duration or RFC 3339 time)")
    bp.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=_builder)


def run(args: argparse.Namespace) -> int:
    return args.func(args)


_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_until(value: str) -> float:
    """Seconds of age from docker's `until=`: a Go duration (`24h`, `1h30m`) or a timestamp."""
    from builder.errors import UsageError

    v = value.strip()
    if re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", v):
        return sum(float(n) * _UNIT[u] for n, _f, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", v))
    import time
    from datetime import datetime

    try:
        if re.fullmatch(r"\d+(\.\d+)?", v):
            ts = float(v)
        else:
            ts = datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"invalid filter 'until={value}': want a duration like 24h or a timestamp") from None
    return max(time.time() - ts, 0.0)


def _confirm(what: str, force: bool) -> bool:
    if force:
        return True
    sys.stderr.write(f"WARNING! This will remove:\n{what}\nAre you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _builder(args) -> int:
    from builder.errors import UsageError

    until = None
    for f in args.filter:
        key, eq, value = f.partition("=")
        if key != "until" or not eq:
            raise UsageError(f"invalid filter {key!r} (builder prune filters: until)")
        until = parse_until(value) / 3600.0
    what = "  - all build cache" if args.all else "  - all dangling build cache"
    if not _confirm(what, args.force):
        return 0
    from builder.commands import cache

    return cache.run(argparse.Namespace(cache_cmd="prune", all=args.all and until is None, until=until))


def _system(args) -> int:
    return {"df": _df, "prune": _prune, "info": _info}[args.system_cmd](args)


def _prune(args) -> int:
    what = ["  - all stopped containers", "  - all unused blobs and snapshots"]
    what.append("  - all image names and all build cache" if args.all else "  - all dangling build cache")
    if args.volumes:
        what.append("  - all RUN --mount=type=cache directories")
    if not _confirm("\n".join(what), args.force):
        return 0
    from builder.commands import cache, store

    if args.all:
        from builder.commands.images import _familiar, _store

        st = _store()
        for ref, _desc in st.list():
            st.untag(ref)
            print(f"Untagged: {_familiar(ref)}")
    code = cache.run(argparse.Namespace(cache_cmd="prune", all=args.all, until=None))
    if args.volumes and not args.all:
        from builder import settings
        from builder.layers import fstree

        fstree.rmtree(settings.load().cache_dir / "mounts", ignore_errors=True)
        print("removed the cache mounts")
    return code or store.run(argparse.Namespace(func=store.cmd_prune, dry_run=False, grace=0.0 if args.all else 600.0,
                                                keep_cache=True))


def _du(path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def _usage() -> list[dict]:
    """docker system df's rows: Images, Containers, Local Volumes, Build Cache."""
    from builder import settings
    from builder.commands.images import _store, human_size
    from builder.commands.run import container_alive
    from builder.engine.cache import CacheStore
    from builder.errors import PybuildError
    from builder.oci.image import Image
    from builder.oci.usage import LayerSizes

    s = settings.load()
    store = _store()
    sizes = LayerSizes(s.root / "layer-sizes.json")
    layers: dict[str, int] = {}
    images = set()
    for _ref, desc in store.list():
        try:
            img = Image.load(store.blobs, desc)
        except PybuildError:
            continue
        images.add(str(img.id))
        for d, did in zip(img.layers, img.diff_ids):
            layers[str(did)] = sizes.layer(store.blobs, d, did)
    sizes.save()
    cdir = s.root / "containers"
    conts = [d for d in sorted(cdir.iterdir()) if d.is_dir()] if cdir.is_dir() else []
    live = [d for d in conts if container_alive(d)]
    csize = {d: _du(d / "upper") for d in conts}
    mounts = s.cache_dir / "mounts"
    vols = [d for d in sorted(mounts.iterdir()) if d.is_dir()] if mounts.is_dir() else []
    vsize = sum(_du(d) for d in vols)
    recs = CacheStore(s.cache_dir, s.tmp_dir).all() if s.cache_dir.is_dir() else []
    bsize = sum(int(r.layer["size"]) for r in recs if r.layer)
    img_total = sum(layers.values())

    def reclaim(n: int, total: int) -> str:
        return f"{human_size(n)} ({100 * n // total if total else 0}%)" if total else "0B"

    dead = sum(csize[d] for d in conts if d not in live)
    return [
        {"Type": "Images", "TotalCount": str(len(images)), "Active": "0", "Size": human_size(img_total),
         "Reclaimable": reclaim(img_total, img_total)},
        {"Type": "Containers", "TotalCount": str(len(conts)), "Active": str(len(live)),
         "Size": human_size(sum(csize.values())), "Reclaimable": reclaim(dead, sum(csize.values()))},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)), "Active": "0", "Size": human_size(vsize),
         "Reclaimable": reclaim(vsize, vsize)},
        {"Type": "Build Cache", "TotalCount": str(len(recs)), "Active": "0", "Size": human_size(bsize),
         "Reclaimable": human_size(bsize)},
    ]


def _df(args) -> int:
    from builder.commands.images import _check_format
    from builder.gotemplate import format_rows

    _check_format(args.format)
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
    default = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    sys.stdout.write(format_rows(args.format, _usage(), headers, default))
    return 0


def _info(args) -> int:
    import json
    import platform

    from builder import __version__, settings
    from builder.gotemplate import parse

    tpl = parse(args.format) if args.format and args.format.strip() != "json" else None
    s = settings.load()
    from builder.commands.images import _store

    store = _store()
    cdir = s.root / "containers"
    cgroup = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    info = {
        "ServerVersion": __version__,
        "Driver": "overlay",
        "DockerRootDir": str(s.root),
        "Images": len({str(d.digest) for _r, d in store.list()}),
        "Containers": len([d for d in cdir.iterdir() if d.is_dir()]) if cdir.is_dir() else 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "CgroupVersion": cgroup,
        "Compression": s.compression,
        "ConfigFile": str(s.config_file) if s.config_file else "",
        "InsecureRegistries": list(s.insecure_registries),
        "RegistryMirrors": {k: list(v) for k, v in s.mirrors.items()},
        "PythonVersion": platform.python_version(),
        "Daemon": False,
    }
    if tpl is not None:
        print(tpl.execute(info))
    elif args.format:
        print(json.dumps(info, separators=(",", ":")))
    else:
        for k, v in info.items():
            print(f" {k}: {v if not isinstance(v, (list, dict)) else json.dumps(v)}")
    return 0


def _os_name() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"

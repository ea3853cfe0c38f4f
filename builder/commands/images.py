"""`pybuild images | tag | rmi | inspect | history`: reading and naming images in the local store.

Owns: the presentation of the local image store (tables like docker's, inspect JSON like
docker's). Must not: build, pull or delete blobs (`pybuild prune` reclaims space; rmi only
removes names, as docker's rmi leaves shared layers to the garbage collector).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone


def add_parser(sub) -> None:
    p = sub.add_parser("images", help="list images in the local store")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    p.add_argument("--digests", action="store_true", help="show manifest digests")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate ids")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("reference", nargs="?", help="only images whose repository matches")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("tag", help="give an image another name")
    p.add_argument("source", metavar="SOURCE_IMAGE")
    p.add_argument("target", metavar="TARGET_IMAGE")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("rmi", help="remove image names (blobs go at the next prune)")
    p.add_argument("-f", "--force", action="store_true", help="remove every tag of an image given by id")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("inspect", help="show image details as JSON (like docker image inspect)")
    p.add_argument("-f", "--format", help="print only this field path, e.g. .Config.Cmd")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("history", help="show the history of an image")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="only show layer ids")
    p.add_argument("image", metavar="IMAGE")
    p.set_defaults(func=cmd_history)


def run(args: argparse.Namespace) -> int:
    return args.func(args)


def _store():
    from builder import settings
    from builder.oci.layout import ImageStore

    return ImageStore(settings.load().store_dir)


def _load(store, ref: str):
    from builder.oci.image import Image

    desc = store.resolve(ref)
    return desc, Image.load(store.blobs, desc)


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}B"


def human_ago(created: str | None) -> str:
    if not created:
        return "N/A"
    try:
        t = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return created
    secs = time.time() - t.timestamp()
    for limit, div, word in ((60, 1, "second"), (3600, 60, "minute"), (86400, 3600, "hour"),
                             (86400 * 30, 86400, "day"), (86400 * 365, 86400 * 30, "month")):
        if secs < limit:
            n = max(int(secs // div), 1)
            return f"{n} {word}{'s' if n != 1 else ''} ago"
    n = int(secs // (86400 * 365))
    return f"{n} year{'s' if n != 1 else ''} ago"


def _split_ref(ref: str) -> tuple[str, str]:
    from builder.oci.reference import parse_reference

    r = parse_reference(ref)
    fam = r.familiar()
    repo = fam.split("@")[0]
    if r.tag:
        repo = repo[: -len(r.tag) - 1]
    return repo, r.tag or "<none>"


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    out = sys.stdout
    for r in [header] + rows:
        out.write("   ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def cmd_images(args) -> int:
    from builder.errors import PybuildError
    from builder.oci.image import Image

    store = _store()
    rows, seen_ids, js = [], set(), []
    want = None
    if args.reference:
        want = _split_ref(args.reference)[0]
    for ref, desc in store.list():
        try:
            img = Image.load(store.blobs, desc)
        except PybuildError as e:
            sys.stderr.write(f"warning: {ref}: {e}\n")
            continue
        repo, tag = _split_ref(ref)
        if want and repo != want:
            continue
        iid = img.id if args.no_trunc else img.id.hex[:12]
        size = sum(layer.size for layer in img.layers) + img.manifest.config.size
        if args.quiet:
            if iid not in seen_ids:
                seen_ids.add(iid)
                print(iid)
            continue
        js.append({"Repository": repo, "Tag": tag, "ID": str(img.id), "Digest": str(desc.digest),
                   "Created": img.config.created, "Size": size})
        row = [repo, tag] + ([desc.digest] if args.digests else []) + [iid, human_ago(img.config.created),
                                                                       human_size(size)]
        rows.append(row)
    if args.quiet:
        return 0
    if args.format == "json":
        print(json.dumps(js, indent=2))
        return 0
    header = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    _print_table(rows, header)
    return 0


def cmd_tag(args) -> int:
    from builder.oci.reference import parse_reference

    store = _store()
    parse_reference(args.target)  # a bad target is an error before anything changes
    desc = store.resolve(args.source)
    store.tag(args.target, desc)
    return 0


def cmd_rmi(args) -> int:
    from builder.errors import ImageNotFound, PybuildError
    from builder.oci.digest import is_digest

    store = _store()
    failed = False
    for name in args.images:
        try:
            desc = store.resolve(name)
            # an image id (sha256:… or a hex prefix), not `name:tag` (which fits the digest grammar)
            by_id = (name.startswith(("sha256:", "sha384:", "sha512:")) and is_digest(name)) or \
                (len(name) >= 4 and all(c in "0123456789abcdef" for c in name))
            refs = [r for r, d in store.list() if d.digest == desc.digest]
            if by_id:
                if len(refs) > 1 and not args.force:
                    raise PybuildError(f"unable to remove {name}: image is referenced in multiple "
                                       f"repositories ({len(refs)} tags); use -f or remove the tags")
                targets = refs
            else:
                targets = [name]
            for r in targets:
                store.untag(r)
                print(f"Untagged: {_familiar(r)}")
            if not [r for r, d in store.list() if d.digest == desc.digest]:
                print(f"Deleted: {desc.digest}")
        except ImageNotFound as e:
            sys.stderr.write(f"error: {e}\n")
            failed = True
    return 1 if failed else 0


def _familiar(ref: str) -> str:
    from builder.oci.reference import parse_reference

    return parse_reference(ref).familiar()


def inspect_dict(store, ref: str) -> dict:
    """docker image inspect's JSON for one image."""
    desc, img = _load(store, ref)
    tags = [_familiar(r) for r, d in store.list() if d.digest == desc.digest]
    repo_digests = sorted({f"{_split_ref(t)[0]}@{desc.digest}" for t in tags})
    cfg = img.config
    return {
        "Id": str(img.id),
        "RepoTags": tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": "",
        "Created": cfg.created or "",
        "Author": cfg.author or "",
        "Config": cfg.config.to_dict(),
        "Architecture": cfg.architecture,
        "Variant": cfg.variant,
        "Os": cfg.os,
        "Size": sum(layer.size for layer in img.layers),
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in cfg.diff_ids]},
        "Metadata": {"LastTagTime": ""},
        "Descriptor": desc.to_dict(),
    }


def _field(obj, path: str):
    cur = obj
    for part in [p for p in path.strip().strip("{}").strip().split(".") if p]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            from builder.errors import PybuildError

            raise PybuildError(f"template: no field {part!r} in {path!r}")
    return cur


def cmd_inspect(args) -> int:
    from builder.errors import ImageNotFound

    store = _store()
    out, failed = [], False
    for ref in args.images:
        try:
            out.append(inspect_dict(store, ref))
        except ImageNotFound as e:
            container = _container(ref)  # docker's inspect takes containers as well
            if container is not None:
                out.append(container)
                continue
            sys.stderr.write(f"error: {e}\n")
            failed = True
    if args.format:
        for o in out:
            v = _field(o, args.format)
            print(v if isinstance(v, str) else json.dumps(v))
    else:
        print(json.dumps(out, indent=4))
    return 1 if failed else 0


def _container(ref: str) -> dict | None:
    from builder.commands.containers import inspect_json
    from builder.containers.state import NoSuchContainer, find

    try:
        return inspect_json(find(_store().root, ref))
    except NoSuchContainer:
        return None


def cmd_history(args) -> int:
    store = _store()
    desc, img = _load(store, args.image)
    layers = list(img.layers)
    rows = []
    li = 0
    entries = []
    for h in img.config.history:
        size = 0
        if not h.empty_layer and li < len(layers):
            size = layers[li].size
            li += 1
        entries.append((h, size))
    for n, (h, size) in enumerate(reversed(entries)):
        iid = (img.id if args.no_trunc else img.id.hex[:12]) if n == 0 else "<missing>"
        if args.quiet:
            print(iid)
            continue
        created_by = h.created_by or ""
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append([iid, human_ago(h.created), created_by, human_size(size), h.comment or ""])
    if not args.quiet:
        _print_table(rows, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"])
    return 0

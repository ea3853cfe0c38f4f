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
from datetime import datetime


def add_parser(sub) -> None:
    p = sub.add_parser("images", help="list images in the local store")
    add_images_flags(p)

    p = sub.add_parser("tag", help="give an image another name")
    p.add_argument("source", metavar="SOURCE_IMAGE")
    p.add_argument("target", metavar="TARGET_IMAGE")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("rmi", help="remove image names (blobs go at the next prune)")
    p.add_argument("-f", "--force", action="store_true", help="remove every tag of an image given by id")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("inspect", help="show image details as JSON (like docker image inspect)")
    add_inspect_flags(p)

    p = sub.add_parser("history", help="show the history of an image")
    add_history_flags(p)


def add_images_flags(p) -> None:
    p.add_argument("-a", "--all", action="store_true",
                   help="also list untagged images still in the store (old builds, removed names)")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    p.add_argument("--digests", action="store_true", help="show manifest digests")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate ids")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="reference=PATTERN, dangling=true|false, label=KEY[=VALUE], before=IMAGE, since=IMAGE")
    p.add_argument("--format", help="table (default), json, or a Go template like docker's")
    p.add_argument("reference", nargs="?", help="only images whose repository matches")
    p.set_defaults(func=cmd_images)


def add_inspect_flags(p) -> None:
    p.add_argument("-f", "--format", help="a Go template like docker's, e.g. '{{json .Config}}'")
    p.add_argument("--platform", help="the image of this platform from a multi-platform image")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_inspect)


def add_history_flags(p) -> None:
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="only show layer ids")
    p.add_argument("--format", help="table (default), json, or a Go template like docker's")
    p.add_argument("--platform", help="the image of this platform from a multi-platform image")
    p.add_argument("image", metavar="IMAGE")
    p.set_defaults(func=cmd_history)


def run(args: argparse.Namespace) -> int:
    return args.func(args)


def _store():
    from builder import settings
    from builder.oci.layout import ImageStore

    return ImageStore(settings.load().store_dir)


def _load(store, ref: str, platform: str | None = None):
    """(descriptor, image): an index gives its `platform` entry (default: this machine's, else the first stored)."""
    from builder.engine.multiplatform import load_for

    desc = store.resolve(ref)
    if platform:
        from builder import platforms

        platform = platforms.normalize(platform)
    return desc, load_for(store, desc, platform)


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


_IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                  "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
                  "Containers": "CONTAINERS"}
_HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                    "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}


def _sizes():
    from builder import settings
    from builder.oci.usage import LayerSizes

    return LayerSizes(settings.load().root / "layer-sizes.json")


def _check_format(fmt: str | None) -> None:
    """A malformed template is a usage error before any work (docker: `template parsing error`)."""
    if fmt and fmt.strip() not in ("table", "json"):
        from builder.gotemplate import parse

        body = fmt.lstrip()
        body = body[5:] if body.startswith("table") else body
        parse(body.strip(" ").replace("\\t", "\t").replace("\\n", "\n"))


def cmd_images(args) -> int:
    from builder.commands.images_query import (created_ts, docker_time, label_matches, parse_filters,
                                                ref_matches, untagged_images)
    from builder.errors import PybuildError
    from builder.gotemplate import format_rows
    from builder.oci.image import Image

    filters = parse_filters(args.filter)
    _check_format(args.format)
    store = _store()
    sizes = _sizes()
    want = _split_ref(args.reference)[0] if args.reference else None
    entries = []  # (repo, tag, manifest desc, image)
    tagged: set[str] = set()
    from builder.engine.multiplatform import index_platforms, load_for
    from builder.oci import mediatypes as mt

    for ref, desc in store.list():
        try:
            img = load_for(store, desc)
            plats = index_platforms(store, desc)
        except PybuildError as e:
            sys.stderr.write(f"warning: {ref}: {e}\n")
            continue
        tagged.add(str(desc.digest))
        repo, tag = _split_ref(ref)
        entries.append((repo, tag, desc, img, plats))
    dangling = filters.get("dangling", [])
    want_dangling = dangling[-1].lower() in ("true", "1") if dangling else None
    if args.all or want_dangling:
        entries += [("<none>", "<none>", d, i, None) for d, i in untagged_images(store, tagged)]
    bounds = {}
    for key in ("before", "since"):
        for ref in filters.get(key, []):
            bounds[key] = created_ts(_load(store, ref)[1].config.created)
    rows, seen_ids = [], set()
    for repo, tag, desc, img, plats in entries:
        is_dangling = repo == "<none>"
        if want and repo != want:
            continue
        if want_dangling is not None and is_dangling != want_dangling:
            continue
        if "reference" in filters and (is_dangling or not ref_matches(filters["reference"], repo, tag)):
            continue
        if "label" in filters and not label_matches(filters["label"], img.config.config.labels or {}):
            continue
        ts = created_ts(img.config.created)
        if "before" in bounds and not ts < bounds["before"]:
            continue
        if "since" in bounds and not ts > bounds["since"]:
            continue
        multi = mt.is_index(desc.media_type)  # one row per name; its id is the index digest (as docker's containerd store)
        the_id = desc.digest if multi else img.id
        iid = str(the_id) if args.no_trunc else the_id.hex[:12]
        if args.quiet:
            if iid not in seen_ids:
                seen_ids.add(iid)
                print(iid)
            continue
        if multi:
            size = sum(sizes.image(store.blobs, Image.load(store.blobs, d)) for _p, d, present in plats if present)
        else:
            size = sizes.image(store.blobs, img)
        rows.append({"Containers": "N/A", "CreatedAt": docker_time(img.config.created),
                     "CreatedSince": human_ago(img.config.created),
                     "Digest": str(desc.digest) if not is_dangling or args.digests else "<none>",
                     "ID": iid, "Repository": repo, "SharedSize": "N/A", "Size": human_size(size),
                     "Tag": tag, "UniqueSize": "N/A", "VirtualSize": human_size(size),
                     "Platforms": [p for p, _d, present in plats if present] if plats else []})
    sizes.save()
    if args.quiet:
        return 0
    default = ("table {{.Repository}}\t{{.Tag}}\t" + ("{{.Digest}}\t" if args.digests else "")
               + "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}")
    sys.stdout.write(format_rows(args.format, rows, _IMAGE_HEADERS, default))
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


def inspect_dict(store, ref: str, platform: str | None = None) -> dict:
    """docker image inspect's JSON for one image (plus Platforms: every platform an index names,
    with whether its image is stored here)."""
    from builder.engine.multiplatform import index_platforms

    desc, img = _load(store, ref, platform)
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
        "Platforms": [{"Platform": p, "Digest": str(d.digest), "Stored": present}
                      for p, d, present in index_platforms(store, desc)],
    }


def _legacy_path(fmt: str) -> bool:
    """pybuild's earlier `-f .Config.Cmd` (no braces): kept, printing JSON for non-strings."""
    import re

    return "{{" not in fmt and re.fullmatch(r"\s*(\.[A-Za-z_][A-Za-z0-9_]*)+\s*", fmt) is not None


def cmd_inspect(args) -> int:
    from builder.errors import ImageNotFound
    from builder.gotemplate import parse

    tpl = None
    if args.format and not _legacy_path(args.format):
        tpl = parse(args.format)  # a bad template: usage error before any image is read
    store = _store()
    sizes = _sizes()
    out, failed = [], False
    for ref in args.images:
        try:
            info = inspect_dict(store, ref, args.platform)
            desc, img = _load(store, ref, args.platform)
            info["Size"] = sizes.image(store.blobs, img)
            out.append(info)
        except ImageNotFound as e:
            container = _container(ref)  # docker's inspect takes containers as well
            if container is not None:
                out.append(container)
                continue
            sys.stderr.write(f"error: {e}\n")
            failed = True
    sizes.save()
    if tpl is not None:
        for o in out:
            print(tpl.execute(o))
    elif args.format:
        from builder.gotemplate import MISSING

        for o in out:
            v = _walk(o, args.format)
            print("<no value>" if v is MISSING else (v if isinstance(v, str) else json.dumps(v)))
    else:
        print(json.dumps(out, indent=4))
    return 1 if failed else 0


def _walk(obj, path: str):
    from builder.gotemplate import MISSING

    cur = obj
    for part in [p for p in path.strip().split(".") if p]:
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def _container(ref: str) -> dict | None:
    from builder.containers.views import inspect_json
    from builder.containers.state import NoSuchContainer, find

    try:
        return inspect_json(find(_store().root, ref))
    except NoSuchContainer:
        return None


def cmd_history(args) -> int:
    from builder.gotemplate import format_rows

    _check_format(args.format)
    store = _store()
    desc, img = _load(store, args.image, args.platform)
    sizes = _sizes()
    layers = list(zip(img.layers, img.diff_ids))
    li = 0
    entries = []
    for h in img.config.history:
        size = 0
        if not h.empty_layer and li < len(layers):
            size = sizes.layer(store.blobs, *layers[li])
            li += 1
        entries.append((h, size))
    sizes.save()
    rows = []
    for n, (h, size) in enumerate(reversed(entries)):
        iid = (str(img.id) if args.no_trunc else img.id.hex[:12]) if n == 0 else "<missing>"
        if args.quiet:
            print(iid)
            continue
        created_by = h.created_by or ""
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({"Comment": h.comment or "", "CreatedAt": h.created or "", "CreatedBy": created_by,
                     "CreatedSince": human_ago(h.created), "ID": iid, "Size": human_size(size)})
    if not args.quiet:
        default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
        sys.stdout.write(format_rows(args.format, rows, _HISTORY_HEADERS, default))
    return 0

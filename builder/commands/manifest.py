"""`pybuild manifest create | add | inspect | push`: multi-platform indexes from single-platform images.

Owns: the verbs of `docker manifest` / `podman manifest` / `buildx imagetools create` over the
local store: create (an OCI image index whose entries are the given images, each with the
platform its config names; an index given as a source contributes all its entries; --amend
starts from the index already under the name), add (entries into an existing index, replacing
the same platform), inspect (the index JSON) and push (the index and every stored image it names).
Must not: hold transfer logic (builder.registry does) or change an image (only new indexes are written).
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("manifest", help="create, add to, inspect and push multi-platform image indexes")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    c = verbs.add_parser("create", help="make an index NAME of IMAGEs (one per platform)")
    c.add_argument("name", metavar="NAME")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c.add_argument("-a", "--amend", action="store_true", help="start from the index already named NAME")
    a = verbs.add_parser("add", help="add IMAGEs to the index NAME (an entry of the same platform is replaced)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("images", nargs="+", metavar="IMAGE")
    i = verbs.add_parser("inspect", help="print the index NAME as JSON")
    i.add_argument("name", metavar="NAME")
    u = verbs.add_parser("push", help="push the index NAME (and the images it names) to DEST (default: NAME)")
    u.add_argument("name", metavar="NAME")
    u.add_argument("dest", nargs="?", metavar="DEST")
    u.add_argument("--ca-cert", metavar="FILE", help="trust this CA certificate (PEM) for the registry")
    u.add_argument("-j", "--jobs", type=int, default=3)


def run(args: argparse.Namespace) -> int:
    from builder.errors import UsageError

    if args.verb is None:
        raise UsageError("usage: pybuild manifest create|add|inspect|push …")
    return {"create": _create, "add": _add, "inspect": _inspect, "push": _push}[args.verb](args)


def _store():
    from builder import settings
    from builder.oci.layout import ImageStore

    return ImageStore(settings.load().store_dir).ensure()


def _entries(store, ref: str) -> list:
    """Index entries (with platform) for one local image: a manifest → one, an index → all it names."""
    from builder.engine.multiplatform import index_platforms, to_platform
    from builder.oci.model import Descriptor

    desc = store.resolve(ref)
    out = []
    for plat, d, present in index_platforms(store, desc):
        if not present:
            continue
        out.append(Descriptor(d.media_type, d.digest, d.size, platform=to_platform(plat)))
    return out


def _write(store, name: str, entries: list) -> None:
    from builder.oci import mediatypes as mt
    from builder.oci.model import Descriptor, Index

    d = store.blobs.put_bytes(Index(manifests=tuple(entries)).to_json(), mt.OCI_INDEX)
    store.tag(name, Descriptor(mt.OCI_INDEX, d.digest, d.size))
    print(d.digest)


def _merge(base: list, new: list, *, replace_same: bool) -> list:
    from builder.errors import PybuildError

    out = list(base)
    for e in new:
        same = [i for i, x in enumerate(out) if str(x.platform) == str(e.platform)]
        if same and not replace_same:
            raise PybuildError(f"two images for {e.platform}: {out[same[0]].digest} and {e.digest}")
        for i in reversed(same):
            out.pop(i)
        out.append(e)
    return out


def _existing(store, name: str) -> list:
    from builder.errors import ImageNotFound, PybuildError
    from builder.oci import mediatypes as mt
    from builder.oci.model import Index

    try:
        desc = store.resolve(name)
    except ImageNotFound:
        return []
    if not mt.is_index(desc.media_type):
        raise PybuildError(f"{name} is an image, not an index; give it as an IMAGE instead")
    return list(Index.from_json(store.blobs.read_bytes(desc.digest)).manifests)


def _create(args) -> int:
    from builder.oci.reference import parse_reference

    parse_reference(args.name)
    store = _store()
    entries = _existing(store, args.name) if args.amend else []
    fresh: list = []
    for ref in args.images:
        fresh = _merge(fresh, _entries(store, ref), replace_same=False)
    _write(store, args.name, _merge(entries, fresh, replace_same=True))
    return 0


def _add(args) -> int:
    from builder.errors import ImageNotFound

    store = _store()
    entries = _existing(store, args.name)
    if not entries:
        store.resolve(args.name)  # not there at all: ImageNotFound names it
        raise ImageNotFound(f"{args.name} is an empty index")
    for ref in args.images:
        entries = _merge(entries, _entries(store, ref), replace_same=True)
    _write(store, args.name, entries)
    return 0


def _inspect(args) -> int:
    store = _store()
    desc = store.resolve(args.name)
    json.dump(json.loads(store.blobs.read_bytes(desc.digest)), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _push(args) -> int:
    from builder.commands.registry import _options, configure_from_settings
    from builder.oci.reference import parse_reference
    from builder.registry.transfer import push

    dest = args.dest or args.name
    parse_reference(dest)
    configure_from_settings()
    desc = push(_store(), args.name, [dest], options=_options(args))
    print(f"pushed {parse_reference(dest).familiar()}@{desc.digest}")
    return 0

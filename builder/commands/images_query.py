"""What `pybuild images` selects: docker's --filter keys, and the untagged images (`-a`).

Owns: parsing `--filter KEY=VALUE` (reference, dangling, label, before, since; anything else is a
usage error before work), matching an image against them, and finding image manifests in the
store that no tag names. Must not: print (builder.commands.images presents the rows).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

FILTER_KEYS = ("reference", "dangling", "label", "before", "since")


def parse_filters(specs: list[str]) -> dict[str, list[str]]:
    from builder.errors import UsageError

    out: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        key = key.strip().lower()
        if key not in FILTER_KEYS:
            raise UsageError(f"invalid filter {key!r} (images filters: {', '.join(FILTER_KEYS)})")
        if not eq or (key != "label" and not value):
            raise UsageError(f"bad format of filter (expected name=value): {spec!r}")
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"invalid filter 'dangling={value}': want true or false")
        out.setdefault(key, []).append(value)
    return out


def created_ts(created: str | None) -> float:
    if not created:
        return 0.0
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def docker_time(created: str | None) -> str:
    ts = created_ts(created)
    if not created or not ts:
        return "N/A"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def untagged_images(store, tagged: set[str]) -> list:
    """Image manifests in the store that no tag names (`<none>:<none>`, docker's dangling)."""
    from builder.errors import PybuildError
    from builder.oci import mediatypes as mt
    from builder.oci.image import Image
    from builder.oci.model import Descriptor

    manifest_types = (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
    found = []
    reachable: set[str] = set(tagged)
    for _, desc in store.list():
        if desc.media_type not in manifest_types:  # an index: its manifests are not dangling
            try:
                data = json.loads(store.blobs.read_bytes(desc.digest))
                reachable.update(m.get("digest", "") for m in data.get("manifests", []))
            except (PybuildError, ValueError, AttributeError):
                pass
    blob_dir = store.root / "blobs" / "sha256"
    for digest in store.blobs.walk():
        if str(digest) in reachable:
            continue
        try:
            if (blob_dir / digest.hex).stat().st_size > 256 * 1024:
                continue
            with open(blob_dir / digest.hex, "rb") as f:
                head = f.read(4096)
            if b'"config"' not in head or b'"layers"' not in head:
                continue
            data = json.loads(store.blobs.read_bytes(digest))
            mtype = data.get("mediaType") or mt.OCI_MANIFEST
            if mtype not in manifest_types or "config" not in data:
                continue
            size = (blob_dir / digest.hex).stat().st_size
            desc = Descriptor(media_type=mtype, digest=digest, size=size)
            found.append((desc, Image.load(store.blobs, desc)))
        except (OSError, ValueError, PybuildError, AttributeError, TypeError, KeyError):
            continue
    return found


def ref_matches(patterns: list[str], repo: str, tag: str) -> bool:
    from fnmatch import fnmatchcase

    names = [repo, f"{repo}:{tag}"]
    return any(fnmatchcase(n, p) for p in patterns for n in names)


def label_matches(specs: list[str], labels: dict) -> bool:
    for spec in specs:
        k, eq, v = spec.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True

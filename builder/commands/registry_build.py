"""`pybuild build` meets registries: --cache-to/--cache-from type=registry and --push.

Owns: mapping type=registry cache specs onto the engine's local exchange format in temp dirs
(pulled before the build, pushed after it), mode=min trimming, `mounts=true` (RUN
--mount=type=cache directories exported as layers and unpacked on import), and pushing the
built image where asked. commands/build.py reaches this through commands.registry's
`registry_cache_dir` / `after_build`. Must not: hold transfer logic (builder.registry does).
"""
from __future__ import annotations

import argparse
import os
import sys

from builder.commands.registry import _options
from builder.layers import fstree


MOUNT_ANNOTATION = "dev.pybuild.cache.mount"
MOUNT_MEDIA_TYPE = "application/vnd.pybuild.cache.mount.v1+json"
_exports: list[tuple[dict, object]] = []  # (cache spec, temp dir) to push after the build
_temps: list[object] = []


def _cleanup_temps() -> None:

    for d in _temps:
        fstree.rmtree(d, ignore_errors=True)
    _temps.clear()


def registry_cache_dir(spec: str, key: str, flag: str):
    """`--cache-from type=registry,ref=R` → a local cache dir holding R's records (empty when R
    does not exist yet: the first CI run); `--cache-to type=registry,ref=R,...` → a temp dir the
    engine exports into, pushed to R by `after_build`."""
    import atexit
    import tempfile
    from pathlib import Path

    from builder import settings
    from builder.errors import NotFound
    from builder.oci.layout import ImageStore
    from builder.registry.cache import parse_cache_spec, pull_layout

    kv = parse_cache_spec(spec)
    st = settings.load()
    st.tmp_dir.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(dir=st.tmp_dir, prefix="registry-cache-"))
    if not _temps:
        atexit.register(_cleanup_temps)
    _temps.append(d)
    if key == "dest":
        _exports.append((kv, d))
        return d
    store = ImageStore(st.store_dir).ensure()
    opts = _options(argparse.Namespace(ca_cert=kv.get("ca-cert"), jobs=3))
    from builder.errors import CacheError
    from builder.oci.model import Index, layout_header

    try:
        pull_layout(kv["ref"], d, options=opts, skip_blob=store.blobs.has)
    except CacheError as e:
        if "not a cache index" not in e.message:
            raise
        # an image, maybe with an inline cache (--cache-to type=inline): its records, on its layers
        n = _import_inline(kv["ref"], store, st, opts)
        if n == 0:
            sys.stderr.write(f"WARNING: {flag} {kv['ref']}: an image without an inline cache; building without it\n")
        (d / "index.json").write_bytes(Index().to_json())
        (d / "oci-layout").write_bytes(layout_header())
        return d
    except NotFound:
        sys.stderr.write(f"WARNING: {flag} {kv['ref']}: no cache there yet; building without it\n")
        (d / "index.json").write_bytes(Index().to_json())
        (d / "oci-layout").write_bytes(layout_header())
        return d
    _import_mounts(d, st, store.blobs)
    return d


def _import_inline(ref: str, store, st, opts) -> int:
    """Pull the image `ref` (untagged) and put its inline cache records into the build cache."""
    from builder.engine.cache import CacheStore, import_inline
    from builder.oci.model import Manifest
    from builder.registry.transfer import pull

    desc = pull(ref, store, options=opts, tag=False)
    man = Manifest.from_json(store.blobs.read_bytes(desc.digest), allow_empty_layers=True)
    return import_inline(CacheStore(st.cache_dir, st.tmp_dir), store.blobs.read_bytes(man.config.digest),
                         man.layers)


def after_build(args, res, outputs: list[dict]) -> None:
    """Push pending registry cache exports, then the image where asked (--push, push=true, type=registry)."""
    from builder import settings
    from builder.oci.layout import ImageStore
    from builder.oci.reference import parse_reference
    from builder.registry.cache import push_layout
    from builder.registry.transfer import push

    st = settings.load()
    try:
        for kv, d in _exports:
            _trim_to_mode(d, kv.get("mode", "min"), res)
            if kv.get("mounts") == "true":
                _export_mounts(d, st)
            push_layout(d, kv["ref"], options=_options(argparse.Namespace(ca_cert=kv.get("ca-cert"), jobs=3)))
            sys.stderr.write(f"exported build cache to {kv['ref']}\n")
        names: list[str] = list(args.tag) if getattr(args, "push", False) else []
        for o in outputs:
            if o.get("type") == "registry" or (o.get("type") == "image" and o.get("push") == "true"):
                names += [n for n in (o.get("name") or "").split(",") if n] or list(args.tag)  # as buildx: -t
        if getattr(args, "push", False) and not names:
            from builder.errors import UsageError

            raise UsageError("--push needs a name: -t REGISTRY/REPO:TAG")
        if names:
            from builder.commands.outputs import converted
            from builder.commands.registry import for_push

            store = ImageStore(st.store_dir)
            pushed = [o for o in outputs if o.get("type") == "registry" or o.get("push") == "true"]
            if pushed and any(k.startswith(("compression", "force-compression", "oci-mediatypes", "annotation"))
                              for k in pushed[0]):
                src = converted(pushed[0], res, st, default_oci=None)  # as that -o asks
            else:
                src = for_push(store, res.manifest)
            desc = push(store, src, list(dict.fromkeys(names)),
                        options=_options(argparse.Namespace(ca_cert=None, jobs=3)))
            for n in dict.fromkeys(names):
                sys.stderr.write(f"pushed {parse_reference(n).familiar()}@{desc.digest}\n")
    finally:
        _exports.clear()
        _cleanup_temps()


def _trim_to_mode(d, mode: str, res) -> None:
    """mode=min keeps the records of the final image's layers (BuildKit's default); max keeps all."""
    import json

    from builder.oci.store import DirStore

    if mode != "min":
        return
    images = [r.image for r in getattr(res, "results", {}).values()] or [res.image]  # every platform's
    keep_layers = {str(layer.digest) for img in images for layer in img.layers}
    index = json.loads((d / "index.json").read_bytes())
    store = DirStore(d, d / ".tmp")
    kept = []
    for m in index.get("manifests", []):
        man = json.loads(store.read_bytes(m["digest"]))
        layers = [x["digest"] for x in man.get("layers", [])]
        if not layers or all(x in keep_layers for x in layers):
            kept.append(m)
    index["manifests"] = kept
    (d / "index.json").write_text(json.dumps(index))


def _export_mounts(d, st) -> None:
    """Add every RUN --mount=type=cache directory as a layer + entry annotated with its name."""
    import json

    from builder.layers.tarball import write_layer
    from builder.oci import mediatypes as mt
    from builder.oci.digest import canonical_json
    from builder.oci.store import DirStore

    mounts = st.cache_dir / "mounts"
    if not mounts.is_dir():
        return
    out = DirStore(d, d / ".tmp")
    index = json.loads((d / "index.json").read_bytes())
    index["manifests"] = [m for m in index.get("manifests", []) if MOUNT_ANNOTATION not in (m.get("annotations") or {})]
    for name in sorted(os.listdir(mounts)):
        data = mounts / name / "data"
        if not data.is_dir():
            continue
        info = write_layer(data, out, compression=st.compression)
        cfg = out.put_bytes(canonical_json({"name": name, "diff_id": str(info.diff_id)}), MOUNT_MEDIA_TYPE)
        man = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": MOUNT_MEDIA_TYPE,
                              "config": cfg.to_dict(), "layers": [info.descriptor.to_dict()]})
        md = out.put_bytes(man, mt.OCI_MANIFEST)
        index["manifests"].append({**md.to_dict(), "annotations": {MOUNT_ANNOTATION: name}})
    (d / "index.json").write_text(json.dumps(index))


def _import_mounts(d, st, local) -> None:
    """Unpack exported cache-mount directories that this machine does not have yet."""
    import json
    import re
    import tempfile

    from builder.layers.unpack import apply_layer
    from builder.oci.store import DirStore

    index = json.loads((d / "index.json").read_bytes())
    theirs = DirStore(d, d / ".tmp")
    for m in index.get("manifests", []):
        name = (m.get("annotations") or {}).get(MOUNT_ANNOTATION)
        if not name:
            continue
        if not re.fullmatch(r"[0-9a-f]{32}", name):
            continue  # untrusted input never names a path outside the mounts dir
        target = st.cache_dir / "mounts" / name / "data"
        if target.exists():
            continue
        man = json.loads(theirs.read_bytes(m["digest"]))
        layer = man["layers"][0]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=target.parent, prefix=".import-")
        try:
            src = theirs if theirs.has(layer["digest"]) else local  # pull_layout skips blobs we have
            with src.open(layer["digest"]) as f:
                apply_layer(f, tmp, media_type=layer["mediaType"])
            os.rename(tmp, target)
        except BaseException:
            fstree.rmtree(tmp, ignore_errors=True)
            raise

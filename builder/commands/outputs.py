"""`pybuild build -o/--output`: the specs `docker buildx build` takes, checked before the build,
and the exports written after it.

Owns: `parse_outputs(specs)` — buildx's grammar: CSV `key=value` fields, `type=` required;
`-o DIR` (no `=`) is `type=local,dest=DIR` and `-o -` is `type=tar,dest=-` (the rootfs as a
tar on stdout); every key checked against what the type takes (an unknown key, a missing
`dest`, a bad `compression`/`compression-level`/boolean is a UsageError before anything is
built) — and `write_output(spec, result, settings, tags)`: oci / docker archives (or directory
layouts with `tar=false`) named from `name=` or `-t` as BuildKit names them (one index entry
per name: `io.containerd.image.name` = the full name, `org.opencontainers.image.ref.name` = its
tag), layers converted by `compression=`/`compression-level=`/`force-compression=`, media types
by `oci-mediatypes=`, annotations by `annotation.K=V` / `annotation-manifest.K=V` (the
manifest) and `annotation-manifest-descriptor.K=V` (its index entry); `local` / `tar` rootfs.
Must not: build, or push (commands/registry_build.py pushes `image,push=true` / `registry`).
"""
from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

from builder.errors import UsageError
from builder.layers import fstree

_IMAGE_KEYS = {"name", "compression", "compression-level", "force-compression", "oci-mediatypes"}
KEYS = {
    "oci": {"dest", "tar"} | _IMAGE_KEYS,
    "docker": {"dest", "tar"} | _IMAGE_KEYS,
    "image": {"push"} | _IMAGE_KEYS,
    "registry": {"push"} | _IMAGE_KEYS,
    "local": {"dest", "platform-split"},
    "tar": {"dest", "platform-split"},
}
ANNOTATION_PREFIXES = ("annotation.", "annotation-manifest.", "annotation-manifest-descriptor.")
_BOOLS = ("tar", "push", "force-compression", "oci-mediatypes", "platform-split")


def _fail(spec: str, msg: str) -> UsageError:
    return UsageError(f"--output {spec}: {msg}")


def parse_output(spec: str) -> dict[str, str]:
    """One `-o` value as buildx reads it, validated (see the module docstring)."""
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise _fail(spec, "not a comma-separated list of key=value") from None
    if len(fields) == 1 and fields[0] == spec and not spec.startswith("type="):
        if spec == "-":
            return {"type": "tar", "dest": "-"}
        if "=" not in spec:
            return {"type": "local", "dest": spec}
    out: dict[str, str] = {}
    for f in fields:
        k, sep, v = f.partition("=")
        if not sep:
            raise _fail(spec, f"invalid value {f!r} (want key=value)")
        k = k.strip().lower() if not k.strip().lower().startswith(ANNOTATION_PREFIXES) else k.strip()
        out[k] = v
    kind = out.get("type")
    if not kind:
        raise _fail(spec, "type is required (oci, docker, image, registry, local or tar)")
    if kind not in KEYS:
        raise _fail(spec, f"unknown type {kind!r} (oci, docker, image, registry, local or tar)")
    for k in out:
        if k in ("type",) or k in KEYS[kind]:
            continue
        if k.lower().startswith("annotation") and kind in ("oci", "docker", "image", "registry"):
            if not k.lower().startswith(ANNOTATION_PREFIXES) or k.partition(".")[2] == "":
                raise _fail(spec, f"unsupported annotation key {k!r} (annotation.KEY, annotation-manifest.KEY "
                                  "or annotation-manifest-descriptor.KEY)")
            continue
        raise _fail(spec, f"unknown key {k!r} for type={kind} (it takes: {', '.join(sorted(KEYS[kind]))}"
                          f"{', annotation.KEY' if 'name' in KEYS[kind] else ''})")
    for k in _BOOLS:
        if k in out and out[k].lower() not in ("true", "false"):
            raise _fail(spec, f"{k} must be true or false, not {out[k]!r}")
        if k in out:
            out[k] = out[k].lower()
    if kind in ("oci", "docker", "local", "tar") and not out.get("dest"):
        raise _fail(spec, f"type={kind} needs dest=PATH (dest=- writes to stdout)")
    if out.get("tar") == "false" and out.get("dest") == "-":
        raise _fail(spec, "tar=false writes a directory: dest=- is not one")
    if "compression" in out:
        from builder.layers.convert import COMPRESSIONS

        if out["compression"] not in COMPRESSIONS or out["compression"] == "none":
            raise _fail(spec, f"compression must be gzip, zstd or uncompressed, not {out['compression']!r}")
    if "compression-level" in out:
        from builder.layers.convert import COMPRESSIONS, LEVELS

        comp = COMPRESSIONS.get(out.get("compression", "gzip"), "gzip")
        lo, hi = LEVELS[comp]
        try:
            lvl = int(out["compression-level"])
        except ValueError:
            lvl = lo - 1
        if not lo <= lvl <= hi or comp == "none":
            raise _fail(spec, f"compression-level for {comp} must be {lo}-{hi}, not {out['compression-level']!r}")
    return out


def parse_outputs(specs: list[str]) -> list[dict[str, str]]:
    outs = [parse_output(s) for s in specs]
    if sum(1 for o in outs if o.get("dest") == "-") > 1:
        raise UsageError("--output: only one output can write to stdout (dest=-)")
    return outs


def annotations(o: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(manifest annotations, index-entry annotations) from an output spec."""
    man: dict[str, str] = {}
    desc: dict[str, str] = {}
    for k, v in o.items():
        if k.startswith("annotation-manifest-descriptor."):
            desc[k.partition(".")[2]] = v
        elif k.startswith(("annotation.", "annotation-manifest.")):
            man[k.partition(".")[2]] = v
    return man, desc


def converted(o: dict[str, str], res, st, *, default_oci: bool | None):
    """The built image re-encoded as `o` asks (the built manifest itself when nothing changes)."""
    from builder.layers.convert import COMPRESSIONS, convert_image
    from builder.oci.store import DirStore

    comp = COMPRESSIONS[o["compression"]] if "compression" in o else None
    level = int(o["compression-level"]) if "compression-level" in o else None
    oci: bool | None = default_oci
    if "oci-mediatypes" in o:
        oci = o["oci-mediatypes"] == "true"
    if comp == "zstd" and oci is False and "oci-mediatypes" not in o:
        oci = True  # as BuildKit: zstd layers need the OCI media types
    if comp == "zstd" and oci is False:
        raise UsageError("--output: compression=zstd needs oci-mediatypes=true (docker media types have no zstd)")
    if level is not None and comp is None:
        comp = st.compression  # a level alone applies to the default compression
    man_ann, _ = annotations(o)
    return convert_image(DirStore(st.store_dir), res.manifest, compression=comp, level=level,
                         force=o.get("force-compression") == "true", oci_mediatypes=oci,
                         annotations=man_ann or None, memo_dir=st.cache_dir / "convert", tmp_dir=st.tmp_dir)


def image_names(o: dict[str, str], tags) -> list[str]:
    """`name=` (comma-separated) or else the -t tags, normalized as BuildKit does."""
    from builder.oci.reference import parse_reference

    raw = [n for n in (o.get("name") or "").split(",") if n] or list(tags)
    out = []
    for n in raw:
        try:
            out.append(str(parse_reference(n)))
        except Exception as e:  # noqa: BLE001 - InvalidReference: one line
            raise UsageError(f"--output name {n!r}: {getattr(e, 'message', e)}") from None
    return out


def _oci_entries(desc, names: list[str], desc_ann: dict[str, str]):
    """Index entries as BuildKit's (containerd's) exporter writes them: one per name."""
    from builder.oci import mediatypes as mt
    from builder.oci.reference import parse_reference
    from runtime.record import replace

    base = replace(desc, annotations={**(desc.annotations or {}), **desc_ann} or None)
    if not names:
        return [(None, base)]
    out = []
    for n in names:
        r = parse_reference(n)
        ref_name = r.tag if r.tag else n
        out.append((ref_name, replace(base, annotations={**(base.annotations or {}),
                                                         "io.containerd.image.name": n,
                                                         mt.ANNOTATION_REF_NAME: ref_name})))
    return out


def write_output(o: dict, res, st, tags=()) -> None:
    from builder.oci.layout import ImageStore

    kind = o["type"]
    if kind in ("image", "registry"):
        # tags: the engine; push: commands.registry_build.after_build. Asked to re-encode, the
        # names point at the re-encoded image (what a push of them then sends).
        if kind == "image" and any(k.startswith(("compression", "force-compression", "oci-mediatypes",
                                                 "annotation")) for k in o):
            desc = converted(o, res, st, default_oci=None)
            store = ImageStore(st.store_dir)
            for n in image_names(o, tags):
                store.tag(n, desc)
        return
    dest = o["dest"]
    store = ImageStore(st.store_dir)
    if kind in ("local", "tar"):
        _export_rootfs(kind, dest, res, st)
        return
    names = image_names(o, tags)
    _, desc_ann = annotations(o)
    if kind == "oci" or o.get("tar") == "false":
        desc = converted(o, res, st, default_oci=True if kind == "oci" else None)
        from builder.oci.layout import write_oci_layout

        entries = _oci_entries(desc, names, desc_ann)
        if o.get("tar") == "false":
            write_oci_layout(Path(dest), store.blobs, entries)
            return
        out = sys.stdout.buffer if dest == "-" else open(dest, "wb")
        try:
            write_oci_layout(out, store.blobs, entries)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        return
    from builder.oci.archive import save_docker_archive

    # a docker-archive holds plain layer tars: compression options do not apply to it
    refs = names
    if refs:
        for n in refs:
            store.tag(n, res.manifest)  # docker-archive carries the names in its manifest.json
    else:
        refs = [str(res.manifest.digest)]
    out = sys.stdout.buffer if dest == "-" else open(dest, "wb")
    try:
        save_docker_archive(store, refs, out)
    finally:
        if out is not sys.stdout.buffer:
            out.close()


def _export_rootfs(kind: str, dest: str, res, st) -> None:
    """The final filesystem: a directory (local) or a tar of it (tar)."""
    from builder.layers.unpack import apply_layer
    from builder.oci.store import DirStore

    blobs = DirStore(st.store_dir)
    st.tmp_dir.mkdir(parents=True, exist_ok=True)
    root = Path(dest) if kind == "local" else Path(tempfile.mkdtemp(dir=st.tmp_dir, prefix="export-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        for layer in res.image.layers:
            apply_layer(blobs.path(layer.digest), root, media_type=layer.media_type)
        if kind == "tar":
            from builder.layers.tarball import write_tar

            out = sys.stdout.buffer if dest == "-" else open(dest, "wb")
            try:
                write_tar(root, out)
            finally:
                if out is not sys.stdout.buffer:
                    out.close()
    finally:
        if kind == "tar":
            fstree.rmtree(root, ignore_errors=True)

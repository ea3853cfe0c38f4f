"""The build cache: key → record, kept beside its pre-image; local export and import.

Owns: `CacheRecord` (a step's result: layer descriptor + diff_id, or none for an empty layer; the
history `created`; the slot it was built for; the key's pre-image for `cache explain`),
`CacheStore` under `$ROOT/cache/records/<key hex>.json` (atomic writes; a corrupt record is a
miss, never a crash), `nearest(slot)` (the latest record for the same Dockerfile step), prune,
and the exchange format.

Inline (`--cache-to type=inline`): `inline_config(...)` gives the config key holding the records
of the image's layers (layer = its index in the manifest), `import_inline(...)` puts them back as
records whose layers are that image's (pulled) layers.

Exchange format (`--cache-to type=local,dest=DIR` / `--cache-from type=local,src=DIR`): DIR is
an OCI image layout. Each record is one OCI manifest with
`artifactType: application/vnd.pybuild.cache.record.v1+json`, whose `config` is the record JSON
(that media type) and whose `layers` are the record's layer blob (none for an empty layer);
`index.json` lists the manifests, each annotated `dev.pybuild.cache.key=<key>`. Any OCI tool can
copy it, and a registry can hold it as artifacts (the registry helper builds type=registry on it).

Must not: execute steps or decide hits (the solver does); import rich.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from builder.errors import CacheError
from builder.oci.digest import canonical_json
from builder.oci.model import Descriptor
from builder.oci.store import DirStore, atomic_write
from runtime.record import Record, asdict, fields

RECORD_MEDIA_TYPE = "application/vnd.pybuild.cache.record.v1+json"
# `--cache-to type=inline`: the records of the image's own layers, in its config under this key
# (base64 of canonical JSON, as BuildKit keeps its own in "moby.buildkit.cache.v0"; the keys are
# pybuild's, so the two builders never read each other's).
INLINE_KEY = "dev.pybuild.cache.inline.v1"
KEY_ANNOTATION = "dev.pybuild.cache.key"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class CacheRecord(Record):
    key: str
    layer: dict | None  # Descriptor.to_dict() of the stored layer blob, None = empty layer
    diff_id: str | None
    created: str  # history timestamp (RFC 3339) of the step
    slot: str  # "<dockerfile>#<stage>#<index>": what `cache explain` compares against
    pre_image: dict
    written: float = 0.0
    text: str = ""  # the instruction, for `cache ls`
    chain: str | None = None  # the snapshot the step left (prune keeps snapshots records name)

    @property
    def descriptor(self) -> Descriptor | None:
        return Descriptor.from_dict(self.layer) if self.layer else None

    def to_json(self) -> bytes:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> "CacheRecord":
        d = json.loads(data)
        return cls(**{k: d.get(k) for k in fields(cls) if k in d})


class CacheStore:
    def __init__(self, cache_dir: Path, tmp_dir: Path) -> None:
        self.dir = Path(cache_dir) / "records"
        self.tmp = Path(tmp_dir)

    def _path(self, key: str) -> Path:
        return self.dir / (key.split(":", 1)[-1] + ".json")

    def get(self, key: str) -> CacheRecord | None:
        try:
            return CacheRecord.from_json(self._path(key).read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None  # a corrupt record is a miss

    def put(self, rec: CacheRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not rec.written:
            rec = CacheRecord(**{**asdict(rec), "written": time.time()})
        atomic_write(self._path(rec.key), rec.to_json(), self.tmp)

    def all(self) -> list[CacheRecord]:
        out = []
        if not self.dir.is_dir():
            return out
        for p in self.dir.glob("*.json"):
            try:
                out.append(CacheRecord.from_json(p.read_bytes()))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda r: r.written)

    def nearest(self, slot: str, exclude: str | None = None) -> CacheRecord | None:
        """The most recent record written for the same Dockerfile step (another key)."""
        cands = [r for r in self.all() if r.slot == slot and r.key != exclude]
        return cands[-1] if cands else None

    def remove(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    # -- exchange -------------------------------------------------------------------------
    def export_local(self, keys: list[str], blobs: DirStore, dest: Path) -> int:
        """Write the records for `keys` (and their layer blobs) as an OCI layout at `dest`."""
        out = DirStore(dest, dest / ".tmp")
        (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        manifests = []
        try:
            old = json.loads((dest / "index.json").read_bytes()).get("manifests", [])
        except (OSError, ValueError):
            old = []
        have = {m.get("annotations", {}).get(KEY_ANNOTATION) for m in old}
        n = 0
        for key in keys:
            rec = self.get(key)
            if rec is None:
                continue
            layers = []
            if rec.layer:
                desc = rec.descriptor
                with blobs.open(desc.digest) as f:
                    out.put(f, desc.media_type, desc.digest)
                layers.append(rec.layer)
            cfg = out.put_bytes(rec.to_json(), RECORD_MEDIA_TYPE)
            man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": RECORD_MEDIA_TYPE,
                   "config": cfg.to_dict(), "layers": layers}
            mdesc = out.put_bytes(canonical_json(man), OCI_MANIFEST)
            if key not in have:
                manifests.append({**mdesc.to_dict(), "annotations": {KEY_ANNOTATION: key}})
                n += 1
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": old + manifests}
        atomic_write(dest / "index.json", canonical_json(index), dest / ".tmp")
        atomic_write(dest / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', dest / ".tmp")
        return n

    def import_local(self, src: Path, blobs: DirStore) -> int:
        """Read records (and their layers) from an exported layout into this cache."""
        src = Path(src)
        try:
            index = json.loads((src / "index.json").read_bytes())
        except (OSError, ValueError) as e:
            raise CacheError(f"--cache-from {src}: not a pybuild cache export ({e})") from None
        theirs = DirStore(src, src / ".tmp")
        n = 0
        for m in index.get("manifests", []):
            key = m.get("annotations", {}).get(KEY_ANNOTATION)
            if not key or self.get(key) is not None:
                continue
            man = json.loads(theirs.read_bytes(m["digest"]))
            rec = CacheRecord.from_json(theirs.read_bytes(man["config"]["digest"]))
            if rec.key != key:
                raise CacheError(f"--cache-from {src}: record for {key[:19]} names another key")
            for layer in man.get("layers", []):
                if not blobs.has(layer["digest"]):
                    with theirs.open(layer["digest"]) as f:
                        blobs.put(f, layer["mediaType"], layer["digest"])
            self.put(rec)
            n += 1
        return n


def inline_config(cache: CacheStore, keys: list[str], layers) -> dict:
    """{INLINE_KEY: base64(json)} with the records among `keys` whose layer is one of the image's
    `layers` (descriptors, in manifest order) or that made no layer (mode=min, as BuildKit's
    inline cache)."""
    import base64

    index = {str(d.digest): i for i, d in enumerate(layers)}
    out = []
    for key in dict.fromkeys(keys):
        rec = cache.get(key)
        if rec is None:
            continue
        li = None
        if rec.layer is not None:
            li = index.get(rec.layer["digest"])
            if li is None:
                continue  # a layer of another stage: not in this image
        out.append({"key": rec.key, "layer": li, "diff_id": rec.diff_id, "created": rec.created,
                    "slot": rec.slot, "text": rec.text, "pre_image": rec.pre_image})
    return {INLINE_KEY: base64.b64encode(canonical_json({"records": out})).decode()}


def import_inline(cache: CacheStore, config: bytes, layers) -> int:
    """Records from an image config's inline cache (nothing when it has none), pointing at the
    image's `layers`; a record whose diff_id does not match its layer's is refused."""
    import base64

    try:
        cfg = json.loads(config)
        raw = cfg.get(INLINE_KEY) if isinstance(cfg, dict) else None
        if not raw:
            return 0
        data = json.loads(base64.b64decode(raw, validate=True))
        diff_ids = cfg["rootfs"]["diff_ids"]
    except (ValueError, TypeError, KeyError) as e:
        raise CacheError(f"inline cache: not readable ({e})") from None
    n = 0
    for r in data.get("records", []):
        try:
            li = r["layer"]
            if li is not None and (not isinstance(li, int) or not 0 <= li < len(layers) or diff_ids[li] != r["diff_id"]):
                raise CacheError("inline cache: a record names a layer the image does not have")
            if cache.get(r["key"]) is not None:
                continue
            cache.put(CacheRecord(key=r["key"], layer=layers[li].to_dict() if li is not None else None,
                                  diff_id=r["diff_id"] if li is not None else None, created=r["created"],
                                  slot=r.get("slot", ""), pre_image=r.get("pre_image") or {}, text=r.get("text", "")))
            n += 1
        except (KeyError, TypeError, IndexError):
            raise CacheError("inline cache: a malformed record") from None
    return n

"""OCI / Docker schema2 documents as immutable values: Platform, Descriptor, Manifest, Index.

Owns: reading (strictly: the OCI JSON schemas plus upstream's extra checks, so a malformed
document is an InvalidDocument naming the field) and writing (canonical JSON) of descriptors,
manifests and indexes in both OCI and Docker schema2 media types; `ImageConfig` and friends
live in config.py and are re-exported here. Must not: touch stores or the filesystem.
"""
from __future__ import annotations

from builder.errors import InvalidDocument
from builder.oci import _check as c
from builder.oci import mediatypes as mt
from builder.oci.config import ContainerConfig, History, ImageConfig  # noqa: F401  (re-exported)
from builder.oci.digest import Digest, canonical_json
from runtime.record import Record, replace

__all__ = ["Platform", "Descriptor", "Manifest", "Index", "ImageConfig", "ContainerConfig", "History",
           "parse_layout_header", "layout_header"]


class Platform(Record):
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d: dict = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        return d

    @classmethod
    def from_dict(cls, v: object, where: str = "platform") -> "Platform":
        d = c.obj(v, where)
        for k in ("architecture", "os"):
            if k not in d:
                raise c.fail(where, f"{k} is required")
        return cls(architecture=c.string(d["architecture"], f"{where}.architecture"),
                   os=c.string(d["os"], f"{where}.os"),
                   variant=c.opt_string(d, "variant", where),
                   os_version=c.opt_string(d, "os.version", where),
                   os_features=c.strings(d["os.features"], f"{where}.os.features") if "os.features" in d else ())

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


class Descriptor(Record):
    """A typed pointer to content: media type, digest, size (+ optional extras)."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] | None = None
    artifact_type: str | None = None
    data: str | None = None  # base64 of the content, embedded

    def __hash__(self) -> int:
        # The dict of annotations is not hashable; equal descriptors still hash alike.
        return hash((self.media_type, self.digest, self.size))

    def to_dict(self) -> dict:
        d: dict = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.urls:
            d["urls"] = list(self.urls)
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        if self.data is not None:
            d["data"] = self.data
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, v: object, where: str = "descriptor") -> "Descriptor":
        d = c.obj(v, where)
        for k in ("mediaType", "size", "digest"):
            if k not in d:
                raise c.fail(where, f"{k} is required")
        try:
            digest = Digest(d["digest"])
        except InvalidDocument as e:
            raise c.fail(f"{where}.digest", e.message) from None
        return cls(
            media_type=c.media_type(d["mediaType"], f"{where}.mediaType"),
            digest=digest,
            size=c.integer(d["size"], f"{where}.size", lo=0),
            annotations=c.string_map(d["annotations"], f"{where}.annotations") if "annotations" in d else None,
            platform=Platform.from_dict(d["platform"], f"{where}.platform") if "platform" in d else None,
            urls=tuple(c.uri(u, f"{where}.urls[{i}]") for i, u in
                       enumerate(_list(d["urls"], f"{where}.urls"))) if "urls" in d else None,
            artifact_type=c.media_type(d["artifactType"], f"{where}.artifactType") if "artifactType" in d else None,
            data=c.padded_base64(d["data"], f"{where}.data") if "data" in d else None,
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> "Descriptor":
        return cls.from_dict(c.load_object(data, "descriptor"))

    def with_annotations(self, **extra: str) -> "Descriptor":
        return replace(self, annotations={**(self.annotations or {}), **extra})

    @property
    def ref_name(self) -> str | None:
        return (self.annotations or {}).get(mt.ANNOTATION_REF_NAME)


def _list(v: object, where: str) -> list:
    if not isinstance(v, list):
        raise c.fail(where, "must be an array")
    return v


def _schema_version(d: dict, where: str) -> int:
    if "schemaVersion" not in d:
        raise c.fail(where, "schemaVersion is required")
    return c.integer(d["schemaVersion"], f"{where}.schemaVersion", lo=2, hi=2)


class Manifest(Record):
    """An image manifest (OCI or Docker schema2): config + ordered layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = mt.OCI_MANIFEST
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None
    schema_version: int = 2

    def to_dict(self) -> dict:
        d: dict = {"schemaVersion": self.schema_version, "mediaType": self.media_type,
                   "config": self.config.to_dict(), "layers": [x.to_dict() for x in self.layers]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str, *, allow_empty_layers: bool = False) -> "Manifest":
        """Read a manifest. The schema wants >= 1 layer; images FROM scratch with only config
        steps have none, so the store reads with allow_empty_layers=True."""
        d = c.load_object(data, "manifest")
        w = "manifest"
        _schema_version(d, w)
        mtype = c.media_type(d["mediaType"], f"{w}.mediaType") if "mediaType" in d else mt.OCI_MANIFEST
        if mtype not in mt.MANIFEST_TYPES:
            raise c.fail(f"{w}.mediaType", f"{mtype!r} is not an image manifest media type")
        for k in ("config", "layers"):
            if k not in d:
                raise c.fail(w, f"{k} is required")
        layers = _list(d["layers"], f"{w}.layers")
        if not layers and not allow_empty_layers:
            raise c.fail(f"{w}.layers", "must hold at least one layer")
        return cls(
            config=Descriptor.from_dict(d["config"], f"{w}.config"),
            layers=tuple(Descriptor.from_dict(x, f"{w}.layers[{i}]") for i, x in enumerate(layers)),
            media_type=mtype,
            annotations=c.string_map(d["annotations"], f"{w}.annotations") if "annotations" in d else None,
            subject=Descriptor.from_dict(d["subject"], f"{w}.subject") if "subject" in d else None,
            artifact_type=c.media_type(d["artifactType"], f"{w}.artifactType") if "artifactType" in d else None,
        )


class Index(Record):
    """An image index / Docker manifest list (also the shape of an OCI layout's index.json)."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = mt.OCI_INDEX
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None
    schema_version: int = 2

    def to_dict(self) -> dict:
        d: dict = {"schemaVersion": self.schema_version, "mediaType": self.media_type,
                   "manifests": [x.to_dict() for x in self.manifests]}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.subject is not None:
            d["subject"] = self.subject.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> "Index":
        d = c.load_object(data, "index")
        w = "index"
        _schema_version(d, w)
        mtype = c.media_type(d["mediaType"], f"{w}.mediaType") if "mediaType" in d else mt.OCI_INDEX
        if mtype not in mt.INDEX_TYPES:
            raise c.fail(f"{w}.mediaType", f"{mtype!r} is not an image index media type")
        if "manifests" not in d:
            raise c.fail(w, "manifests is required")
        items = _list(d["manifests"], f"{w}.manifests")
        return cls(
            manifests=tuple(Descriptor.from_dict(x, f"{w}.manifests[{i}]") for i, x in enumerate(items)),
            media_type=mtype,
            annotations=c.string_map(d["annotations"], f"{w}.annotations") if "annotations" in d else None,
            subject=Descriptor.from_dict(d["subject"], f"{w}.subject") if "subject" in d else None,
            artifact_type=c.media_type(d["artifactType"], f"{w}.artifactType") if "artifactType" in d else None,
        )


def layout_header() -> bytes:
    """The bytes of an `oci-layout` file."""
    return canonical_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION})


def parse_layout_header(data: bytes | str) -> str:
    d = c.load_object(data, "oci-layout")
    if "imageLayoutVersion" not in d:
        raise c.fail("oci-layout", "imageLayoutVersion is required")
    v = c.string(d["imageLayoutVersion"], "oci-layout.imageLayoutVersion")
    if v != mt.OCI_LAYOUT_VERSION:
        raise c.fail("oci-layout.imageLayoutVersion", f"unsupported version {v!r} (want 1.0.0)")
    return v

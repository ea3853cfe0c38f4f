"""An image read from a content store, and writing one.

Owns: `Image` (manifest + config of one platform, loaded and digest-verified from a store),
`write_image` (config blob + manifest blob → manifest descriptor), `reachable` (every blob a
manifest or index points to, for prune / export) and `chain_ids` (snapshot names).
Must not: tag (layout.py does), build layers, or talk to registries.
"""
from __future__ import annotations

import os
from typing import Iterator

from builder.errors import StoreError
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest, canonical_json, sha256
from builder.oci.model import Descriptor, ImageConfig, Index, Manifest, Platform
from builder.oci.store import ContentStore
from runtime.record import Record

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "i686": "386", "riscv64": "riscv64"}


def host_platform() -> Platform:
    m = os.uname().machine  # what platform.machine() returns, without importing platform (~1 ms)
    return Platform(architecture=_ARCH.get(m, m), os="linux", variant="v7" if m == "armv7l" else None)


class Image(Record):
    descriptor: Descriptor  # of the manifest
    manifest: Manifest
    config: ImageConfig
    config_bytes: bytes

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return self.manifest.layers

    @property
    def diff_ids(self) -> tuple[Digest, ...]:
        return self.config.diff_ids

    @property
    def id(self) -> Digest:
        """Docker's image id: the config digest."""
        return self.manifest.config.digest

    @classmethod
    def load(cls, store: ContentStore, desc: Descriptor, platform: Platform | None = None) -> "Image":
        """Read (and verify) the image `desc` names; an index resolves to `platform` (default: host)."""
        if mt.is_index(desc.media_type):
            desc = select_platform(Index.from_json(store.read_bytes(desc.digest)), platform or host_platform())
        if not mt.is_manifest(desc.media_type):
            raise StoreError(f"{desc.digest} is a {desc.media_type}, not an image manifest")
        manifest = Manifest.from_json(store.read_bytes(desc.digest), allow_empty_layers=True)
        cfg_bytes = store.read_bytes(manifest.config.digest)
        config = ImageConfig.from_json(cfg_bytes)
        if len(config.diff_ids) != len(manifest.layers):
            raise StoreError(f"image {desc.digest}: {len(manifest.layers)} layers but "
                             f"{len(config.diff_ids)} diff_ids in its config")
        return cls(desc, manifest, config, cfg_bytes)


def select_platform(index: Index, want: Platform) -> Descriptor:
    for d in index.manifests:
        p = d.platform
        if p and p.os == want.os and p.architecture == want.architecture and (
                not want.variant or not p.variant or p.variant == want.variant):
            return d
    have = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
    raise StoreError(f"no image for platform {want} in the index (has: {have})")


def write_image(store: ContentStore, config: ImageConfig, layers: list[Descriptor] | tuple[Descriptor, ...], *,
                annotations: dict[str, str] | None = None, media_type: str = mt.OCI_MANIFEST,
                config_extra: dict | None = None) -> Descriptor:
    """Store the config and a manifest for `layers`; returns the manifest descriptor (with platform).
    `config_extra`: more top-level config keys (e.g. an inline build cache), never read back."""
    if len(layers) != len(config.diff_ids):
        raise StoreError(f"write_image: {len(layers)} layers but {len(config.diff_ids)} diff_ids in the config")
    docker = media_type == mt.DOCKER_MANIFEST
    cdata = config.to_json() if not config_extra else canonical_json({**config.to_dict(), **config_extra})
    cdesc = store.put_bytes(cdata, mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
    manifest = Manifest(config=Descriptor(cdesc.media_type, cdesc.digest, cdesc.size),
                        layers=tuple(layers), media_type=media_type, annotations=annotations or None)
    mdesc = store.put_bytes(manifest.to_json(), media_type)
    plat = Platform(config.architecture, config.os, variant=config.variant)
    return Descriptor(media_type, mdesc.digest, mdesc.size, platform=plat)


def reachable(store: ContentStore, desc: Descriptor, *, missing_ok: bool = False) -> Iterator[Descriptor]:
    """`desc` and every blob below it (index → manifests → config + layers), depth first."""
    yield desc
    if mt.is_index(desc.media_type) or mt.is_manifest(desc.media_type):
        if missing_ok and not store.has(desc.digest):
            return
        data = store.read_bytes(desc.digest)
        if mt.is_index(desc.media_type):
            for m in Index.from_json(data).manifests:
                yield from reachable(store, m, missing_ok=missing_ok)
        else:
            man = Manifest.from_json(data, allow_empty_layers=True)
            yield man.config
            yield from man.layers


def chain_id(parent: Digest | str | None, diff_id: Digest | str) -> Digest:
    """OCI ChainID: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    if parent is None:
        return Digest(diff_id)
    return Digest("sha256:" + sha256(f"{parent} {diff_id}".encode()).hexdigest())


def chain_ids(diff_ids: list[Digest] | tuple[Digest, ...] | list[str]) -> list[Digest]:
    """The ChainID of every prefix of `diff_ids` (snapshot names)."""
    out: list[Digest] = []
    for d in diff_ids:
        out.append(chain_id(out[-1] if out else None, d))
    return out

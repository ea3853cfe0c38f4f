"""Helpers for the hostile-input tests: host canaries, hostile tar streams, images with raw layers.

Owns: `Canary` (a file + a directory on the host with random content; `assert_untouched()` checks
content, mode, mtime, that the file was never READ (its atime is set older than its mtime, so under
relatime/strictatime any read moves it), that the directory gained no entry, and that the secret
bytes appear in no blob of a store), `tar_bytes(entries)` for hand-made hostile archives and
`image_with_raw_layer` (a busybox image plus one uncompressed layer whose bytes the test chose).
Must not: write anywhere but the temp dirs the tests hand in.
"""
from __future__ import annotations

import io
import os
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path

from builder.layers.unpack import open_layer_stream
from builder.oci import mediatypes as mt
from builder.oci.config import History
from builder.oci.digest import digest_bytes
from builder.oci.image import write_image
from builder.oci.layout import ImageStore


class Canary:
    """Host files a hostile input would love to read or overwrite."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "host-canary"
        self.dir.mkdir(parents=True)
        self.secret = b"CANARY-" + secrets.token_hex(16).encode()
        self.file = self.dir / "canary.txt"
        self.file.write_bytes(self.secret + b"\n")
        self.subdir = self.dir / "hostdir"  # an empty dir hostile paths aim at
        self.subdir.mkdir()
        st = self.file.stat()
        # atime older than mtime: relatime updates atime on the next read, so a read shows.
        os.utime(self.file, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
        self._stat = self._snapshot()

    def _snapshot(self) -> tuple:
        f, d, s = self.file.stat(), self.dir.stat(), self.subdir.stat()
        return (f.st_mode, f.st_size, f.st_mtime_ns, f.st_atime_ns, f.st_ino, d.st_mtime_ns, s.st_mtime_ns,
                sorted(os.listdir(self.dir)), sorted(os.listdir(self.subdir)))

    def assert_untouched(self, store_root: Path | None = None) -> None:
        now = self._snapshot()
        assert now[3] == self._stat[3], "the canary file was read"
        assert now == self._stat, f"the canary changed: {self._stat} -> {now}"
        assert self.file.read_bytes() == self.secret + b"\n"
        os.utime(self.file, ns=(self._stat[3], self._stat[2]))  # undo our own read's atime
        if store_root is not None:
            assert not store_contains(store_root, self.secret), "canary bytes reached the store"


def store_contains(root: Path, needle: bytes) -> bool:
    """True if `needle` is in any file under `root` (blobs decompressed, records, snapshots)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                data = f.read()
            if needle in data:
                return True
            if data[:2] == b"\x1f\x8b" or data[:4] == b"\x28\xb5\x2f\xfd":
                try:
                    with open(p, "rb") as f:
                        if needle in open_layer_stream(f).read():
                            return True
                except Exception:  # not a layer after all
                    pass
    return False


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644


def tar_bytes(entries: list[Entry]) -> bytes:
    """An uncompressed tar with exactly these entries, in this order (no sanitising)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type, ti.linkname, ti.mode, ti.mtime = e.type, e.linkname, e.mode, 1_700_000_000
            ti.size = len(e.data) if e.type == tarfile.REGTYPE else 0
            tar.addfile(ti, io.BytesIO(e.data) if ti.size else None)
    return buf.getvalue()


def hostile_tars(canary: Canary) -> dict[str, bytes]:
    """Named hostile archives, each aiming at the canary from a different angle."""
    rel_up = "../" * 30 + str(canary.subdir).lstrip("/") + "/dotdot"
    return {
        "dotdot": tar_bytes([Entry(rel_up, data=b"pwned")]),
        "absolute": tar_bytes([Entry(str(canary.subdir / "absolute"), data=b"pwned")]),
        "symlink-then-file": tar_bytes([Entry("esc", tarfile.SYMTYPE, linkname=str(canary.subdir)),
                                        Entry("esc/through-link", data=b"pwned")]),
        "relative-symlink-then-file": tar_bytes([Entry("esc", tarfile.SYMTYPE, linkname="../" * 30 + str(canary.subdir).lstrip("/")),
                                                 Entry("esc/through-rel-link", data=b"pwned")]),
        "hardlink-to-outside": tar_bytes([Entry("hl", tarfile.LNKTYPE, linkname=str(canary.file))]),
        "hardlink-dotdot": tar_bytes([Entry("hl2", tarfile.LNKTYPE, linkname="../" * 30 + str(canary.file).lstrip("/"))]),
        "symlink-file-overwrite": tar_bytes([Entry("over", tarfile.SYMTYPE, linkname=str(canary.file)),
                                             Entry("over", data=b"pwned")]),
        "hardlink-via-symlink": tar_bytes([Entry("d", tarfile.SYMTYPE, linkname=str(canary.dir)),
                                           Entry("hl3", tarfile.LNKTYPE, linkname="d/canary.txt")]),
    }


def image_with_raw_layer(root: Path, base_ref: str, ref: str, layer: bytes) -> str:
    """Tag `ref`: the image `base_ref` plus one uncompressed layer with exactly these bytes."""
    store = ImageStore(root)
    base = _read(store, base_ref)
    cfg, layers = base
    desc = store.blobs.put_bytes(layer, mt.OCI_LAYER)
    cfg = cfg.with_layer(digest_bytes(layer), History(created=cfg.created, created_by="hostile layer"))
    mdesc = write_image(store.blobs, cfg, [*layers, desc])
    store.tag(ref, mdesc)
    return str(mdesc.digest)


def _read(store: ImageStore, ref: str):
    from builder.oci.config import ImageConfig
    from builder.oci.model import Manifest

    man = Manifest.from_json(store.blobs.read_bytes(store.resolve(ref).digest))
    return ImageConfig.from_json(store.blobs.read_bytes(man.config.digest)), list(man.layers)

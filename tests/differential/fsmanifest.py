"""The normalised view of a built image that the differential suite compares.

Owns: replaying an image's layer tars in memory (whiteouts, opaque directories, hardlinks)
into the final filesystem, and describing each entry by what a container sees: type,
permission bits (setuid/setgid/sticky included), uid, gid, size, content digest, symlink
target, device numbers, xattrs (digested), hardlink group and an mtime *class* (the context's
fixed mtime, an archive's, the base's, or "new" for anything a build step stamped, whose exact
time legitimately differs; directories carry no mtime at all). Also the image-config fields and history the suite compares.
Both builders' images go through this one function, so a normalisation can hide nothing on
one side only. Must not: know about either builder.
"""
from __future__ import annotations

import hashlib
import tarfile
from typing import BinaryIO, Iterable

# Fixed mtimes of what the harness generates: a copied entry that keeps its source's mtime shows
# the source's class; anything a step created or touched is "new".
T_BASE = 1_400_000_000
T_ARCHIVE = 1_500_000_000
T_CONTEXT = 1_600_000_000
_MTIME_CLASS = {T_BASE: "base", T_ARCHIVE: "archive", T_CONTEXT: "context"}

CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
                 "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild")

_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file",
          tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "char",
          tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def _norm(name: str) -> str:
    name = name.strip("/")
    while name.startswith("./"):
        name = name[2:]
    if name in ("", "."):
        return "/"
    return "/" + name.rstrip("/")


def _parent(p: str) -> str:
    return p.rsplit("/", 1)[0] or "/"


class FS:
    """The final filesystem as layers build it up: path -> entry dict; inode ids for links."""

    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}
        self.inode: dict[str, int] = {}
        self._next = 0

    def _remove_tree(self, path: str) -> None:
        pre = path.rstrip("/") + "/"
        for p in [p for p in self.entries if p == path or p.startswith(pre)]:
            del self.entries[p]
            self.inode.pop(p, None)

    def apply(self, stream: BinaryIO) -> None:
        layer_paths: set[str] = set()
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for m in tf:
                path = _norm(m.name)
                base = path.rsplit("/", 1)[-1]
                if base == ".wh..wh..opq":
                    d = _parent(path)
                    pre = d.rstrip("/") + "/"
                    for p in [p for p in self.entries if p.startswith(pre) and p not in layer_paths]:
                        del self.entries[p]
                        self.inode.pop(p, None)
                    continue
                if base.startswith(".wh."):
                    self._remove_tree(_parent(path).rstrip("/") + "/" + base[4:] if _parent(path) != "/"
                                      else "/" + base[4:])
                    continue
                old = self.entries.get(path)
                if not (m.isdir() and old is not None and old["type"] == "dir"):
                    self._remove_tree(path)
                layer_paths.add(path)
                if m.islnk():
                    target = _norm(m.linkname)
                    src = self.entries.get(target)
                    if src is None:
                        raise ValueError(f"hardlink {path} -> {target}: no such entry")
                    self.entries[path] = dict(src)
                    self.inode[path] = self.inode[target]
                    continue
                e = {"type": _TYPES.get(m.type, "other:" + m.type.decode(errors="replace")),
                     "mode": "%04o" % (m.mode & 0o7777), "uid": m.uid, "gid": m.gid}
                if not m.isdir():
                    # Directory mtimes are left out: every RUN and COPY touches its parents'
                    # (runc's mount points, overlay copy-up), so they differ legitimately.
                    e["mtime"] = _MTIME_CLASS.get(int(m.mtime), "new")
                if m.isreg():
                    h = hashlib.sha256()
                    f = tf.extractfile(m)
                    while chunk := f.read(1 << 20):  # type: ignore[union-attr]
                        h.update(chunk)
                    e["size"] = m.size
                    e["sha256"] = h.hexdigest()[:16]
                elif m.issym():
                    e["target"] = m.linkname
                elif m.ischr() or m.isblk():
                    e["dev"] = f"{m.devmajor}:{m.devminor}"
                xattrs = {k[len("SCHILY.xattr."):]: hashlib.sha256(v.encode("utf-8", "surrogateescape")).hexdigest()[:12]
                          for k, v in (m.pax_headers or {}).items() if k.startswith("SCHILY.xattr.")}
                if xattrs:
                    e["xattrs"] = xattrs
                self.entries[path] = e
                self._next += 1
                self.inode[path] = self._next

    def described(self) -> dict[str, dict]:
        """Entries with `link` naming the first path of their hardlink group (groups of 2+)."""
        groups: dict[int, list[str]] = {}
        for p, ino in self.inode.items():
            if self.entries[p]["type"] != "dir":
                groups.setdefault(ino, []).append(p)
        out = {p: dict(e) for p, e in self.entries.items()}
        for members in groups.values():
            if len(members) > 1:
                first = min(members)
                for p in members:
                    out[p]["link"] = first
        return out


def replay(layers: Iterable[BinaryIO]) -> dict[str, dict]:
    fs = FS()
    for stream in layers:
        fs.apply(stream)
    return fs.described()


def diff_against(final: dict[str, dict], base: dict[str, dict]) -> dict:
    """What the build changed: entries added or different, and base paths removed."""
    changed = {p: e for p, e in final.items() if base.get(p) != e}
    removed = sorted(p for p in base if p not in final and _parent(p) in final)
    return {"changed": dict(sorted(changed.items())), "removed": removed}


def config_view(cfg: dict) -> dict:
    c = cfg.get("config") or {}
    out = {}
    for k in CONFIG_FIELDS:
        v = c.get(k)
        if v is None or v == "":
            continue
        out[k] = v
    return out


def history_view(cfg: dict, skip: int) -> list[dict]:
    out = []
    for h in (cfg.get("history") or [])[skip:]:
        item = {"created_by": h.get("created_by", "")}
        if h.get("empty_layer"):
            item["empty_layer"] = True
        if h.get("comment"):
            item["comment"] = h["comment"]
        out.append(item)
    return out

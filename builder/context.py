"""The build context: which files a build may read, and what their content is worth.

Owns: `BuildContext` (a directory, or a tar unpacked into a private directory; its
`.dockerignore` rules are builder.dockerignore's) with source selection for COPY/ADD (wildcards, directories), and content
digests of sources by content + metadata (mode, uid, gid, size, link target, xattrs, which
files of a source are hardlinks of each other; never mtime) through a `StatCache` keyed by
(dev, inode, size, mtime_ns, ctime_ns) so unchanged files are not re-read on a rebuild.

Must not: know about Dockerfiles, the sandbox or the image; copy files into a rootfs (ops does).
Paths handed in are untrusted: nothing resolves outside the context root.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from builder.errors import ContextError
from runtime.record import Record, field

from builder.dockerignore import (  # noqa: F401 - re-exported: the context's ignore rules
    PatternError, PatternMatcher, go_clean, go_dir, read_ignore_patterns, translate)


PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096


def check_path_length(path: str) -> None:
    """A context path the system cannot name (longer than PATH_MAX, as in a context thousands
    of directories deep) is a clear error, as in BuildKit (`lstat …: file name too long`)."""
    n = len(os.fsencode(path))
    if n >= PATH_MAX:
        short = path if len(path) <= 120 else f"{path[:60]}…{path[-40:]}"
        raise ContextError(f"build context: a path is {n} bytes long, more than the system allows "
                           f"(PATH_MAX {PATH_MAX}): {short}")


# ---------------------------------------------------------------------------------------------
# content digests with a stat cache


class StatCache(Record, frozen=False):
    """(dev, inode, size, mtime_ns, ctime_ns) → sha256 of content and the file's xattrs,
    persisted between builds. Setting an xattr changes ctime, so a hit vouches for both and a
    no-op rebuild reads neither contents nor xattrs. Stored with marshal (a private cache:
    50,000 entries load in ~28 ms, JSON took ~44 ms); anything unreadable is an empty cache."""

    path: Path | None = None
    entries: dict[str, list] = field(default_factory=dict)
    dirty: bool = False
    reads: int = 0  # files actually read (for tests and benchmarks)

    @classmethod
    def load(cls, path: Path | None) -> "StatCache":
        sc = cls(path=path)
        if path is not None:
            import marshal

            try:
                entries = marshal.loads(path.read_bytes())
                sc.entries = entries if isinstance(entries, dict) else {}
            except Exception:  # noqa: BLE001 - missing, an older format, damaged: start empty
                sc.entries = {}
        return sc

    def file_info(self, abspath: str, st: os.stat_result) -> tuple[str, tuple[tuple[str, bytes], ...]]:
        """(sha256 hex of the content, xattrs) of a regular file, from the cache when its stat
        key is unchanged."""
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = self.entries.get(abspath)  # a flat (dev, ino, size, mtime, ctime, digest, xattrs)
        if hit is not None and hit[:5] == key:
            return hit[5], hit[6]
        h = hashlib.sha256()
        with open(abspath, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        self.reads += 1
        digest = h.hexdigest()
        xattrs = read_xattrs(abspath)
        self.entries[abspath] = (*key, digest, xattrs)
        self.dirty = True
        return digest, xattrs

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        import marshal

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".stat-")
        with os.fdopen(fd, "wb") as f:
            marshal.dump(self.entries, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.dirty = False


# Not content: the host's SELinux label, and overlayfs bookkeeping when the tree is an overlay upper.
SKIP_XATTRS = ("security.selinux", "trusted.overlay.", "user.overlay.")


def read_xattrs(path: str | bytes) -> tuple[tuple[str, bytes], ...]:
    """The extended attributes a copy of `path` carries (sorted; the link itself, never its
    target). One listxattr when there are none, which is the common case."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    if not names:
        return ()
    out = []
    for n in sorted(names):
        if n.startswith(SKIP_XATTRS):
            continue
        try:
            out.append((n, os.getxattr(path, n, follow_symlinks=False)))
        except OSError:
            pass
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# the context


class Source(Record):
    """One selected context path: `rel` relative to the context root, '/'-separated."""

    rel: str
    abspath: str
    is_dir: bool
    name: str = ""  # the name it is copied as, when not rel's base name (a followed symlink)


class BuildContext:
    """A directory of files COPY/ADD may read, minus what .dockerignore excludes."""

    def __init__(self, root: Path, ignore_patterns: list[str] | None = None,
                 stat_cache: StatCache | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ContextError(f"build context {root} is not a directory")
        self.matcher = PatternMatcher(ignore_patterns or [])
        self.stat_cache = stat_cache or StatCache()
        self._digests: dict[str, str] = {}
        # abspath -> lstat / xattrs (only when there are some) as digested, for the copier: no
        # second syscalls. Two dicts, not one of (lstat, xattrs) pairs: 50,000 more long-lived
        # tuples made the digest walk ~4% slower (garbage-collector passes)
        self._lstats: dict[str, os.stat_result] = {}
        self._xattrs: dict[str, tuple[tuple[str, bytes], ...]] = {}
        # what this build read, for the no-op memo: pattern -> rels, rel -> (is_dir, digest)
        self.selects: dict[str, list[str]] = {}
        self.digested: dict[str, tuple[bool, str]] = {}

    @staticmethod
    def ignore_file_for(root: Path, dockerfile: Path | None) -> Path | None:
        """`<Dockerfile name>.dockerignore` beside the Dockerfile wins over `.dockerignore`."""
        if dockerfile is not None:
            specific = Path(str(dockerfile) + ".dockerignore")
            if specific.is_file():
                return specific
        p = Path(root) / ".dockerignore"
        return p if p.is_file() else None

    def ignored(self, rel: str) -> bool:
        return bool(self.matcher.patterns) and rel not in ("", ".") and self.matcher.matches(rel)

    # -- selection ------------------------------------------------------------------------
    def _safe(self, rel: str) -> str:
        clean = go_clean("/" + rel.replace("\\", "/") if not rel.startswith("/") else rel)
        return clean.lstrip("/")  # '..' cannot climb above '/'

    def walk(self, rel: str = "") -> Iterator[Source]:
        """Every non-ignored path under `rel` (not `rel` itself), sorted, depth-first.

        With an explicit stack, not recursion: a context may be thousands of directories deep."""
        stack: list[Iterator[tuple[str, bool]]] = [self._entries(rel)]
        while stack:
            for child, is_dir in stack[-1]:
                if self.ignored(child):
                    if is_dir and self.matcher.could_include_below(child):
                        stack.append(self._entries(child))  # an exception may bring a child back
                        break
                    continue
                full = os.path.join(self.root, child)
                if len(full) >= PATH_MAX // 4:  # (only long names can be too long in bytes)
                    check_path_length(full)
                yield Source(child, full, is_dir)
                if is_dir:
                    stack.append(self._entries(child))
                    break
            else:
                stack.pop()

    def _entries(self, rel: str) -> Iterator[tuple[str, bool]]:
        """(child rel path, is a directory) of the directory `rel`, sorted by name."""
        base = os.path.join(self.root, rel) if rel else str(self.root)
        try:
            with os.scandir(base) as it:
                entries = sorted(((e.name, e.is_dir(follow_symlinks=False)) for e in it))
        except NotADirectoryError:
            return
        for name, is_dir in entries:
            yield (f"{rel}/{name}" if rel else name), is_dir

    def select(self, pattern: str) -> list[Source]:
        """Top-level sources named by a COPY/ADD source (a path or a wildcard), sorted.

        Raises ContextError when nothing matches (with a hint if .dockerignore is why).
        """
        rel = self._safe(pattern)
        if rel in ("", "."):
            self.selects[pattern] = [""]
            return [Source("", str(self.root), True)]
        if not any(c in rel for c in "*?["):
            full = os.path.join(self.root, rel)
            if os.path.lexists(full) and not self.ignored(rel) and self._inside(full):
                src = self._followed(Source(rel, full, os.path.isdir(full) and not os.path.islink(full)))
                if src is not None:
                    self.selects[pattern] = [src.rel]
                    return [src]
            hint = f'.dockerignore excludes "{rel}"' if os.path.lexists(full) and self.ignored(rel) else None
            raise ContextError(f'source "{pattern}" not found in build context', hint=hint)
        rx = re.compile(translate(go_clean(rel)), re.DOTALL)
        depth = rel.count("/")
        out = []
        for s in self.walk():
            if s.rel.count("/") == depth and rx.match(s.rel):
                f = self._followed(s)
                if f is None:
                    raise ContextError(f'source "{s.rel}" (matched by "{pattern}") is a symlink to nothing '
                                       "in the build context")
                out.append(f)
        # a wildcard that matches nothing is no error in BuildKit: the source adds nothing
        self.selects[pattern] = [s.rel for s in out]
        return out

    def _followed(self, src: Source) -> Source | None:
        """A named (top-level) source that is a symlink is followed, as BuildKit does, inside the
        context (its root is "/"; ".." stops there): the target's content is copied under the
        link's name. None when the link leads nowhere in the context."""
        if not os.path.islink(src.abspath):
            return src
        done: list[str] = []
        todo = [p for p in src.rel.split("/") if p]
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            done.append(part)
            full = os.path.join(self.root, *done)
            if os.path.islink(full):
                hops += 1
                if hops > 40:
                    return None
                target = os.readlink(full)
                done.pop()
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
            elif not os.path.lexists(full):
                return None
        rel = "/".join(done)
        full = os.path.join(self.root, rel) if rel else str(self.root)
        if not os.path.lexists(full) or (rel and self.ignored(rel)):
            return None
        return Source(rel, full, os.path.isdir(full), src.name or src.rel.rsplit("/", 1)[-1])

    def _inside(self, full: str) -> bool:
        real = os.path.realpath(os.path.dirname(full))
        return real == str(self.root) or real.startswith(str(self.root) + os.sep)

    # -- digests --------------------------------------------------------------------------
    def known_lstat(self, abspath: str) -> os.stat_result | None:
        """The lstat taken when `abspath` was digested in this build (None if it was not)."""
        return self._lstats.get(abspath)

    def known_xattrs(self, abspath: str) -> tuple[tuple[str, bytes], ...]:
        """The xattrs read when `abspath` was digested (ask only when known_lstat had it)."""
        return self._xattrs.get(abspath, ())

    def _entry(self, src: Source, name: str, inodes: dict[tuple[int, int], str]) -> list:
        st = os.lstat(src.abspath)
        self._lstats[src.abspath] = st
        row: list = [name, stat.S_IFMT(st.st_mode) >> 12, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
        if stat.S_ISREG(st.st_mode):
            digest, xa = self.stat_cache.file_info(src.abspath, st)
            row += [st.st_size, digest]
            if st.st_nlink > 1:
                # COPY keeps files of one source that share an inode as hardlinks: which names
                # do is part of what the copy makes (links to files outside the source are not)
                first = inodes.setdefault((st.st_dev, st.st_ino), name)
                if first != name:
                    row.append({"link": first})
        else:
            if stat.S_ISLNK(st.st_mode):
                row.append(os.readlink(src.abspath))
            xa = read_xattrs(src.abspath)
        if xa:
            self._xattrs[src.abspath] = xa
            row.append([(k, v.hex()) for k, v in xa])
        return row

    def digest(self, src: Source) -> str:
        """sha256 over metadata + content of a source (a directory: its whole non-ignored tree)."""
        cached = self._digests.get(src.rel)
        if cached is not None:
            return cached
        inodes: dict[tuple[int, int], str] = {}
        rows = [self._entry(src, ".", inodes)]
        if src.is_dir:
            prefix = src.rel + "/" if src.rel else ""
            for s in self.walk(src.rel):
                rows.append(self._entry(s, s.rel[len(prefix):], inodes))
        d = "sha256:" + hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()
        self._digests[src.rel] = d
        self.digested[src.rel] = (src.is_dir, d)
        return d


def stat_cache_path(cache_dir: Path, context_root: Path) -> Path:
    """Where the stat cache for one context directory lives (one file per context)."""
    h = hashlib.sha256(str(Path(context_root).resolve()).encode()).hexdigest()[:32]
    return Path(cache_dir) / "stat" / f"{h}.marshal"


def unpack_context_tar(stream, dest: Path) -> Path:
    """A context given as a tar (stdin or a file; gzip/bz2/xz detected) unpacked under `dest`."""
    import tarfile

    if not hasattr(tarfile, "data_filter"):  # extraction filters came in 3.11.4 (PEP 706)
        import platform
        raise ContextError(f"a tar build context needs Python 3.11.4 or later (tarfile extraction "
                           f"filters); this is Python {platform.python_version()}")
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            tf.extractall(dest, filter="data")  # the data filter refuses escapes and devices
    except (tarfile.TarError, OSError) as e:
        raise ContextError(f"cannot read build context tar: {e}") from None
    return dest

"""Snapshotter: unpacked layers by chain id, and the overlay mount data to stack them.

Owns: `$ROOT/snapshots/<chain_id hex>/` — one directory per layer, holding that layer's files in
overlayfs upperdir form (whiteouts as 0/0 char devices, opaque dirs by xattr), so a stack of them
is a list of lowerdirs; `chain_id()` (OCI image-spec: sha256 of "parent diff_id"); `prepare()`
(a fresh upper + work dir under tmp/ on the same filesystem) and `commit()` (atomic rename of a
finished upper into place); `mount_spec()` (plain data: lowerdirs top first, upper, work).

Must not: mount anything (runtime does), run commands, or know about Dockerfiles. Concurrent
builders may race to commit the same chain id: the first rename wins, the loser's copy is dropped.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from builder.errors import StoreError
from builder.oci.image import chain_id, chain_ids  # noqa: F401  (re-exported: snapshot names)
from runtime.record import Record


class MountSpec(Record):
    """An overlay to mount: lowerdirs top (most recent layer) first; upper/work may be None (read-only)."""

    lowerdirs: tuple[str, ...]
    upperdir: str | None = None
    workdir: str | None = None


class Active(Record):
    """A prepared snapshot: write into `upper` (overlay needs `work` on the same filesystem)."""

    base: str  # the private temp directory holding both
    upper: Path
    work: Path


class Snapshotter:
    def __init__(self, snapshots_dir: Path, tmp_dir: Path) -> None:
        self.dir = Path(snapshots_dir)
        self.tmp = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._empty: Path | None = None

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove temp trees a killed build left behind (older than an hour: never a live build's)."""
        import time

        n = 0
        now = time.time()
        for p in self.tmp.iterdir() if self.tmp.is_dir() else ():
            if p.name.startswith(("snap-", "mnt-", "copy-", "ctx-", "export-", "trash-")) and p.is_dir():
                try:
                    if now - p.stat().st_mtime > older_than:
                        self._trash(p)
                        n += 1
                except OSError:
                    continue
        return n

    def path(self, chain: str) -> Path:
        return self.dir / chain.split(":", 1)[-1]

    def has(self, chain: str) -> bool:
        return self.path(chain).is_dir()

    def prepare(self) -> Active:
        base = tempfile.mkdtemp(dir=self.tmp, prefix="snap-")
        upper, work = Path(base) / "upper", Path(base) / "work"
        upper.mkdir(mode=0o755)
        work.mkdir()
        return Active(base, upper, work)

    def discard(self, active: Active) -> None:
        self._trash(active.base)

    def _trash(self, path: str | Path) -> None:
        """Make `path` disappear now (rename) and delete it in the background: unlinking
        thousands of files costs seconds on a discard-mounted disk, and nobody waits for it."""
        trash = tempfile.mkdtemp(dir=self.tmp, prefix="trash-")
        try:
            os.rename(path, os.path.join(trash, "x"))
        except FileNotFoundError:
            os.rmdir(trash)
            return
        try:
            import subprocess

            # idle I/O class and lowest CPU priority: the deletion never competes with a build
            prefix = ["ionice", "-c3", "nice", "-n19"] if shutil.which("ionice") else []
            subprocess.Popen(prefix + ["rm", "-rf", "--one-file-system", trash], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            shutil.rmtree(trash, ignore_errors=True)

    def commit(self, active: Active, chain: str) -> Path:
        """Move a finished upper into place as snapshot `chain` (first writer wins)."""
        dest = self.path(chain)
        try:
            os.rename(active.upper, dest)
        except OSError:
            if not dest.is_dir():
                raise StoreError(f"cannot commit snapshot {chain[:19]}: {dest} unwritable") from None
        self._drop_leftover(active)
        return dest

    def _drop_leftover(self, active: Active) -> None:
        """After a commit only overlay's (empty) work dir is left: rmdir it here, a few
        syscalls, instead of the background `ionice nice rm` (three execs, ~5-10 ms of the
        build's time per step). Anything else left (the upper, when another builder committed
        the same chain first) goes to the background deletion as before."""
        try:
            for sub in ("work/work", "work/index"):
                try:
                    os.rmdir(os.path.join(active.base, sub))
                except FileNotFoundError:
                    pass
            os.rmdir(active.work)
            os.rmdir(active.base)
        except OSError:
            self.discard(active)

    def ensure(self, chain: str, fill: Callable[[Path], None]) -> Path:
        """The snapshot for `chain`, creating it with `fill(dir)` (e.g. unpack a layer) if missing."""
        if self.has(chain):
            return self.path(chain)
        active = self.prepare()
        try:
            fill(active.upper)
            return self.commit(active, chain)
        except BaseException:
            self.discard(active)
            raise

    def empty_dir(self) -> Path:
        """A permanent empty directory: overlay needs one lowerdir even for `FROM scratch`."""
        if self._empty is None:
            p = self.dir / "empty"
            p.mkdir(exist_ok=True)
            self._empty = p
        return self._empty

    def lowerdirs(self, chains: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Snapshot dirs for a layer stack (bottom first in), top first out, as overlay wants."""
        dirs = tuple(str(self.path(c)) for c in reversed(chains))
        return dirs or (str(self.empty_dir()),)

    def mount_spec(self, chains: list[str] | tuple[str, ...], active: Active | None = None) -> MountSpec:
        lowers = self.lowerdirs(chains)
        if active is None:
            return MountSpec(lowers)
        return MountSpec(lowers, str(active.upper), str(active.work))

    def list(self) -> list[str]:
        return sorted("sha256:" + p.name for p in self.dir.iterdir() if p.is_dir() and p.name != "empty")

    def remove(self, chain: str) -> None:
        p = self.path(chain)
        if p.is_dir():
            self._trash(p)

"""Snapshotter: unpacked layers by chain id, and the overlay mount data to stack them.

Owns: `$ROOT/snapshots/<chain_id hex>/` — one directory per layer, holding that layer's files in
overlayfs upperdir form (whiteouts as 0/0 char devices, opaque dirs by xattr), so a stack of them
is a list of lowerdirs; `chain_id()` (OCI image-spec: sha256 of "parent diff_id"); `prepare()`
(a fresh upper + work dir under tmp/ on the same filesystem) and `commit()` (atomic rename of a
finished upper into place); `mount_spec()` (plain data: lowerdirs top first, upper, work).

Also owns leases: a process about to use snapshots (a build, a running container) records
their chain ids with `use()` in `.leases/<pid>-<random>`, a file it holds flock'ed until it
ends; `prune()` (what `pybuild prune` and `cache prune` call) never removes a leased snapshot.
`use()` appends under a shared flock of `.lock`, prune reads the leases and moves doomed
snapshots away under an exclusive one, so a snapshot is either seen as leased or already gone
when its user checks `has()` (and unpacks it again).

Must not: mount anything (runtime does), run commands, or know about Dockerfiles. Concurrent
builders may race to commit the same chain id: the first rename wins, the loser's copy is dropped.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from builder.errors import StoreError
from builder.oci.image import chain_id, chain_ids  # noqa: F401  (re-exported: snapshot names)
from builder.layers import fstree
from runtime.record import Record


class MountSpec(Record):
    """An overlay to mount: lowerdirs top (most recent layer) first; upper/work may be None (read-only)."""

    lowerdirs: tuple[str, ...]
    upperdir: str | None = None
    workdir: str | None = None


# Identical copies that commit() set aside are reclaimed together once there are more than
# this many of them or they hold more than this many layer bytes (and at every prune).
DEFER_MAX_DIRS = 64
DEFER_MAX_BYTES = 1 << 30
_DEFERRED = "reclaim-"


class Active(Record):
    """A prepared snapshot: write into `upper` (overlay needs `work` on the same filesystem)."""

    base: str  # the private temp directory holding both
    upper: Path
    work: Path


class Snapshotter:
    def __init__(self, snapshots_dir: Path, tmp_dir: Path) -> None:
        self.dir = Path(snapshots_dir)
        self.tmp = Path(tmp_dir)
        for d in (self.dir, self.tmp):  # closed to others (layout.protect_state_dir)
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.stat(d).st_mode & 0o077:
                os.chmod(d, 0o700)
        self._empty: Path | None = None
        self._lease_fd = -1
        self._lease_path = ""
        self._leased: set[str] = set()
        self._lease_lock = threading.Lock()
        self._aliases: dict[str, str] = {}  # chain -> the chain whose directory it is (alias())

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove temp trees a killed build left behind (older than an hour: never a live build's)."""
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
        return self.dir / self._aliases.get(chain, chain).split(":", 1)[-1]

    def alias(self, chain: str, target: str) -> None:
        """For this Snapshotter's life, snapshot `chain` is `target`'s directory (leased): the
        same files, e.g. one layer another platform's copy wrote over another parent
        (engine/copyshare.py). Nothing on disk names `chain`: a later build unpacks it if needed."""
        self.use((target,))
        if chain != target and not self.has(chain):
            self._aliases[chain] = target

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
        self._delete_later(trash)

    @staticmethod
    def _delete_later(trash: str | Path) -> None:
        """Delete the directory `trash` (already out of everyone's way) in the background."""
        try:
            import subprocess

            # idle I/O class and lowest CPU priority: the deletion never competes with a build
            prefix = ["ionice", "-c3", "nice", "-n19"] if shutil.which("ionice") else []
            subprocess.Popen(prefix + ["rm", "-rf", "--one-file-system", trash], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            fstree.rmtree(trash, ignore_errors=True)

    def commit(self, active: Active, chain: str, size: int = 0) -> Path:
        """Move a finished upper into place as snapshot `chain` (first writer wins), leased.

        When the store holds `chain` already (a `--no-cache` rebuild, or another builder that
        finished first), the new upper is an identical copy: it is set aside for a batched
        reclaim (`reclaim()`) instead of being deleted now, since deleting thousands of files on
        a discard-mounted disk slows the file creation of the builds that follow it. `size` (the
        layer's bytes) counts against the batch budget."""
        self.use((chain,))
        dest = self.path(chain)
        try:
            os.rename(active.upper, dest)
        except OSError:
            if not dest.is_dir():
                raise StoreError(f"cannot commit snapshot {chain[:19]}: {dest} unwritable") from None
            self._defer(active.base, size)
            return dest
        self._drop_leftover(active)
        return dest

    def _defer(self, path: str | Path, size: int) -> None:
        name = f"{_DEFERRED}{max(int(size), 0)}-{os.urandom(6).hex()}"
        try:
            os.rename(path, self.tmp / name)
        except FileNotFoundError:
            return
        entries = self._deferred()
        if len(entries) > DEFER_MAX_DIRS or sum(n for _, n in entries) > DEFER_MAX_BYTES:
            self.reclaim()

    def _deferred(self) -> list[tuple[str, int]]:
        out = []
        try:
            with os.scandir(self.tmp) as it:
                for e in it:
                    if e.name.startswith(_DEFERRED):
                        try:
                            out.append((e.name, int(e.name[len(_DEFERRED):].split("-", 1)[0])))
                        except ValueError:
                            out.append((e.name, 0))
        except FileNotFoundError:
            pass
        return out

    def reclaim(self) -> int:
        """Delete every copy set aside by commit(), in one background batch; returns how many."""
        entries = self._deferred()
        if not entries:
            return 0
        trash = Path(tempfile.mkdtemp(dir=self.tmp, prefix="trash-"))
        n = 0
        for name, _ in entries:
            try:
                os.rename(self.tmp / name, trash / name)
                n += 1
            except FileNotFoundError:  # another process reclaimed it first
                continue
        if n:
            self._delete_later(trash)
        else:
            os.rmdir(trash)
        return n

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
        return sorted("sha256:" + p.name for p in self.dir.iterdir()
                      if p.is_dir() and p.name != "empty" and not p.name.startswith("."))

    # --- leases ---------------------------------------------------------------------------
    def _gate(self, op: int) -> int:
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, op)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def use(self, chains: Iterable[str]) -> None:
        """Lease `chains` for the life of this process (or until release()): prune keeps them.
        Call before checking has()/ensure(); cheap when they are leased already."""
        with self._lease_lock:
            new = [c for c in dict.fromkeys(chains) if c not in self._leased]
            if not new:
                return
            if self._lease_fd < 0:
                d = self.dir / ".leases"
                d.mkdir(exist_ok=True)
                path = str(d / f"{os.getpid()}-{os.urandom(6).hex()}")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)  # held until we close it or die: the lease is alive
                self._lease_fd, self._lease_path = fd, path
            gate = self._gate(fcntl.LOCK_SH)
            try:
                os.write(self._lease_fd, "".join(f"{c}\n" for c in new).encode())
            finally:
                os.close(gate)
            self._leased.update(new)

    def release(self) -> None:
        """End this process's lease (its snapshots become prunable again)."""
        with self._lease_lock:
            if self._lease_fd >= 0:
                try:
                    os.unlink(self._lease_path)
                except FileNotFoundError:
                    pass
                os.close(self._lease_fd)
            self._lease_fd, self._lease_path, self._leased = -1, "", set()

    def leased(self) -> set[str]:
        """Chains leased by live processes; lease files of dead ones are removed."""
        out: set[str] = set()
        d = self.dir / ".leases"
        for p in d.iterdir() if d.is_dir() else ():
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                    with os.fdopen(os.dup(fd), "rb") as f:  # held by its owner: alive
                        out.update(line.decode() for line in f.read().split(b"\n") if line)
                else:
                    os.unlink(p)  # nobody holds it (ours is held through another descriptor): stale
            finally:
                os.close(fd)
        return out

    def prune(self, keep: set[str], *, grace: float = 0.0, dry_run: bool = False) -> list[tuple[str, int]]:
        """Remove snapshots that are not in `keep`, not leased by a live process and not
        modified in the last `grace` seconds; returns (chain, bytes) of each one removed."""
        from builder.oci.digest import is_digest

        doomed: list[tuple[str, Path]] = []
        trash = None if dry_run else Path(tempfile.mkdtemp(dir=self.tmp, prefix="trash-"))
        gate = self._gate(fcntl.LOCK_EX)
        try:
            leased = self.leased()
            now = time.time()
            for p in sorted(self.dir.iterdir()):
                chain = "sha256:" + p.name
                if (p.name.startswith(".") or not is_digest(chain) or chain in keep or chain in leased
                        or p.is_symlink() or not p.is_dir()):
                    continue
                if grace and now - p.stat().st_mtime < grace:
                    continue
                if trash is not None:
                    dest = trash / p.name
                    os.rename(p, dest)  # gone for everyone now; deleted below, outside the lock
                    p = dest
                doomed.append((chain, p))
        finally:
            os.close(gate)
        out = [(c, fstree.tree_size(p)) for c, p in doomed]
        if trash is not None:
            self.reclaim()
            if doomed:
                self._delete_later(trash)
            else:
                os.rmdir(trash)
        return out

    def remove(self, chain: str) -> None:
        p = self.path(chain)
        if p.is_dir():
            self._trash(p)

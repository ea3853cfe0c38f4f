"""RUN --mount on the host side: secrets, cache directories, bind sources, ssh sockets, heredocs.

Owns: `Secret` (where a --secret's value comes from; read only when a RUN mounts it) and
`RunMounts` (turns a RUN's MountOps into runtime Mounts: cache dirs kept under
`$ROOT/cache/mounts/<id hash>/data` with shared/private/locked sharing and from= seeding, private
copies of bind sources so writes are discarded, secret files (mode 0400, on a tmpfs: never on
the state disk) or env vars, ssh agent sockets, heredoc scripts), and removing all of it after
the run (and, at the next build, the secret files of a builder that was killed).

Must not: let a secret value reach a layer, a cache key, history or a log line; write into the
rootfs (the sandbox mounts these over it, and the runtime removes its mount-point stubs).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from builder.engine.fsview import LayeredFS, _copy_entry, export_tree
from builder.errors import BuildStepError
from builder.plan.graph import MountOp, Step
from runtime.record import Record


class Secret(Record):
    id: str
    path: str | None = None
    env: str | None = None

    def read(self) -> bytes:
        if self.path is not None:
            try:
                with open(self.path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise BuildStepError(f"secret {self.id!r}: cannot read {self.path}: {e.strerror}") from None
        if self.env is not None:
            v = os.environ.get(self.env)
            if v is None:
                raise BuildStepError(f"secret {self.id!r}: environment variable {self.env} is not set")
            return v.encode()
        raise BuildStepError(f"secret {self.id!r} has no source")


class RunMounts:
    """Host-side preparation of RUN --mount sources; cleaned up after the run."""

    def __init__(self, sv, step: Step) -> None:  # sv: ops.Services
        self.sv = sv
        self.step = step
        self.tmp = Path(tempfile.mkdtemp(dir=sv.tmp, prefix="mnt-"))
        self.locks: list[int] = []
        self.env: list[str] = []
        self.secrets: Path | None = None  # on a tmpfs, made when the first secret is mounted

    def _secret_dir(self) -> Path:
        """Secret files live in memory (a tmpfs), never on the state disk: a kill -9, a later
        build or prune must not find them there. Named after this process, so the next build
        removes what a killed one left (clear_secret_leftovers)."""
        if self.secrets is None:
            parent = _secret_parent()
            self.secrets = Path(tempfile.mkdtemp(dir=parent, prefix=f"{SECRETS_PREFIX}{os.getpid()}-"))
        return self.secrets

    def build(self, ops: tuple[MountOp, ...], workdir: str) -> list:
        from runtime.config import Mount

        out = []
        for i, m in enumerate(ops):
            target = m.target if m.target.startswith("/") else os.path.join(workdir or "/", m.target)
            if m.type == "tmpfs":
                opts = (f"size={m.size}",) if m.size else ()
                out.append(Mount("tmpfs", target, "tmpfs", options=opts))
            elif m.type == "cache":
                out.append(Mount("bind", target, self._cache_dir(m), readonly=m.readonly))
            elif m.type == "bind":
                out.append(Mount("bind", target, self._bind_source(m, i), readonly=m.readonly))
            elif m.type == "secret":
                sec = self.sv.secrets.get(m.id)
                if sec is None:
                    if m.required:
                        raise BuildStepError(f"secret {m.id!r} is required but was not given (--secret id={m.id},...)")
                    continue
                data = sec.read()
                if m.env:
                    self.env.append(f"{m.env}={data.decode(errors='replace')}")
                if m.target or not m.env:
                    p = self._secret_dir() / f"secret-{i}"
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.chown(p, m.uid or 0, m.gid or 0)
                    os.chmod(p, m.mode if m.mode is not None else 0o400)
                    out.append(Mount("bind", target or f"/run/secrets/{m.id}", str(p), readonly=True))
            elif m.type == "ssh":
                sock = self.sv.ssh.get(m.id or "default")
                if sock is None:
                    if m.required:
                        raise BuildStepError(f"ssh agent {m.id!r} is required but was not given (--ssh)")
                    continue
                tgt = m.target or f"/run/buildkit/ssh_agent.{i}"
                out.append(Mount("bind", tgt, sock))
                self.env.append(f"SSH_AUTH_SOCK={tgt}")
            else:
                raise BuildStepError(f"RUN --mount type={m.type} is not supported", self.step.span)
        return out

    def heredocs(self, files: tuple[tuple[str, str], ...]) -> list:
        """RUN heredoc scripts, bind-mounted read-only from outside the rootfs."""
        from runtime.config import Mount

        out = []
        for i, (target, content) in enumerate(files):
            p = self.tmp / f"heredoc-{i}"
            p.write_text(content)
            os.chmod(p, 0o755)
            out.append(Mount("bind", target, str(p), readonly=True))
        return out

    def _cache_dir(self, m: MountOp) -> str:
        import fcntl
        import hashlib

        name = hashlib.sha256((m.id or m.target).encode()).hexdigest()[:32]
        base = self.sv.cache_mounts / name
        base.mkdir(parents=True, exist_ok=True)
        if m.sharing == "private":
            d = Path(tempfile.mkdtemp(dir=self.tmp, prefix="cache-"))
        else:
            d = base / "data"
            if not d.exists():
                seed = base / "seed"
                if m.source_from is not None:
                    # from=STAGE|IMAGE,source=PATH: a new cache starts as a copy of that tree
                    from builder.engine.ops import _from_state, ensure_snapshots, view_of

                    state = _from_state(self.sv, m.source_from)
                    ensure_snapshots(self.sv, state)
                    export_tree(view_of(self.sv, state), m.source or "/", seed)
                else:
                    seed.mkdir(exist_ok=True)
                os.chown(seed, m.uid or 0, m.gid or 0)
                os.chmod(seed, m.mode if m.mode is not None else 0o755)
                try:
                    os.rename(seed, d)
                except OSError:  # another build made it first: use theirs
                    shutil.rmtree(seed, ignore_errors=True)
            if m.sharing == "locked":
                fd = os.open(base / "lock", os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self.locks.append(fd)
        return str(d)

    def _bind_source(self, m: MountOp, i: int) -> str:
        """A private copy of the source (writes to a bind mount are discarded)."""
        dest = self.tmp / f"bind-{i}"
        src_rel = m.source or "/"
        if m.source_from is None:
            ctx = self.sv.context
            if ctx is None:
                raise BuildStepError("RUN --mount=type=bind needs a build context")
            # Symlinks on the way are followed inside the context, as BuildKit resolves a
            # bind source in its root (an absolute link restarts at the context root, `..`
            # stops there), so neither the copy nor mount(2) ever follows one to the host.
            s = ctx.select(LayeredFS([ctx.root]).resolve(src_rel).lstrip("/") or ".")[0]
            if s.is_dir:
                dest.mkdir()
                for sub in ctx.walk(s.rel):
                    rel = sub.rel[len(s.rel) + 1:] if s.rel else sub.rel
                    _copy_entry(sub.abspath, dest / rel)
            else:
                _copy_entry(s.abspath, dest)
            if dest.is_symlink():  # the context changed under us: never hand mount(2) a link
                raise BuildStepError(f"RUN --mount=type=bind: source {src_rel!r} changed while it was copied")
            return str(dest)
        from builder.engine.ops import _from_state, ensure_snapshots, view_of

        state = _from_state(self.sv, m.source_from)
        ensure_snapshots(self.sv, state)
        export_tree(view_of(self.sv, state), src_rel, dest)
        return str(dest)

    def close(self) -> None:
        for fd in self.locks:
            os.close(fd)
        if self.secrets is not None:
            shutil.rmtree(self.secrets, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


SECRETS_PREFIX = "pybuild-secrets-"


def _tmpfs_parent() -> str | None:
    """A tmpfs the builder may write: $XDG_RUNTIME_DIR when not root, else /dev/shm (the
    places runtime.prepare.private_parent uses; not imported: it pulls runtime.config in)."""
    for d in (os.environ.get("XDG_RUNTIME_DIR") if os.geteuid() else None, "/dev/shm"):
        if d and os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
            return d
    return None


def _secret_parent() -> str:
    parent = _tmpfs_parent()
    if parent is None:
        raise BuildStepError("RUN --mount=type=secret needs a tmpfs to keep secrets in memory "
                             "(/dev/shm, or $XDG_RUNTIME_DIR when not root); none is writable here")
    return parent


def clear_secret_leftovers(state_tmp: Path) -> None:
    """At build start: remove the secret directories of builders that are gone (kill -9), and
    secret files older versions wrote under $ROOT/tmp/mnt-*/."""
    parent = _tmpfs_parent()
    try:
        names = os.listdir(parent) if parent else []
    except OSError:
        names = []
    for name in names:
        pid = name[len(SECRETS_PREFIX):].split("-", 1)[0]
        if not name.startswith(SECRETS_PREFIX) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its builder still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, someone else's
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    try:
        olds = [e.path for e in os.scandir(state_tmp) if e.name.startswith("mnt-")]
    except OSError:
        return
    for d in olds:
        try:
            for e in os.scandir(d):
                if e.name.startswith("secret-"):
                    os.unlink(e.path)
        except OSError:
            continue

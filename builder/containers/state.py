"""The on-disk record of detached containers: `$PYBUILD_ROOT/containers/<id>/`.

Owns: the directory layout of one container (config.json written at create, state.json
rewritten atomically by its monitor and by the commands, the log, the overlay upper/work,
its /etc/hosts), looking containers up by name or id prefix (names unique), and telling
whether a monitor or a container process still lives (a lock the monitor holds; pid plus
start time, so a reused pid is never mistaken for ours). Must not: start or signal
processes (lifecycle.py does) or print.

config.json: what `run` decided (sandbox config, image, name, ports, network, volumes,
restart policy, stop signal/timeout, labels); only `rename` changes it afterwards.
state.json: {"Status": created|running|restarting|exited, "Pid", "PidStart", "ExitCode",
"Error", "StartedAt", "FinishedAt", "RestartCount", "MonitorPid", "IPAddress", ...}.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time
from pathlib import Path

from builder.errors import PybuildError

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class NoSuchContainer(PybuildError):
    pass


def base_dir(root: Path) -> Path:
    return root / "containers"


def now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def write_json(path: Path, data: dict, *, durable: bool = True) -> None:
    """temp (+ fsync) + rename: a reader sees the old or the new file, never a part.
    state.json is written without fsync (durable=False): it changes at every start and stop,
    describes processes that a reboot ends anyway, and the rename alone keeps it whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}")
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    # An existing file is swapped with the new one (then unlinked) rather than renamed over:
    # ext4 (auto_da_alloc) flushes a file renamed over another, ~3.5 ms here, and `run -d`
    # writes state.json several times on its way to printing the id. Same atomicity.
    try:
        from runtime.syscalls import rename_exchange
        rename_exchange(str(tmp), str(path))
    except (OSError, KeyError):  # no file there yet, or a kernel/filesystem without the flag
        os.rename(tmp, path)
    else:
        os.unlink(tmp)  # the old content, now under the temporary name


def read_json(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Container:
    """One container directory; cheap to make, reads lazily."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.name
        self._config: dict | None = None

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = read_json(self.path / "config.json") or {}
        return self._config

    @property
    def name(self) -> str:
        return self.config.get("Name", "")

    def state(self) -> dict:
        return read_json(self.path / "state.json") or {"Status": "created"}

    def write_state(self, **changes) -> dict:
        """Update state.json under the container's lock (monitor and commands both write)."""
        with self.locked():
            st = self.state()
            st.update(changes)
            write_json(self.path / "state.json", st, durable=False)
            return st

    def locked(self):
        return _Lock(self.path / "lock")

    # --- liveness ---------------------------------------------------------------------
    def monitor_alive(self) -> bool:
        """The monitor holds monitor.lock exclusively for its whole life."""
        try:
            fd = os.open(self.path / "monitor.lock", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)
        return False

    def live_pid(self) -> int | None:
        """The container's pid 1 (host pid) if it still runs, else None."""
        st = self.state()
        pid, start = st.get("Pid") or 0, st.get("PidStart")
        if pid > 0 and start is not None and proc_start(pid) == start:
            return pid
        return None

    def status(self) -> dict:
        """state.json corrected by what is alive: a running record whose monitor is gone
        becomes exited with a clear error (the container died with it: PDEATHSIG)."""
        st = self.state()
        if st.get("Status") in ("running", "restarting", "starting") and not self.monitor_alive():
            st = dict(st, Status="exited", Error=st.get("Error") or "the container's monitor is gone (killed?); state unknown",
                      ExitCode=st.get("ExitCode") if st.get("Status") == "restarting" else -1,
                      Pid=0, MonitorLost=True)
        return st


class _Lock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def proc_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of `pid`, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


def all_containers(root: Path) -> list[Container]:
    d = base_dir(root)
    out = []
    for p in sorted(d.iterdir()) if d.is_dir() else ():
        if p.is_dir() and (p / "config.json").is_file():
            out.append(Container(p))
    out.sort(key=lambda c: c.config.get("Created", ""), reverse=True)
    return out


def find(root: Path, ref: str) -> Container:
    """By exact name, full id, or unique id prefix (docker's order)."""
    if not ref:
        raise NoSuchContainer("no container name or id given")
    cs = all_containers(root)
    for c in cs:
        if c.name == ref.lstrip("/") or c.id == ref:
            return c
    hits = [c for c in cs if c.id.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise NoSuchContainer(f"multiple containers match id prefix {ref!r}: give more characters")
    raise NoSuchContainer(f"no such container: {ref}")


def names_lock(root: Path) -> _Lock:
    base_dir(root).mkdir(parents=True, exist_ok=True)
    return _Lock(base_dir(root) / ".names.lock")


def check_name(root: Path, name: str) -> None:
    """Raise if `name` is malformed or taken (call under names_lock)."""
    if not NAME_RE.match(name):
        raise PybuildError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    for c in all_containers(root):
        if c.name == name:
            raise PybuildError(f"the container name {name!r} is already in use by container {c.id[:12]}; "
                               "remove or rename that container first")


_ADJ = ("brave", "calm", "eager", "fond", "happy", "jolly", "keen", "lucid", "merry", "nifty", "proud", "quirky",
        "sharp", "tender", "vivid", "witty", "zen", "bold", "clever", "gentle")
_NOUN = ("turing", "hopper", "lovelace", "knuth", "ritchie", "thompson", "torvalds", "liskov", "dijkstra",
         "hamilton", "kay", "lamport", "backus", "wirth", "mccarthy", "shannon", "noether", "curie")


def generated_name(root: Path) -> str:
    taken = {c.name for c in all_containers(root)}
    for _ in range(100):
        r = os.urandom(2)
        n = f"{_ADJ[r[0] % len(_ADJ)]}_{_NOUN[r[1] % len(_NOUN)]}"
        if n not in taken:
            return n
    return f"container_{os.urandom(4).hex()}"

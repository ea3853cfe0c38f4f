"""What `pybuild run` starts: an image config plus docker-run options → one process spec.

Owns: docker's rules for combining the image config with run flags (Entrypoint/Cmd table of
the Dockerfile reference, Env merging, WorkingDir, User resolution through the image's
/etc/passwd and /etc/group). Pure: takes values (and a file reader only for passwd/group),
returns values. Must not: mount, start processes or touch the store (commands/run.py does).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

from builder.errors import PybuildError
from runtime.record import Record

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessSpec(Record):
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int
    gid: int
    additional_gids: tuple[int, ...]


def command_line(entrypoint: Sequence[str] | None, cmd: Sequence[str] | None, *,
                 override_entrypoint: str | None = None, args: Sequence[str] = ()) -> tuple[str, ...]:
    """docker's Entrypoint/Cmd combination.

    `docker run --entrypoint E` replaces the image entrypoint by [E] and drops the image Cmd;
    arguments after the image name replace Cmd.
    """
    ep = list(entrypoint or [])
    cm = list(cmd or [])
    if override_entrypoint is not None:
        ep = [override_entrypoint] if override_entrypoint else []
        cm = []
    if args:
        cm = list(args)
    argv = tuple(ep + cm)
    if not argv:
        raise PybuildError("no command specified: the image has no Entrypoint or Cmd and none was given")
    return argv


def merge_env(image_env: Sequence[str], overrides: Sequence[str], host_env: Mapping[str, str] | None = None,
              *, hostname: str | None = None, tty: bool = False) -> tuple[str, ...]:
    """docker's container environment: PATH (default), HOSTNAME, TERM=xterm with a tty, each
    replaced in place by the image's Env, then `-e`/`--env-file` entries in order (`-e NAME`
    takes NAME from the host)."""
    host_env = os.environ if host_env is None else host_env
    out: dict[str, str] = {"PATH": DEFAULT_PATH}
    if hostname is not None:
        out["HOSTNAME"] = hostname
    if tty:
        out["TERM"] = "xterm"
    for item in image_env:
        k, _, v = item.partition("=")
        out[k] = v
    for item in overrides:
        if "=" in item:
            k, _, v = item.partition("=")
            if not k:
                raise PybuildError(f"invalid environment variable {item!r}: empty name")
            out[k] = v
        elif item in host_env:
            out[item] = host_env[item]
        else:
            out.pop(item, None)  # docker: `-e NAME` with NAME unset on the host sets nothing
    return tuple(f"{k}={v}" for k, v in out.items())


def with_home(env: Sequence[str], user: str, read_file: "ReadFile | None") -> tuple[str, ...]:
    """`env` plus HOME when it has none, as runc sets it for docker run and BuildKit's RUN:
    the home directory of the user's /etc/passwd entry, `/` when there is none."""
    if any(e.startswith("HOME=") for e in env):
        return tuple(env)
    return (*env, f"HOME={user_home(user, read_file)}")


def user_home(user: str, read_file: "ReadFile | None") -> str:
    """The home directory /etc/passwd gives `user` (name or uid, before any `:group`), else `/`."""
    name = (user or "0").partition(":")[0]
    field = 2 if name.isdigit() else 0
    for ent in _read_db(read_file, "passwd"):
        if len(ent) >= 6 and ent[field] == name:
            return ent[5] or "/"
    return "/"


def read_env_file(path: str) -> list[str]:
    """docker's --env-file: one VAR=VAL (or VAR) a line; `#` comments and blank lines ignored."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise PybuildError(f"cannot read env file {path}: {e.strerror}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name = line.partition("=")[0]
        if not name or any(c.isspace() for c in name):
            raise PybuildError(f"{path}:{n}: invalid variable name {name!r}")
        out.append(line)
    return out


ReadFile = Callable[[str], "bytes | None"]


def rootfs_reader(rootfs: Path) -> ReadFile:
    """A ReadFile over a plain directory that never follows a symlink out of it."""
    def read(path: str) -> bytes | None:
        p = rootfs / path.lstrip("/")
        try:
            if p.is_symlink():
                return None
            return p.read_bytes()
        except OSError:
            return None
    return read


def _read_db(read_file: ReadFile | None, name: str) -> list[list[str]]:
    data = read_file(f"/etc/{name}") if read_file is not None else None
    if data is None:
        return []
    text = data.decode(errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(user: str, read_file: ReadFile | None) -> tuple[int, int, tuple[int, ...]]:
    """`user[:group]` (names or numbers) → (uid, gid, supplementary gids), docker's rules.

    `read_file(path)` reads a file of the image (a layer view or a rootfs dir), None if absent.
    """
    user = user or "0"
    name, _, group = user.partition(":")
    passwd = _read_db(read_file, "passwd")
    groups = _read_db(read_file, "group")
    uname: str | None = None
    if name.isdigit():
        uid = int(name)
        gid = 0
        for ent in passwd:
            if len(ent) >= 4 and ent[2] == name:
                uname, gid = ent[0], int(ent[3]) if ent[3].isdigit() else 0
                break
    else:
        for ent in passwd:
            if len(ent) >= 4 and ent[0] == name and ent[2].isdigit():
                uname, uid, gid = name, int(ent[2]), int(ent[3]) if ent[3].isdigit() else 0
                break
        else:
            raise PybuildError(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for ent in groups:
                if len(ent) >= 3 and ent[0] == group and ent[2].isdigit():
                    gid = int(ent[2])
                    break
            else:
                raise PybuildError(f"unable to find group {group}: no matching entries in group file")
    # As runc under docker/BuildKit: the additional groups always hold the primary gid, then
    # (when no group was named) every /etc/group entry that lists the user.
    extra: list[int] = [gid]
    if uname is not None and not group:
        for ent in groups:
            if len(ent) >= 4 and ent[2].isdigit() and uname in ent[3].split(","):
                g = int(ent[2])
                if g not in extra:
                    extra.append(g)
    return uid, gid, tuple(extra)


def process_spec(config: Mapping, read_file: ReadFile | None, *, args: Sequence[str] = (), entrypoint: str | None = None,
                 env: Sequence[str] = (), workdir: str | None = None, user: str | None = None,
                 host_env: Mapping[str, str] | None = None, hostname: str | None = None,
                 tty: bool = False) -> ProcessSpec:
    """The process docker would start for an image's `config` (the ImageConfig.config mapping)."""
    argv = command_line(config.get("Entrypoint"), config.get("Cmd"), override_entrypoint=entrypoint, args=args)
    user = user if user is not None else (config.get("User") or "")
    uid, gid, extra = resolve_user(user, read_file)
    cwd = workdir or config.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise PybuildError(f"the working directory {cwd!r} is invalid: it needs to be an absolute path")
    full_env = merge_env(config.get("Env") or (), env, host_env, hostname=hostname, tty=tty)
    return ProcessSpec(argv=argv, env=with_home(full_env, user, read_file), cwd=cwd,
                       uid=uid, gid=gid, additional_gids=extra)

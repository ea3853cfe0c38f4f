"""Detached containers' lifecycle: create (from `run -d` flags), start, stop, kill, remove, wait.

Owns: turning `run` flags into a container directory and config.json (through
builder.containers.spec's flag rules, plus name, ports, network, volumes, restart policy,
stop signal), starting a monitor for it (fork, setsid, fork again: the monitor is nobody's
child, so it outlives the CLI and no daemon is needed), and the commands' side of stopping
and removing (signals to the container's pid 1 verified by its start time, the stop request
the monitor honours over a restart policy, removing what a killed monitor left). Must not:
run the container itself (monitor.py does, through runtime.sandbox).
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import time
from pathlib import Path

from builder.containers.state import (Container, check_name, find, generated_name, names_lock, now_iso,
                                      proc_start, write_json)
from builder.errors import PybuildError, UsageError
from builder.rootless import host_root

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def parse_restart(text: str | None) -> dict:
    name, _, count = (text or "no").partition(":")
    if name not in RESTART_POLICIES:
        raise UsageError(f"invalid --restart {text!r}: one of no, always, on-failure[:N], unless-stopped")
    if count and (name != "on-failure" or not count.isdigit()):
        raise UsageError(f"invalid --restart {text!r}: only on-failure takes a count (on-failure:3)")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": int(count or 0)}


def signal_number(text: str | int | None, default: int = signal.SIGTERM) -> int:
    if text is None or text == "":
        return default
    if isinstance(text, int):
        return text
    t = text.upper()
    if t.isdigit():
        n = int(t)
    else:
        try:
            n = signal.Signals["SIG" + t.removeprefix("SIG")].value
        except KeyError:
            raise UsageError(f"invalid signal {text!r}") from None
    if not 0 < n < signal.NSIG:
        raise UsageError(f"invalid signal {text!r}")
    return n


# --- create -------------------------------------------------------------------------------
def create(args) -> Container:
    """A container directory for `run -d` args (not started). Flag errors come first."""
    from builder import settings as settings_mod
    from builder.containers import spec as runspec
    from runtime.config import Mount, Rootfs
    from runtime.record import replace

    runspec.limits(args)
    restart = parse_restart(args.restart)
    if args.rm and restart["Name"]:
        raise UsageError("--restart and --rm cannot be used together")
    if args.publish or args.publish_all:
        from builder.networks import ports as ports_mod  # (only then: it imports socket, ~2 ms)
    published = [p for spec in args.publish for p in ports_mod.parse(spec)]
    from builder.containers.health import from_flags
    health_flags = from_flags(args)  # flag errors first; merged with the image's below
    stop_signal = args.stop_signal
    if stop_signal:
        signal_number(stop_signal)
    binds, named = _split_volumes(args.volume)
    st = settings_mod.load()
    root = st.root
    # bridge (builder.networks.bridge.DEFAULT, not imported: start-up time) as root; rootless,
    # pasta (a user-mode network stack: builder.networks.pasta)
    network = args.network or ("bridge" if host_root() else "pasta")
    if network not in ("host", "none", "bridge", "pasta") and not (root / "networks" / f"{network}.json").is_file():
        raise PybuildError(f"network {network} not found")
    if network in ("host", "none") and (published or args.publish_all):
        published, args.publish_all = [], False  # docker: published ports are discarded on host/none
    sources = [find(root, ref) for ref in args.volumes_from]

    cid = os.urandom(32).hex()
    with names_lock(root):
        name = args.name or generated_name(root)
        if args.name:
            check_name(root, name)
        cdir = root / "containers" / cid
        cdir.mkdir(parents=True)
        # a stub config at once: the name is taken from here on, and `rm` can always clean up
        # (no fsync: the whole config replaces it a few ms later, durably; an fsync is 1-6 ms here)
        write_json(cdir / "config.json", {"Id": cid, "Name": name, "Created": now_iso()}, durable=False)
    try:
        hostname = args.hostname or cid[:12]
        args.volume = binds
        _st, img, snaps, lowers, spec = runspec.prepare(args, for_bundle=False, hostname=hostname)
        try:
            (cdir / "upper").mkdir()
            (cdir / "work").mkdir()
            (cdir / "hosts").write_text("")
            conf = img.config.config.to_dict()
            from builder.containers.health import merge
            healthcheck = merge(conf.get("Healthcheck"), health_flags, disabled=args.no_healthcheck)
            if args.publish_all:
                published += ports_mod.exposed(conf.get("ExposedPorts"))
            config = runspec.sandbox_config(args, spec, Rootfs(lowerdirs=tuple(lowers), upperdir=str(cdir / "upper"),
                                                        workdir=str(cdir / "work")), tty=False, cid=cid)
            vols, vol_mounts = _volume_mounts(root, named, conf, lowers, sources, cid)
            extra = [(h.split(":", 1)[0], h.split(":", 1)[1]) for h in args.add_host]
            from builder.networks.endpoint import netns_path
            config = replace(config, mounts=tuple(config.mounts) + tuple(Mount("bind", v["Destination"], v["Source"],
                                                                               readonly=not v["RW"]) for v in vol_mounts),
                             hostname=hostname, extra_hosts=tuple(extra),
                             network="host" if network == "host" else "none",
                             netns_path=None if network in ("host", "none") or (network == "pasta" and not host_root())
                             else netns_path(cid),
                             hosts_file=None if network in ("host",) else str(cdir / "hosts"))
            config.check()
            from builder.snapshot import chain_ids

            rec = {
                "Id": cid, "Name": name, "Created": now_iso(), "Image": args.image, "ImageID": str(img.id),
                "Chains": chain_ids([str(d) for d in img.diff_ids]), "Sandbox": config.to_dict(),
                "Path": spec.argv[0], "Args": list(spec.argv[1:]), "Network": network,
                "Aliases": list(args.network_alias), "Ports": published, "RestartPolicy": restart,
                "AutoRemove": bool(args.rm), "StopSignal": stop_signal or conf.get("StopSignal") or "SIGTERM",
                "StopTimeout": args.stop_timeout if args.stop_timeout is not None else 10,
                "Labels": {**(conf.get("Labels") or {}), **_labels(args.label)},
                "Volumes": vols, "Mounts": vol_mounts, "ExposedPorts": conf.get("ExposedPorts") or {},
                "User": args.user or conf.get("User") or "", "Env": list(spec.env), "WorkingDir": spec.cwd,
                "Tty": bool(args.tty), "OpenStdin": bool(args.interactive),
                "Binds": binds, "Entrypoint": conf.get("Entrypoint"), "Cmd": list(args.command) or conf.get("Cmd"),
                "Healthcheck": healthcheck,
            }
            write_json(cdir / "config.json", rec)
        finally:
            snaps.release()
    except BaseException:
        shutil.rmtree(cdir, ignore_errors=True)
        raise
    return Container(cdir)


def _labels(items: list[str]) -> dict:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise UsageError(f"invalid --label {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def _split_volumes(specs: list[str]) -> tuple[list[str], list[tuple[str | None, str, bool]]]:
    """-v values: host binds (a path before the colon) stay for run's rules; named
    (NAME:/path[:ro]) and anonymous (/path) volumes are returned as (name, target, rw)."""
    binds, named = [], []
    for v in specs:
        parts = v.split(":")
        if len(parts) == 1:
            if not parts[0].startswith("/"):
                raise UsageError(f"invalid volume {v!r}: the container path must be absolute")
            named.append((None, parts[0], True))
        elif parts[0].startswith(("/", ".")):
            binds.append(v)
        else:
            if len(parts) > 3 or not parts[1].startswith("/"):
                raise UsageError(f"invalid volume {v!r}: expected NAME:/CONTAINER/PATH[:ro|rw]")
            mode = parts[2] if len(parts) == 3 else "rw"
            if mode not in ("ro", "rw"):
                raise UsageError(f"invalid volume {v!r}: mode must be ro or rw")
            named.append((parts[0], parts[1], mode == "rw"))
    return binds, named


def _volume_mounts(root: Path, named, conf: dict, lowers, sources: list[Container],
                   cid: str) -> tuple[list[dict], list[dict]]:
    from builder.engine.fsview import LayeredFS
    from builder.volumes import store as vstore

    view = LayeredFS(lowers)
    wanted: dict[str, tuple[str | None, bool]] = {}
    for src in sources:  # --volumes-from: the same volumes at the same places
        for m in src.config.get("Mounts", []):
            wanted[m["Destination"]] = (m["Name"], m["RW"])
    for path in sorted(conf.get("Volumes") or {}):  # the image's VOLUME entries: anonymous
        wanted.setdefault(path, (None, True))
    for name, target, rw in named:
        wanted[target] = (name, rw)
    for target in wanted:  # the image's VOLUME entries are untrusted input: checked before any copy
        if not target.startswith("/") or target == "/" or ".." in target.split("/") or "\0" in target:
            raise PybuildError(f"invalid volume path {target!r}: an absolute path below / without '..'")
    vols, mounts = [], []
    for target, (name, rw) in sorted(wanted.items()):
        rec = vstore.create(root, name, exist_ok=True) if name else vstore.create(root, owner=cid)
        vstore.seed(rec, view, target)
        vols.append({"Name": rec["Name"], "Anonymous": bool(rec.get("Anonymous"))})
        mounts.append({"Type": "volume", "Name": rec["Name"], "Source": rec["Mountpoint"], "Destination": target,
                       "Driver": "local", "Mode": "" if rw else "ro", "RW": rw, "Propagation": ""})
    return vols, mounts


# --- start: the monitor -------------------------------------------------------------------
def start(c: Container, root: Path) -> None:
    """Start the container's monitor and return once the container runs (or failed)."""
    if c.monitor_alive():
        return
    try:
        os.unlink(c.path / "stop-requested")
    except FileNotFoundError:
        pass
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the middle process: a new session, then gone, so the monitor is orphaned
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                from builder.containers import monitor
                monitor.run_monitor(root, c.path, w)  # never returns
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(w)
    os.waitpid(pid, 0)
    msg = b""
    while chunk := os.read(r, 4096):
        msg += chunk
    os.close(r)
    text = msg.decode(errors="replace").strip()
    if text != "ok":
        raise PybuildError(text.removeprefix("error: ") or "the container's monitor ended before it started")


# --- signals and stopping ------------------------------------------------------------------
def send_signal(c: Container, sig: int) -> bool:
    """Signal the container's pid 1 (pidfd, after checking its start time); False if not running."""
    st = c.state()
    pid = st.get("Pid") or 0
    if pid <= 0:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if proc_start(pid) != st.get("PidStart"):
            return False  # the pid was reused: not ours
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _wait_pid_gone(c: Container, timeout: float) -> bool:
    st = c.state()
    pid = st.get("Pid") or 0
    if pid <= 0:
        return True
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True
    try:
        if proc_start(pid) != st.get("PidStart"):
            return True
        return bool(select.select([fd], [], [], max(0.0, timeout))[0])
    finally:
        os.close(fd)


def wait_monitor(c: Container, timeout: float | None = None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    while c.monitor_alive():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for_start(c: Container, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while c.monitor_alive() and c.state().get("Status") == "starting" and time.monotonic() < deadline:
        time.sleep(0.02)


def request_stop(c: Container) -> None:
    (c.path / "stop-requested").touch()


def stop(c: Container, timeout: float | None = None, sig: int | None = None) -> None:
    """docker stop: the stop signal, up to `timeout` seconds, then SIGKILL; the restart
    policy does not bring it back."""
    request_stop(c)
    cfg = c.config
    t = cfg.get("StopTimeout", 10) if timeout is None else timeout
    if c.monitor_alive():
        if c.state().get("Status") == "starting":
            wait_for_start(c, 10)  # a container still starting gets its stop signal once it runs
        if send_signal(c, sig or signal_number(cfg.get("StopSignal"))) and t > 0:
            _wait_pid_gone(c, t)
        deadline = time.monotonic() + 10
        while c.monitor_alive() and time.monotonic() < deadline:
            send_signal(c, signal.SIGKILL)
            time.sleep(0.05)


def kill(c: Container, sig: int) -> None:
    if not c.monitor_alive() or c.status().get("Status") != "running":
        raise PybuildError(f"container {c.name or c.id[:12]} is not running")
    if sig == signal.SIGKILL:
        request_stop(c)
    if not send_signal(c, sig):
        raise PybuildError(f"container {c.name or c.id[:12]} is not running")


def remove(c: Container, root: Path, *, force: bool = False, volumes: bool = False) -> None:
    if c.monitor_alive():
        if not force:
            raise PybuildError(f"cannot remove container {c.name or c.id[:12]}: it is running "
                               "(stop it first, or use rm -f)")
        request_stop(c)
        # SIGKILL until the monitor is gone: one still starting the container records the
        # pid a moment later (and then sees the stop request once it is dead)
        deadline = time.monotonic() + 15
        while c.monitor_alive():
            send_signal(c, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise PybuildError(f"container {c.name or c.id[:12]}: its monitor did not end")
            time.sleep(0.05)
    cleanup_leftovers(c)
    trash = c.path.with_name(f".trash-{c.id}")
    try:
        os.rename(c.path, trash)
    except FileNotFoundError:
        return  # removed by someone else meanwhile (e.g. its --rm monitor)
    shutil.rmtree(trash, ignore_errors=True)
    if volumes:
        from builder.volumes import store as vstore
        names = {v["Name"] for v in c.config.get("Volumes", []) if v.get("Anonymous")}
        names |= {v["Name"] for v in vstore.all_volumes(root) if v.get("Owner") == c.id}  # (a create cut short)
        for name in sorted(names):
            try:
                vstore.remove(root, name)
            except PybuildError:
                pass


def cleanup_leftovers(c: Container) -> None:
    """What a monitor killed with SIGKILL could not remove: the network namespace and veth,
    the sandbox's private directory and cgroups named after the monitor's pid."""
    from builder.networks.endpoint import detach

    if c.config.get("Network") not in (None, "host", "none"):
        try:
            if c.config.get("Ports"):
                from builder.networks.ports import unpublish
                unpublish(c.id)
            detach(c.id)
        except PybuildError:
            pass
    mpid = c.state().get("MonitorPid")
    if mpid:
        import glob
        for d in glob.glob(f"/dev/shm/pybuild-sandbox-{mpid}-*"):
            shutil.rmtree(d, ignore_errors=True)

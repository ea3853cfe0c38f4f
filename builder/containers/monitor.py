"""The per-container monitor (conmon's role): one process per running detached container.

Owns, for its container: holding monitor.lock for its whole life (that lock is how others
know it lives), leasing the image's snapshots, the published ports' sockets and proxy, the
network endpoint (made before each start, removed after each exit), the /etc/hosts of the
container and of its peers, running the container through runtime.sandbox with its output
into the log, recording state.json at every change, the restart policy, and --rm. Its
container's init outer is its child with a parent-death signal, so a monitor killed with
SIGKILL takes its container with it: `ps -a` then reports the container exited with the
monitor lost, and `rm` removes what was left (lifecycle.cleanup_leftovers).
Must not: be imported by the CLI for anything but starting a monitor.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from builder.containers.state import Container, all_containers, now_iso, proc_start


def run_monitor(root: Path, cdir: Path, ready_fd: int) -> None:
    """Entry in the freshly double-forked process; never returns."""
    code = 0
    try:
        _detach_stdio(ready_fd)
        # The sandbox fork server first, forked from here while we have one thread and before
        # anything else (runtime.zygote.prefork): its set-up (the cgroup join, a RCU grace
        # period) then overlaps ours. Killed with SIGKILL, we take it with us (its parent-death
        # signal), and it the container's init outer (theirs): nothing outlives a lost monitor.
        from runtime import zygote
        zygote.prefork()
        Monitor(root, Container(cdir), ready_fd).run()
    except BaseException as e:  # noqa: BLE001 - nobody is left to report to but the state file
        code = 1
        try:
            Container(cdir).write_state(Status="exited", Error=f"monitor: {type(e).__name__}: {e}", Pid=0,
                                        FinishedAt=now_iso())
        except BaseException:
            pass
        try:
            os.write(ready_fd, f"error: {e}".encode())
        except OSError:
            pass
    os._exit(code)


def _detach_stdio(keep: int) -> None:
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    # nothing of the CLI's stays open here (its lease file, the store lock, a terminal)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)


def _exec_done(pid: int, under_init: bool, limit: float = 5.0) -> bool:
    """Wait until the container's pid 1 has exec'd its process (docker's `run -d` returns
    after the start, so an unknown command is the command's error, not a later exit).
    /proc/PID/exe names the Python interpreter until the exec. Under --init, pid 1 stays the
    interpreter: its fork is enough. False if it died first."""
    import sys
    me = os.path.realpath(sys.executable)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False  # gone, or a zombie (it exited without exec'ing)
        if under_init or exe != me:
            return True
        time.sleep(0.001)
    return True


class Monitor:
    def __init__(self, root: Path, c: Container, ready_fd: int) -> None:
        self.root, self.c, self.ready_fd = root, c, ready_fd
        self.cfg = c.config

    def ready(self, msg: str) -> None:
        if self.ready_fd >= 0:
            try:
                os.write(self.ready_fd, msg.encode())
            except OSError:
                pass
            os.close(self.ready_fd)
            self.ready_fd = -1

    def run(self) -> None:
        # (the fork server, if run_monitor could not fork it, starts now as a re-exec'd Python,
        # so its start-up overlaps the network set-up)
        from runtime import zygote
        zygote.prewarm()
        lock_fd = os.open(self.c.path / "monitor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.ready("ok")  # another monitor runs it already
            return
        from builder import settings as settings_mod
        from builder.containers.logs import LOG_NAME, LogWriter
        from builder.snapshot import Snapshotter

        st = settings_mod.load()
        snaps = Snapshotter(st.snapshots_dir, st.tmp_dir)
        snaps.use(self.cfg.get("Chains", []))
        self.c.write_state(Status="starting", MonitorPid=os.getpid(), Error="", Pid=0)
        log = LogWriter(self.c.path / LOG_NAME)
        proxy = self._ports()
        try:
            self._loop(log, proxy)
        finally:
            log.close()
            snaps.release()
        if self.cfg.get("AutoRemove"):
            from builder.containers.lifecycle import remove
            os.close(lock_fd)
            remove(self.c, self.root, volumes=True)

    def _ports(self):
        ports = self.cfg.get("Ports") or []
        if not ports:
            return None
        from builder.networks import ports as ports_mod
        if self.cfg.get("Network") == "pasta":
            from builder.networks.pasta import choose_ports
            self.c.write_state(Ports=choose_ports(ports))  # pasta binds them itself
            return None
        socks = ports_mod.bind([dict(p) for p in ports])
        live = [dict(p, HostPort=s.getsockname()[1]) for p, s in zip(ports, socks)]
        self.c.write_state(Ports=live)
        proxy = ports_mod.Proxy(live, socks)
        if self.cfg.get("Network") in ("host", "none", None):
            proxy.start()  # no address of its own to forward to in the kernel
        return proxy

    def _loop(self, log, proxy) -> None:
        from runtime import sandbox
        from runtime.config import SandboxConfig
        from runtime.errors import ExecError, SandboxError

        config = SandboxConfig.from_dict(self.cfg["Sandbox"])
        policy = self.cfg.get("RestartPolicy") or {"Name": ""}
        restarts = self.c.state().get("RestartCount", 0)
        while True:
            ip = self._attach()
            if proxy is not None:
                proxy.target_ip = ip or "127.0.0.1"
                if ip:
                    from builder.networks.ports import publish
                    publish(self.c.id, proxy.ports, ip)

            def on_start(pid: int) -> None:
                if not _exec_done(pid, config.init):
                    return  # it died before its exec: the error record follows, and is reported
                if self.cfg.get("Network") == "pasta" and not self.cfg["Sandbox"].get("netns_path"):
                    from builder.networks.pasta import attach
                    # rootless: before anyone is told it runs; pasta is ours until it ends
                    pastas.append(attach(pid, self.c.state().get("Ports") or []))
                self.c.write_state(Status="running", Pid=pid, PidStart=proc_start(pid), StartedAt=now_iso(),
                                   ExitCode=0, Error="", OOMKilled=False, RestartCount=restarts)
                if self.cfg.get("Healthcheck"):
                    from builder.containers.health import Checker
                    Checker(self.c, self.cfg["Healthcheck"], lambda: self.c.live_pid() == pid).start()
                self.ready("ok")
            err, oom = "", False
            pastas: list = []
            try:
                res = sandbox.run(config, stdout=log.sink("stdout"), stderr=log.sink("stderr"), on_start=on_start)
                code, oom = res.exit_code, res.oom_killed
            except ExecError as e:
                code, err = (126 if "permission denied" in str(e).lower() else 127), str(e)
            except SandboxError as e:
                code, err = 125, str(e)
            finally:
                if pastas:
                    from builder.networks.pasta import detach_process
                    for proc in pastas:
                        detach_process(proc)
            log.flush()
            if err:
                log.sink("stderr")(f"error: {err}\n".encode())
                log.flush()
            self._detach()
            self.c.write_state(Status="exited", ExitCode=code, Error=err, OOMKilled=oom, Pid=0,
                               FinishedAt=now_iso())
            if err and self.ready_fd >= 0:
                self.ready(f"error: {err}")
                return
            self.ready("ok")
            if (self.c.path / "stop-requested").exists():
                return
            name, limit = policy.get("Name") or "", policy.get("MaximumRetryCount") or 0
            again = name in ("always", "unless-stopped") or (name == "on-failure" and code != 0
                                                              and (limit == 0 or restarts < limit))
            if not again:
                return
            restarts += 1
            self.c.write_state(Status="restarting", RestartCount=restarts)
            delay = min(0.1 * 2 ** min(restarts - 1, 10), 60.0)  # docker's doubling back-off
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if (self.c.path / "stop-requested").exists():
                    self.c.write_state(Status="exited")
                    return
                time.sleep(0.05)

    # --- network ------------------------------------------------------------------------
    def _attach(self) -> str | None:
        net = self.cfg.get("Network")
        if net == "pasta" and self.cfg["Sandbox"].get("netns_path"):
            # as root: a named namespace, connected before the container starts
            from builder.networks import endpoint, pasta
            endpoint.make_netns(self.c.id)
            pasta.connect(endpoint.netns_path(self.c.id), self.c.state().get("Ports") or [])
        if net in ("host", "none", "pasta", None):
            self._write_hosts(None, [])
            return None
        from builder.networks import bridge, endpoint

        rec = bridge.ensure_default(self.root) if net == bridge.DEFAULT else bridge.load(self.root, net)
        if rec is None:
            raise RuntimeError(f"network {net} not found")
        with bridge.lock(self.root):
            peers = self._peers(net)
            ip = endpoint.attach(self.root, rec, self.c.id,
                                 {addr for _, addr, _ in peers} | endpoint.leased_ips(self.root, rec))
            self.c.write_state(IPAddress=ip, Gateway=rec["Gateway"], NetworkID=rec["Id"],
                               PrefixLen=int(rec["Subnet"].split("/")[1]))
        self._write_hosts(ip, peers)
        self._update_peers(net)
        return ip

    def _detach(self) -> None:
        net = self.cfg.get("Network")
        if net == "pasta" and self.cfg["Sandbox"].get("netns_path"):
            from builder.networks import endpoint
            endpoint.detach(self.c.id)  # pasta quits once its namespace is deleted
        if net in ("host", "none", "pasta", None):
            return  # (rootless, pasta ends by itself with the namespace it served)
        from builder.networks import endpoint
        if self.cfg.get("Ports"):
            from builder.networks.ports import unpublish
            unpublish(self.c.id)
        endpoint.detach(self.c.id)
        self.c.write_state(IPAddress="")
        self._update_peers(net)

    def _names(self, c: Container) -> list[str]:
        cfg = c.config
        return [n for n in (cfg.get("Name"), *cfg.get("Aliases", []), c.id[:12]) if n]

    def _peers(self, net: str) -> list[tuple[Container, str, list[str]]]:
        out = []
        for c in all_containers(self.root):
            if c.id == self.c.id or c.config.get("Network") != net:
                continue
            st = c.state()
            if st.get("IPAddress") and c.monitor_alive():
                out.append((c, st["IPAddress"], self._names(c)))
        return out

    def _write_hosts(self, ip: str | None, peers) -> None:
        from builder.networks.endpoint import hosts_text, write_in_place
        sb = self.cfg["Sandbox"]
        text = hosts_text(sb["hostname"], ip, [(a, n) for _, a, n in peers] +
                          ([(ip, [n for n in self._names(self.c) if n != sb["hostname"]])] if ip else []),
                          [tuple(x) for x in sb.get("extra_hosts") or []])
        write_in_place(self.c.path / "hosts", text)

    def _update_peers(self, net: str) -> None:
        """Every live container on `net` gets the current list of its peers."""
        from builder.networks.endpoint import hosts_text, write_in_place
        members = [(c, c.state().get("IPAddress")) for c in all_containers(self.root)
                   if c.config.get("Network") == net]
        members = [(c, ip) for c, ip in members if ip and (c.id == self.c.id or c.monitor_alive())]
        for c, ip in members:
            sb = c.config.get("Sandbox") or {}
            entries = [(pip, self._names(p)) for p, pip in members]
            write_in_place(c.path / "hosts", hosts_text(sb.get("hostname", c.id[:12]), ip, entries,
                                                        [tuple(x) for x in sb.get("extra_hosts") or []]))

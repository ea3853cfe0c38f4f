"""The `pasta` network: a user-mode network stack for one container (Debian package passt).

Owns: connecting a running container's network namespace to the outside through `pasta`
(from passt: a tap device in the namespace with the host's addresses and routes, traffic
relayed by an unprivileged process, so it works rootless), with the published ports
forwarded by pasta itself; choosing host ports for `-P`. This is the default network for
rootless `run -d` (bridges need root) and `--network pasta` as root. pasta runs as a
background process that quits when the namespace it serves is gone, so nothing is left
after the container ends. Outbound connections from the container to the host's own
loopback-bound ports are not forwarded (-T/-U none), as under docker's bridge.
Must not: touch bridges or nft (bridge.py, ports.py).
"""
from __future__ import annotations

import os
import socket
import subprocess

from builder.networks.bridge import NetworkError, tool
from builder.rootless import host_root


def choose_ports(ports: list[dict]) -> list[dict]:
    """Ports with HostPort 0 (-P, -p CTR) get a port that is free now."""
    out = []
    for p in ports:
        if not p["HostPort"]:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if p["Proto"] == "tcp" else socket.SOCK_DGRAM)
            s.bind((p["HostIp"] if ":" not in p["HostIp"] else "0.0.0.0", 0))
            p = dict(p, HostPort=s.getsockname()[1])
            s.close()
        out.append(p)
    return out


def _spec(p: dict) -> str:
    addr = "" if p["HostIp"] in ("0.0.0.0", "::") else f"{p['HostIp']}/"
    return f"{addr}{p['HostPort']}:{p['ContainerPort']}"


def usable() -> str | None:
    """Why pasta cannot connect a container here, or None."""
    import shutil
    if not shutil.which("pasta"):
        return "pasta is not installed (Debian package passt)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "pasta needs /dev/net/tun, which this user cannot open"
    return None


def _argv(ports: list[dict]) -> list[str]:
    argv = [tool("pasta", "passt"), "--config-net", "--quiet"]
    if os.geteuid() == 0:
        # as root (also the root of pybuild's rootless user namespace), pasta would switch to
        # nobody, who may not enter a root container's namespaces
        argv += ["--runas", "0:0"]
    tcp = [_spec(p) for p in ports if p["Proto"] == "tcp"]
    udp = [_spec(p) for p in ports if p["Proto"] == "udp"]
    for flag, specs in (("-t", tcp), ("-u", udp)):
        for spec in specs or ["none"]:
            argv += [flag, spec]
    return argv + ["-T", "none", "-U", "none"]


def _failed(stderr: str, code: int) -> NetworkError:
    msg = " ".join(ln for ln in stderr.splitlines() if "syslog" not in ln).strip()
    return NetworkError(f"pasta could not connect the container: {msg or f'exit status {code}'}")


def connect(netns: str, ports: list[dict]) -> None:
    """Give the network namespace bound at `netns` (as root: /run/netns/NAME) outbound
    connectivity and the published ports; returns once pasta is set up. pasta then runs in
    the background and quits once that file is deleted (endpoint.detach)."""
    r = subprocess.run(_argv(ports) + ["--netns", netns], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise _failed(r.stderr, r.returncode)


def attach(pid: int, ports: list[dict], timeout: float = 10.0) -> subprocess.Popen:
    """Connect the network namespace of process `pid` (rootless: the sandbox's own, never
    named); returns once its default route exists. pasta stays our child, in the foreground,
    killed with us (parent-death signal) or by detach_process() when the container ends:
    it holds the namespace open and would not notice the end by itself.

    The namespaces are opened here and handed over as /proc/self/fd/N: pasta drops
    CAP_SYS_PTRACE before it opens its target, and a process that holds more capabilities
    than it does (the sandbox's outer, root of its namespaces) or is not dumpable (anything
    exec'd from a root-owned file in a rootless user namespace) is out of its reach by pid."""
    import time

    fds: list[int] = []
    try:
        fds.append(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        argv = _argv(ports) + ["--foreground", "--netns", f"/proc/self/fd/{fds[-1]}"]
        if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
            fds.append(os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC))
            argv += ["--userns", f"/proc/self/fd/{fds[-1]}"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=fds, preexec_fn=_die_with_parent)
    except OSError as e:
        raise NetworkError(f"pasta could not connect the container: {e.strerror}") from None
    finally:
        for fd in fds:
            os.close(fd)
    # Ready once the namespace has its default route: pasta's --config-net adds it last.
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise _failed(proc.stderr.read().decode(errors="replace") if proc.stderr else "", code)
        try:
            with open(f"/proc/{pid}/net/route") as f:
                if any(ln.split()[1:2] == ["00000000"] for ln in f.read().splitlines()[1:]):
                    return proc
        except OSError:
            detach_process(proc)
            raise NetworkError("pasta could not connect the container: it ended before its network was up") from None
        if time.monotonic() > deadline:
            detach_process(proc)
            raise NetworkError(f"pasta could not connect the container: no route after {timeout:g} s")
        time.sleep(0.001)


def detach_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stderr:
        proc.stderr.close()


def _die_with_parent() -> None:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL

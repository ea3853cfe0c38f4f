"""`pybuild run` and `pybuild bundle`: start an image, or write it as an OCI runtime bundle.

Owns: docker-run flags → a runtime.SandboxConfig (through builder.container for docker's
config rules), the container's writable layer under `$ROOT/containers/<id>/` (an overlay upper
stacked on the image's cached snapshots), exit-code propagation (the container's status is
ours; killed by signal N → 128+N). Must not: build or pull images. Imports are kept lazy and
few: `pybuild run IMAGE true` has a 60 ms budget.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from builder.containers import spec as runspec
from builder.layers import fstree


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE", help="read variables from a file")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:ro]", help="bind mount")
    p.add_argument("--tmpfs", action="append", default=[], metavar="PATH[:OPTS]", help="mount a tmpfs")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="user (name or uid) to run as")
    p.add_argument("--entrypoint", metavar="CMD", help="override the image's ENTRYPOINT")
    p.add_argument("--network", "--net", metavar="NET", default=None,
                   help="bridge (the default: a private network with outbound access; rootless: pasta), "
                        "host, none (loopback only), or a network made by `pybuild network create`")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP", help="add a line to /etc/hosts")
    p.add_argument("--hostname", metavar="NAME", help="container host name (default: the container id)")
    p.add_argument("--memory", "-m", metavar="BYTES", help="memory limit, e.g. 256m, 1g")
    p.add_argument("--cpus", type=float, metavar="N", help="number of CPUs (fractions allowed)")
    p.add_argument("--pids-limit", type=int, metavar="N", help="maximum number of processes")
    p.add_argument("--read-only", action="store_true", help="mount the image's root read-only")
    p.add_argument("--init", action="store_true", help="run a minimal init as pid 1 that reaps zombies")
    p.add_argument("--security-opt", action="append", default=[], metavar="seccomp=unconfined|PROFILE.json",
                   help="seccomp=unconfined (no filter) or seccomp=FILE (a docker JSON profile)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="the image of this platform from a multi-platform image (default: this machine's)")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (or ALL)")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability (or ALL)")
    p.add_argument("--privileged", action="store_true", help="every capability (no other relaxation here)")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="lower a resource limit")
    p.add_argument("--mount", action="append", default=[], metavar="type=bind|volume|tmpfs,…",
                   help="mount: type=bind,source=,target=[,readonly] | type=volume[,source=NAME],target= | "
                        "type=tmpfs,target=[,tmpfs-size=][,tmpfs-mode=]")
    p.add_argument("--pull", choices=["missing", "always", "never"], default="never",
                   help="pull the image: missing, always, never (the default: unlike docker, `run` never "
                        "reaches a registry unless asked)")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="command and arguments")


def _add_container_flags(p: argparse.ArgumentParser) -> None:
    """Flags for containers that outlive the command (builder.containers: `run -d`)."""
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print the container id")
    p.add_argument("--name", metavar="NAME", help="name the container (unique)")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR[/tcp|udp]",
                   help="publish a container port on the host")
    p.add_argument("-P", "--publish-all", action="store_true", help="publish every EXPOSEd port on a free host port")
    p.add_argument("--restart", metavar="POLICY", help="no, always, on-failure[:N], unless-stopped")
    p.add_argument("--network-alias", action="append", default=[], metavar="NAME", help="another name on the network")
    p.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER",
                   help="mount the volumes of another container")
    p.add_argument("--stop-signal", metavar="SIG", help="signal that stops the container (default: the image's, else SIGTERM)")
    p.add_argument("--stop-timeout", type=int, metavar="SECONDS", help="seconds to wait before SIGKILL on stop")
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V", help="set a container label")
    p.add_argument("--health-cmd", metavar="CMD", help="command (run by sh -c) that checks the container's health")
    p.add_argument("--health-interval", metavar="DURATION", help="time between checks (default 30s)")
    p.add_argument("--health-timeout", metavar="DURATION", help="time a check may take (default 30s)")
    p.add_argument("--health-retries", type=int, metavar="N", help="failures in a row that make it unhealthy (default 3)")
    p.add_argument("--health-start-period", metavar="DURATION", help="failures do not count during this start-up time")
    p.add_argument("--no-healthcheck", action="store_true", help="disable the image's HEALTHCHECK")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a command in a new container from an image")
    p.add_argument("--rm", action="store_true", help="discard the container's writable layer on exit")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    _add_container_flags(p)
    _add_run_flags(p)
    # cmd_run removes what it made and holds no buffered files when it returns: cli.main may
    # skip the interpreter's teardown.
    p.set_defaults(func=cmd_run, fast_exit=True, command_name="run")

    p = sub.add_parser("bundle", help="write an image as an OCI runtime bundle (config.json + rootfs) for runc/crun")
    p.add_argument("-t", "--tty", action="store_true", help="set process.terminal in config.json")
    p.add_argument("--dest", "-o", required=True, metavar="DIR", help="bundle directory to create")
    _add_run_flags(p)
    p.set_defaults(func=cmd_bundle, command_name="bundle")


def run(args: argparse.Namespace) -> int:
    return args.func(args)


def cmd_run(args) -> int:
    runspec.normalize_mounts(args)
    runspec.capabilities(args)
    runspec.rlimits(args)
    if args.pull == "always":
        runspec.pull_if_needed(args)
    if args.detach or (args.network not in (None, "host", "none")) or args.publish or args.publish_all \
            or args.restart or args.volumes_from or args.health_cmd or any(":" not in v or not v.startswith(("/", ".")) for v in args.volume):
        # a container with a life of its own (a monitor, a network, volumes): builder.containers
        from builder.commands.containers import run_container
        return run_container(args)
    from runtime import zygote

    # First thing: the sandbox's fork server (a `python -I -S` child) starts on the other core
    # while this process imports the rest and resolves the image. runtime.zygote directly, not
    # sandbox.prewarm(): importing runtime.sandbox first would delay it by ~5 ms.
    zygote.prewarm()
    from builder.errors import ImageNotFound, PybuildError
    from runtime import sandbox
    from runtime.config import Rootfs
    from runtime.errors import ExecError

    runspec.limits(args)  # flag errors before any work
    runspec.security_opts(args)
    cid = os.urandom(16).hex()  # uuid would import platform (~1.5 ms)
    try:
        st, img, snaps, lowers, spec = runspec.prepare(args, for_bundle=False, hostname=_hostname(args, cid))
    except ImageNotFound:
        if args.pull != "missing":
            raise
        runspec.pull_if_needed(args)  # --pull missing: as docker run does by default
        st, img, snaps, lowers, spec = runspec.prepare(args, for_bundle=False, hostname=_hostname(args, cid))
    from builder.oci.layout import protect_state_dir
    protect_state_dir(st.root)
    (st.root / "containers").mkdir(mode=0o700, exist_ok=True)
    cdir = st.root / "containers" / cid
    (cdir / "upper").mkdir(parents=True)
    (cdir / "work").mkdir()
    (cdir / "pid").write_text(f"{os.getpid()}\n")  # prune leaves containers whose pybuild lives
    net = None
    try:
        if args.network is None:
            # docker's default: a private namespace with outbound access (the default bridge
            # as root, pasta rootless), connected before the process starts; it dies with it.
            from builder.networks.foreground import attach
            net = attach(st.root, cid)
            args.network = "none" if net else "host"
        config = runspec.sandbox_config(args, spec, Rootfs(lowerdirs=tuple(lowers), upperdir=str(cdir / "upper"),
                                                    workdir=str(cdir / "work"), volatile=args.rm), tty=args.tty, cid=cid)
        from runtime.record import replace
        # writable /etc/hosts etc., on disk as docker's
        config = replace(config, etc_files_dir=str(cdir), interface=net.interface if net else None)
        if args.tty and not os.isatty(0) and args.interactive:
            raise PybuildError("the input device is not a TTY (drop -t, or run from a terminal)")
        stdin = 0 if args.interactive else None
        try:
            # relayed: the container never holds our stdio (it could re-open the files behind them)
            res = sandbox.run(config, stdin=stdin, stdout=1, stderr=2, relay=True,
                              on_netns=net.on_netns if net else None)
        except ExecError as e:
            # docker's convention: 127 command not found, 126 found but cannot be executed.
            sys.stderr.write(f"error: {e}\n")
            return 126 if "permission denied" in str(e).lower() else 127
    finally:
        if net is not None:
            net.release()
        if args.rm:
            fstree.rmtree(cdir, ignore_errors=True)
        snaps.release()
    if res.oom_killed:
        sys.stderr.write("pybuild: the container was killed: out of memory\n")
    if res.timed_out:
        sys.stderr.write("pybuild: the container was killed: timeout\n")
    return res.exit_code


def _hostname(args, cid: str) -> str:
    """docker's: --hostname, else the host's own with --network host, else the short id."""
    return args.hostname or (os.uname().nodename if args.network == "host" else cid[:12])


def container_alive(cdir: Path) -> bool:
    """Is the `pybuild run` that owns this container directory still running?"""
    try:
        pid = int((cdir / "pid").read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # the pid may have been reused: it must still be a pybuild (python) process
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"builder" in cmdline or b"pybuild" in cmdline


def cmd_bundle(args) -> int:
    from runtime.bundle import write_bundle
    from runtime.config import Rootfs

    runspec.limits(args)  # flag errors before any work
    runspec.security_opts(args)
    cid = os.urandom(16).hex()
    runspec.normalize_mounts(args)
    st, img, snaps, lowers, spec = runspec.prepare(args, for_bundle=True, hostname=_hostname(args, cid))
    # The bundle's rootfs is the image's snapshots flattened (whiteouts honoured) by write_bundle.
    config = runspec.sandbox_config(args, spec, Rootfs(lowerdirs=tuple(lowers)), tty=args.tty, cid=cid)
    try:
        write_bundle(config, None, Path(args.dest))
    finally:
        snaps.release()
    print(args.dest)
    return 0

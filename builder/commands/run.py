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
import re
import sys
from pathlib import Path

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
                   help="host (default in the foreground), none (loopback only), bridge (default with -d) "
                        "or a network made by `pybuild network create`")
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


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$", re.I)


def parse_bytes(text: str, flag: str) -> int:
    from builder.errors import UsageError

    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"invalid value {text!r} for {flag}: expected a size like 512m or 2g")
    mult = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def _mounts(args, *, create_host_dirs: bool) -> list:
    from builder.errors import UsageError
    from runtime.config import Mount

    out = []
    for v in args.volume:
        parts = v.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise UsageError(f"invalid volume {v!r}: expected HOST:CONTAINER[:ro|rw]")
        host, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise UsageError(f"invalid volume {v!r}: mode must be ro or rw, not {mode!r}")
        if not host.startswith("/") and not host.startswith("."):
            raise UsageError(f"invalid volume {v!r}: named volumes are not supported; give a host path")
        if not target.startswith("/"):
            raise UsageError(f"invalid volume {v!r}: the container path must be absolute")
        host = os.path.abspath(host)
        if not os.path.exists(host):
            if not create_host_dirs:
                raise UsageError(f"invalid volume {v!r}: {host} does not exist")
            os.makedirs(host, exist_ok=True)  # as docker does for -v
        # the caller's own host path: its symlinks are followed here, on the host side; the
        # runtime then binds the object itself and refuses a source that is still a link
        out.append(Mount("bind", target, os.path.realpath(host), readonly=mode == "ro"))
    for t in args.tmpfs:
        path, _, opts = t.partition(":")
        if not path.startswith("/"):
            raise UsageError(f"invalid tmpfs {t!r}: the path must be absolute")
        out.append(Mount("tmpfs", path, "tmpfs", options=tuple(o for o in opts.split(",") if o)))
    return out


def security_opts(args) -> str:
    """The SandboxConfig.seccomp value for --security-opt: "default", "unconfined" or the
    (checked) text of a docker JSON profile. Errors are one line, before any work."""
    from builder.errors import UsageError

    seccomp = "default"
    for opt in args.security_opt:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # docker's older seccomp:FILE spelling
        if key != "seccomp" or not value:
            raise UsageError(f"invalid --security-opt {opt!r}: supported is seccomp=unconfined or seccomp=PROFILE.json")
        if value == "unconfined":
            seccomp = "unconfined"
            continue
        import json

        from runtime.seccomp import ProfileError, host_arch, load_profile, compile_profile
        try:
            prof = load_profile(value)
            compile_profile(prof, host_arch(), ())  # the program must also fit the kernel's limits
        except ProfileError as e:
            raise UsageError(f"invalid --security-opt {opt!r}: {e}") from None
        seccomp = json.dumps(prof, sort_keys=True, separators=(",", ":"))
    return seccomp


def _normalize_mounts(args) -> None:
    """--mount values become the -v / --tmpfs forms they mean (docker's key names)."""
    from builder.errors import UsageError

    for spec in getattr(args, "mount", []):
        kv: dict[str, str] = {}
        flags = set()
        for part in spec.split(","):
            k, sep, v = part.partition("=")
            k = k.strip()
            if sep:
                kv[k] = v
            else:
                flags.add(k)
        kind = kv.get("type", "volume")
        target = kv.get("target") or kv.get("destination") or kv.get("dst")
        source = kv.get("source") or kv.get("src") or ""
        ro = "readonly" in flags or "ro" in flags or kv.get("readonly", kv.get("ro", "false")) in ("1", "true")
        if not target or not target.startswith("/"):
            raise UsageError(f"invalid --mount {spec!r}: target= must be an absolute path")
        if kind == "bind":
            if not source.startswith("/"):
                raise UsageError(f"invalid --mount {spec!r}: a bind needs an absolute source=")
            if not os.path.exists(source):
                raise UsageError(f"invalid --mount {spec!r}: bind source path does not exist: {source}")
            args.volume.append(f"{source}:{target}" + (":ro" if ro else ""))
        elif kind == "volume":
            if source.startswith(("/", ".")):
                raise UsageError(f"invalid --mount {spec!r}: a volume source is a volume name")
            args.volume.append(f"{source}:{target}" + (":ro" if ro else "") if source else target)
        elif kind == "tmpfs":
            opts = []
            if "tmpfs-size" in kv:
                opts.append(f"size={kv['tmpfs-size']}")
            if "tmpfs-mode" in kv:
                opts.append(f"mode={kv['tmpfs-mode']}")
            args.tmpfs.append(target + (":" + ",".join(opts) if opts else ""))
        else:
            raise UsageError(f"invalid --mount {spec!r}: type must be bind, volume or tmpfs")
    args.mount = []


def _capabilities(args) -> tuple[str, ...]:
    from builder.errors import UsageError
    from runtime.config import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES

    def norm(c: str) -> str:
        c = c.upper()
        return c if c == "ALL" or c.startswith("CAP_") else "CAP_" + c
    caps = list(CAPABILITY_NUMBERS) if getattr(args, "privileged", False) else list(DEFAULT_CAPABILITIES)
    adds, drops = [norm(c) for c in getattr(args, "cap_add", [])], [norm(c) for c in getattr(args, "cap_drop", [])]
    for c in adds + drops:
        if c != "ALL" and c not in CAPABILITY_NUMBERS:
            raise UsageError(f"unknown capability {c!r}")
    if "ALL" in drops:
        caps = []
    caps = [c for c in caps if c not in drops]
    if "ALL" in adds:
        caps = list(CAPABILITY_NUMBERS)
    caps += [c for c in adds if c != "ALL" and c not in caps]
    # never more than this host's bounding set allows (a host may itself lack some)
    try:
        with open("/proc/self/status") as f:
            bnd = int(next(ln for ln in f if ln.startswith("CapBnd:")).split()[1], 16)
        caps = [c for c in caps if bnd >> CAPABILITY_NUMBERS[c] & 1]
    except (OSError, StopIteration, ValueError):
        pass
    return tuple(caps)


def _rlimits(args) -> tuple:
    from builder.errors import UsageError
    from runtime.config import RLIMITS, Rlimit

    out = []
    for u in getattr(args, "ulimit", []):
        name, sep, vals = u.partition("=")
        soft, _, hard = vals.partition(":")
        hard = hard or soft
        if not sep or name not in RLIMITS or not soft.lstrip("-").isdigit() or not hard.lstrip("-").isdigit():
            raise UsageError(f"invalid --ulimit {u!r}: expected NAME=SOFT[:HARD] with NAME one of {', '.join(RLIMITS)}")
        s_, h_ = int(soft), int(hard)
        s_ = (1 << 64) - 1 if s_ < 0 else s_
        h_ = (1 << 64) - 1 if h_ < 0 else h_
        if s_ > h_:
            raise UsageError(f"invalid --ulimit {u!r}: the soft limit is above the hard one")
        out.append(Rlimit(name, s_, h_))
    return tuple(out)


def _pull_if_needed(args) -> None:
    """--pull missing|always|never, as docker run does it."""
    policy = getattr(args, "pull", "missing")
    if policy == "never":
        return
    from builder import settings as settings_mod
    from builder.errors import ImageNotFound
    from builder.oci.layout import ImageStore

    store = ImageStore(settings_mod.load().store_dir)
    if policy == "missing":
        try:
            store.resolve(args.image)
            return
        except ImageNotFound:
            pass
    from builder.commands.registry import _options
    from builder.registry.transfer import pull
    sys.stderr.write(f"Unable to find image '{args.image}' locally\n" if policy == "missing" else "")
    pull(args.image, store, options=_options(args))


def _limits(args):
    from builder.errors import UsageError
    from runtime.config import Limits

    if args.cpus is not None and args.cpus <= 0:
        raise UsageError("--cpus must be more than 0")
    if args.pids_limit is not None and args.pids_limit <= 0:
        raise UsageError("--pids-limit must be more than 0")
    mem = parse_bytes(args.memory, "--memory") if args.memory else None
    if mem is not None and mem < 6 << 20:
        raise UsageError("--memory: the minimum is 6m")
    return Limits(memory_bytes=mem, cpu_quota=args.cpus, pids=args.pids_limit)


def _prepare(args, *, for_bundle: bool, hostname: str | None = None):  # noqa: ARG001
    """(image, snapshotter, chains, process spec) for `args.image`."""
    from builder import settings as settings_mod
    from builder.container import process_spec, read_env_file
    from builder.engine.fsview import LayeredFS
    from builder.oci.image import Image
    from builder.oci.layout import ImageStore
    from builder.snapshot import Snapshotter, chain_ids

    st = settings_mod.load()
    store = ImageStore(st.store_dir)
    desc = store.resolve(args.image)
    img = _image_for(store, desc, args)
    snaps = Snapshotter(st.snapshots_dir, st.tmp_dir)
    chains = chain_ids([str(d) for d in img.diff_ids])
    snaps.use(chains)  # leased until the caller releases it: prune leaves these layers alone
    try:
        for layer, chain in zip(img.layers, chains):
            if not snaps.has(chain):
                from builder.layers.unpack import apply_layer

                snaps.ensure(chain, lambda d, layer=layer: apply_layer(store.blobs.path(layer.digest), d,
                                                                        media_type=layer.media_type,
                                                                        whiteouts="overlay"))
        lowers = snaps.lowerdirs(chains) if chains else (str(snaps.empty_dir()),)
        env = []
        for f in args.env_file:
            env.extend(read_env_file(f))
        env.extend(args.env)
        view = LayeredFS(lowers)
        spec = process_spec(img.config.config.to_dict(), view.read_file, args=args.command,
                            entrypoint=args.entrypoint, env=env, workdir=args.workdir, user=args.user,
                            hostname=hostname, tty=args.tty)
    except BaseException:
        snaps.release()
        raise
    return st, img, snaps, lowers, spec


def _image_for(store, desc, args):
    """The image to run: an index's entry for --platform (default: this machine's); a foreign
    one needs emulation (`run` only: a bundle is just files)."""
    from builder.oci.image import Image, host_platform

    if not getattr(args, "platform", None):
        img = Image.load(store.blobs, desc)
        want = None
    else:
        from builder import platforms
        from builder.engine.multiplatform import local_image, to_platform

        want = platforms.normalize(args.platform)
        img = Image.load(store.blobs, desc, to_platform(want))
        if local_image(store, args.image, desc, want) is None:
            from builder.errors import StoreError

            c = img.config
            raise StoreError(f"image {args.image} is {c.os}/{c.architecture}"
                             f"{'/' + c.variant if c.variant else ''}, not {want}")
    if args.command_name == "run" and img.config.architecture != host_platform().architecture:
        from builder import platforms

        platforms.require_emulation(want or f"{img.config.os}/{img.config.architecture}")
    return img


def _sandbox_config(args, spec, rootfs, *, tty: bool, cid: str):
    from runtime.config import Process, SandboxConfig

    term = None
    if tty:
        try:
            sz = os.get_terminal_size(sys.stdout.fileno())
            term = (sz.lines, sz.columns)
        except OSError:
            term = None
    return SandboxConfig(
        rootfs=rootfs,
        process=Process(argv=spec.argv, env=spec.env, cwd=spec.cwd, uid=spec.uid, gid=spec.gid,
                        additional_gids=spec.additional_gids, tty=tty, terminal_size=term),
        mounts=tuple(_mounts(args, create_host_dirs=True)),
        hostname=args.hostname or (os.uname().nodename if args.network == "host" else cid[:12]),
        network=args.network if args.network in ("host", "none") else "host",
        limits=_limits(args),
        readonly_rootfs=args.read_only,
        init=args.init,
        seccomp=security_opts(args),
        extra_hosts=_extra_hosts(args),
        capabilities=_capabilities(args),
        rlimits=_rlimits(args),
    )


def _extra_hosts(args) -> tuple:
    from builder.errors import UsageError

    out = []
    for h in getattr(args, "add_host", []):
        name, sep, addr = h.partition(":")
        if not sep or not name or not addr:
            raise UsageError(f"invalid --add-host {h!r}: expected NAME:IP")
        out.append((name, addr))
    return tuple(out)


def cmd_run(args) -> int:
    _normalize_mounts(args)
    _capabilities(args)
    _rlimits(args)
    if args.pull == "always":
        _pull_if_needed(args)
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

    _limits(args)  # flag errors before any work
    security_opts(args)
    cid = os.urandom(16).hex()  # uuid would import platform (~1.5 ms)
    try:
        st, img, snaps, lowers, spec = _prepare(args, for_bundle=False, hostname=_hostname(args, cid))
    except ImageNotFound:
        if args.pull != "missing":
            raise
        _pull_if_needed(args)  # --pull missing: as docker run does by default
        st, img, snaps, lowers, spec = _prepare(args, for_bundle=False, hostname=_hostname(args, cid))
    from builder.oci.layout import protect_state_dir
    protect_state_dir(st.root)
    (st.root / "containers").mkdir(mode=0o700, exist_ok=True)
    cdir = st.root / "containers" / cid
    (cdir / "upper").mkdir(parents=True)
    (cdir / "work").mkdir()
    (cdir / "pid").write_text(f"{os.getpid()}\n")  # prune leaves containers whose pybuild lives
    try:
        config = _sandbox_config(args, spec, Rootfs(lowerdirs=tuple(lowers), upperdir=str(cdir / "upper"),
                                                    workdir=str(cdir / "work")), tty=args.tty, cid=cid)
        from runtime.record import replace
        config = replace(config, etc_files_dir=str(cdir))  # writable /etc/hosts etc., on disk as docker's
        if args.tty and not os.isatty(0) and args.interactive:
            raise PybuildError("the input device is not a TTY (drop -t, or run from a terminal)")
        stdin = 0 if args.interactive else None
        try:
            # relayed: the container never holds our stdio (it could re-open the files behind them)
            res = sandbox.run(config, stdin=stdin, stdout=1, stderr=2, relay=True)
        except ExecError as e:
            # docker's convention: 127 command not found, 126 found but cannot be executed.
            sys.stderr.write(f"error: {e}\n")
            return 126 if "permission denied" in str(e).lower() else 127
    finally:
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

    _limits(args)  # flag errors before any work
    security_opts(args)
    cid = os.urandom(16).hex()
    _normalize_mounts(args)
    st, img, snaps, lowers, spec = _prepare(args, for_bundle=True, hostname=_hostname(args, cid))
    # The bundle's rootfs is the image's snapshots flattened (whiteouts honoured) by write_bundle.
    config = _sandbox_config(args, spec, Rootfs(lowerdirs=tuple(lowers)), tty=args.tty, cid=cid)
    try:
        write_bundle(config, None, Path(args.dest))
    finally:
        snaps.release()
    print(args.dest)
    return 0
